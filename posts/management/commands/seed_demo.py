import functools
import secrets
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from posts import demo_content as demo
from posts.comments.models import Comment
from posts.desk import counted
from posts.models import (
    Area,
    Category,
    Inspection,
    Organisation,
    Post,
    PostEvent,
    Region,
    RelatedLink,
    Sponsorship,
    StandardRating,
    Tag,
)
from posts.search import index_post
from posts.signals import demo_seeded


def refuse_before_migrate(handle: Callable) -> Callable:
    """A command's handle() that, run before `migrate` (a new deployment's order
    mistaken, or new code's migrations not yet applied), names the step missing
    instead of ending in a traceback about a missing table or column. This one's,
    ensure_admin's and post_report's: here, as posts imports nothing from
    newsletter, and the README's map has no other home for it in posts.

    The migrations are looked at only once the database has failed: loading them
    all would slow every command, `make run`'s too. Put it outside the command's
    transaction, if it has one: PostgreSQL answers nothing more inside a failed one.
    """

    @functools.wraps(handle)
    def handle_or_refuse(*args, **options):
        try:
            return handle(*args, **options)
        except DatabaseError:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                raise CommandError(
                    "The database is not migrated: run `manage.py migrate` first. "
                    "Nothing changed."
                ) from None
            raise

    return handle_or_refuse


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


class Command(BaseCommand):
    help = (
        "Load the demo posts with their inspections, taxonomy and related links, a "
        "Contributor and an Editor (their passwords printed once), a post waiting for "
        "review, a recent post open for comments, a few comments and a sponsor. "
        "Safe to run again: nothing is duplicated, and posts that exist keep their "
        "text and inspections. For a new database: one with posts, desk members or "
        "readers of its own is refused."
    )

    @refuse_before_migrate
    @transaction.atomic
    def handle(self, *args, **options) -> None:
        self._refuse_a_sites_own_content()
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
            f"Demo content: {counted(created, 'post', 'posts')} created, "
            f"{len(demo.POSTS)} in all."
        )
        people = {item["username"]: self._person(item) for item in demo.PEOPLE}
        fresh = self._fresh_post(people, categories, tags)
        self._review_post(people, categories, tags)
        self._comments()
        demo_seeded.send(sender=self.__class__, posts=[*posts.values(), fresh])
        Sponsorship.objects.get_or_create(
            category=categories[demo.SPONSOR["category"]],
            name=demo.SPONSOR["name"],
            defaults={
                "url": demo.SPONSOR["url"],
                "starts_on": timezone.localdate() - timedelta(days=7),
                "ends_on": timezone.localdate() + timedelta(days=365),
            },
        )

    def _refuse_a_sites_own_content(self) -> None:
        """Run on a live site, the demo published its posts, made two desk logins
        and (newsletter's part, which refuses readers of the site's own) confirmed
        readers at example.org, whom the next real post was emailed to. So it loads
        into a new database, where ensure_admin's superuser may be already, or one
        it was loaded into before (its people mark it): `make run` loads it at
        every start, over the author's posts since."""
        User = get_user_model()
        if User.objects.filter(
            username__in=[item["username"] for item in demo.PEOPLE],
            email__in=[item["email"] for item in demo.PEOPLE],
        ).exists():
            return
        posts = Post.objects.count()
        desk = User.objects.filter(is_staff=True, is_superuser=False).count()
        if posts or desk:
            raise CommandError(
                f"This database holds {counted(posts, 'post', 'posts')} and "
                f"{counted(desk, 'desk member', 'desk members')} "
                "the demo did not make: the demo is for a new database, never a "
                "live site's. Nothing changed."
            )

    def _person(self, item: dict):
        """A staff user in a role; like ensure_admin, the password is shown once."""
        User = get_user_model()
        user = User.objects.filter(username=item["username"]).first()
        if user is not None:
            self.stdout.write(
                f"{item['role']} login: {user.username} (password as before)"
            )
            return user
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(
            item["username"],
            item["email"],
            password,
            first_name=item["first_name"],
            is_staff=True,
        )
        user.groups.add(Group.objects.get(name=item["role"]))
        self.stdout.write(f"{item['role']} login: {user.username} / {password}")
        return user

    def _fresh_post(self, people: dict, categories: dict, tags: dict) -> Post:
        item = demo.FRESH_POST
        published_at = timezone.now().replace(microsecond=0) - timedelta(
            days=item["days_ago"]
        )
        post, created = Post.objects.get_or_create(
            slug=item["slug"],
            defaults={
                "title": item["title"],
                "excerpt": item["excerpt"],
                "body": item["body"],
                "author": people[item["author"]],
                "status": Post.Status.PUBLISHED,
                "published_at": published_at,
                "announced_at": published_at,
                "email_subscribers": False,
            },
        )
        if created:
            post.categories.add(*(categories[slug] for slug in item["categories"]))
            post.tags.add(*(tags[slug] for slug in item["tags"]))
            PostEvent.objects.create(
                post=post,
                kind=PostEvent.Kind.PUBLISHED,
                by=people[item["author"]],
                at=published_at,
            )
            index_post(post)
        return post

    def _review_post(self, people: dict, categories: dict, tags: dict) -> None:
        item = demo.REVIEW_POST
        post, created = Post.objects.get_or_create(
            slug=item["slug"],
            defaults={
                "title": item["title"],
                "excerpt": item["excerpt"],
                "body": item["body"],
                "author": people[item["author"]],
                "status": Post.Status.REVIEW,
            },
        )
        if created:
            post.categories.add(*(categories[slug] for slug in item["categories"]))
            post.tags.add(*(tags[slug] for slug in item["tags"]))
            PostEvent.objects.create(
                post=post, kind=PostEvent.Kind.SUBMITTED, by=people[item["author"]]
            )

    def _comments(self) -> None:
        written = {}
        for item in demo.COMMENTS:
            post = Post.objects.get(slug=item["post"])
            parent = written.get(item.get("reply_to"))
            written[item["name"]], _ = Comment.objects.get_or_create(
                post=post,
                email=item["email"],
                defaults={
                    "name": item["name"],
                    "body": item["body"],
                    "parent": parent,
                    "status": Comment.Status.APPROVED,
                    # After the post, in the order written; the fresh post's
                    # comments a day after it came out.
                    "created_at": post.published_at + timedelta(days=1),
                },
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
