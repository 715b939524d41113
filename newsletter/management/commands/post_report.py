import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from newsletter.engagement import OPENS_NOT_COUNTED
from newsletter.reports import (
    ENGAGEMENT_FIGURES,
    REPORT_FIGURES,
    SMALLEST_GROUP,
    group_counts,
    group_figures,
    link_address,
    post_report,
)
from posts.management.commands.seed_demo import refuse_before_migrate
from posts.models import Post


class Command(BaseCommand):
    help = (
        "What happened to a post's emails: recipients, deliveries, bounces, "
        "complaints, unsubscribes, and opens and clicks by people and by machines."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    @refuse_before_migrate
    def handle(self, *args, slug: str, **options) -> None:
        post = Post.objects.filter(slug=slug).first()
        if post is None:
            # An address from an old email or link: the post's slug before its
            # author changed it.
            post = Post.objects.filter(former_slugs__slug=slug).first()
            if post is None:
                raise CommandError(f"No post with the slug {slug!r}.")
            # On stderr: the --json on stdout stays JSON.
            self.stderr.write(
                f"{slug!r} was this post's slug; it is now {post.slug!r}."
            )
        report = post_report(post)
        if options["json"]:
            self.stdout.write(
                json.dumps(report, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder)
            )
            return
        self.stdout.write(report["title"])
        for key, label in REPORT_FIGURES:
            self.stdout.write(f"{label:<28} {report[key]:>8}")
        for key, label in ENGAGEMENT_FIGURES:
            counts = report[key]
            self.stdout.write(
                f"{label:<28} {OPENS_NOT_COUNTED}"
                if counts is None
                else f"{label:<28} people {counts['people']}, "
                f"machines {counts['machines']}"
            )
        for link in report["links"]:
            note = " (hidden link)" if link["hidden"] else ""
            if link["leads_nowhere"]:
                note = " (leads nowhere: readers get page not found; fix it)"
            self.stdout.write(
                f"  {link['people']:>6} people {link['machines']:>6} machines  "
                f"{link_address(link)}{note}"
            )
        if report["readers_agreed"] is not None:
            self.stdout.write(
                "Opens and clicks by group: only the "
                f"{report['readers_agreed']} readers who agreed to per-reader "
                f"engagement, in groups where {SMALLEST_GROUP} or more agreed."
            )
        names = group_figures(report)
        for kind, groups in report["groups"].items():
            for group in groups:
                figures = (
                    f"fewer than {SMALLEST_GROUP} readers together, not shown"
                    if group["readers"] is None
                    else ", ".join(
                        f"{name} {'not shown' if count is None else count}"
                        for name, count in zip(names, group_counts(group), strict=True)
                    )
                )
                self.stdout.write(f"{kind} {group['name']}: {figures}")
