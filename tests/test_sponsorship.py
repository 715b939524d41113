"""Category sponsorship: shown on the category's posts while it runs."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from posts.models import Sponsorship

from .factories import CategoryFactory, PublishedPostFactory

pytestmark = pytest.mark.django_db


def sponsor(category, name: str, starts_on: date, ends_on: date) -> Sponsorship:
    return Sponsorship.objects.create(
        category=category,
        name=name,
        url="https://sponsor.example/",
        starts_on=starts_on,
        ends_on=ends_on,
    )


def test_post_page_names_the_sponsor_of_its_category_while_the_deal_runs(client):
    today = timezone.localdate()
    category = CategoryFactory(name="Youth justice")
    post = PublishedPostFactory()
    post.categories.add(category)
    sponsor(category, "Acme Training", today - timedelta(days=1), today)
    html = client.get(post.get_absolute_url()).content.decode()
    assert "Youth justice posts sponsored by" in html
    assert '<a href="https://sponsor.example/" rel="sponsored noopener">' in html
    assert "Acme Training" in html


def test_no_sponsor_line_outside_the_dates_or_for_another_category(client):
    today = timezone.localdate()
    mine, other = CategoryFactory(), CategoryFactory()
    post = PublishedPostFactory()
    post.categories.add(mine)
    sponsor(mine, "Expired Ltd", today - timedelta(days=30), today - timedelta(days=1))
    sponsor(mine, "Future Ltd", today + timedelta(days=1), today + timedelta(days=30))
    sponsor(other, "Other Ltd", today, today)
    assert post.sponsor() is None
    assert "sponsored by" not in client.get(post.get_absolute_url()).content.decode()


def test_sponsor_on_a_given_day_counts_both_end_days():
    category = CategoryFactory()
    post = PublishedPostFactory()
    post.categories.add(category)
    deal = sponsor(category, "Acme", date(2025, 1, 1), date(2025, 1, 31))
    assert post.sponsor(on=date(2025, 1, 1)) == deal
    assert post.sponsor(on=date(2025, 1, 31)) == deal
    assert post.sponsor(on=date(2025, 2, 1)) is None


def test_a_sponsorship_cannot_end_before_it_starts():
    deal = Sponsorship(
        category=CategoryFactory(),
        name="Backwards",
        url="https://sponsor.example/",
        starts_on=date(2025, 2, 1),
        ends_on=date(2025, 1, 1),
    )
    with pytest.raises(ValidationError):
        deal.full_clean()
