from datetime import date, datetime, time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from posts import demo_content as demo
from posts.models import (
    Area,
    Category,
    Inspection,
    Organisation,
    Post,
    Region,
    RelatedLink,
    StandardRating,
    Tag,
)
from posts.search import index_post


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


class Command(BaseCommand):
    help = (
        "Load the demo posts with their inspections, taxonomy and related links. "
        "Safe to run again: nothing is duplicated, and posts that exist keep their "
        "text and inspections."
    )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        regions = {
            item["slug"]: Region.objects.get_or_create(
                slug=item["slug"], defaults={"name": item["name"]}
            )[0]
            for item in demo.REGIONS
        }
        areas = {
            item["slug"]: Area.objects.get_or_create(
                slug=item["slug"],
                defaults={"name": item["name"], "region": regions[item["region"]]},
            )[0]
            for item in demo.AREAS
        }
        organisations = {
            item["slug"]: Organisation.objects.get_or_create(
                slug=item["slug"], defaults={"name": item["name"], "kind": item["kind"]}
            )[0]
            for item in demo.ORGANISATIONS
        }
        for item in demo.ORGANISATIONS:
            organisations[item["slug"]].owners.add(
                *(organisations[slug] for slug in item["owners"])
            )
        categories = {
            item["slug"]: Category.objects.get_or_create(
                slug=item["slug"], defaults={"name": item["name"]}
            )[0]
            for item in demo.CATEGORIES
        }
        tags = {
            item["slug"]: Tag.objects.get_or_create(
                slug=item["slug"], defaults={"name": item["name"]}
            )[0]
            for item in demo.TAGS
        }

        author = get_user_model().objects.filter(is_superuser=True).first()
        posts, created = {}, 0
        for item in demo.POSTS:
            published_at = timezone.make_aware(
                datetime.combine(date.fromisoformat(item["published"]), time(9))
            )
            post, was_created = Post.objects.get_or_create(
                slug=item["slug"],
                defaults={
                    "title": item["title"],
                    "excerpt": item["excerpt"],
                    "body": item["body"],
                    "author": author,
                    "status": Post.Status.PUBLISHED,
                    "published_at": published_at,
                    # Demo posts are history: announced already, never emailed.
                    "announced_at": published_at,
                    "email_subscribers": False,
                },
            )
            created += was_created
            posts[item["slug"]] = post
            post.categories.add(*(categories[slug] for slug in item["categories"]))
            post.tags.add(*(tags[slug] for slug in item["tags"]))
            if not post.inspections.exists():
                self._add_inspection(post, item["inspection"], areas, organisations)
            index_post(post)

        for item in demo.POSTS:
            for order, link in enumerate(item["related"], start=1):
                RelatedLink.objects.get_or_create(
                    from_post=posts[item["slug"]],
                    to_post=posts[link["slug"]],
                    defaults={"type": link["type"], "order": order},
                )
        self.stdout.write(
            f"Demo content: {created} post(s) created, {len(demo.POSTS)} in all."
        )

    def _add_inspection(
        self, post: Post, facts: dict, areas: dict, organisations: dict
    ) -> None:
        inspection = Inspection.objects.create(
            post=post,
            inspectorate=facts["inspectorate"],
            title=facts["title"],
            type=facts["type"],
            area=areas[facts["area"]] if facts["area"] else None,
            fieldwork_start=_date(facts["fieldwork_start"]),
            fieldwork_end=_date(facts["fieldwork_end"]),
            published_on=_date(facts["published"]),
            report_url=facts["report_url"],
            overall=facts["overall"] or Inspection.overall.field.default,
            recommendations=facts["recommendations"],
            key_findings="\n".join(facts["key_findings"]),
        )
        inspection.organisations.set(
            [organisations[slug] for slug in facts["organisations"]]
        )
        StandardRating.objects.bulk_create(
            StandardRating(
                inspection=inspection,
                standard=rating["standard"],
                rating=rating["rating"],
                order=order,
            )
            for order, rating in enumerate(facts["ratings"], start=1)
        )
