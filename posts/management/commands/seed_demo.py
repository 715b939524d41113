from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from posts.demo_content import POSTS
from posts.models import Post


class Command(BaseCommand):
    help = "Load the demo posts. Safe to run again: existing posts are left alone."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        author = get_user_model().objects.filter(is_superuser=True).first()
        created = 0
        for item in POSTS:
            published_at = timezone.make_aware(
                datetime.combine(datetime.fromisoformat(item["published"]), time(9))
            )
            _, was_created = Post.objects.get_or_create(
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
        self.stdout.write(
            f"Demo content: {created} post(s) created, {len(POSTS)} in all."
        )
