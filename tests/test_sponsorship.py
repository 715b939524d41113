"""Category sponsorship: shown on the category's posts while it runs."""

import html as html_lib
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.text import wrap

from newsletter import delivery
from newsletter.delivery import sender
from posts.models import Category, Post, Sponsorship
from posts.services import post_publish

from .factories import (
    CategoryFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
)
from .test_digests import clock, planned_round, reader, sent  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def sponsor(
    category,
    name: str,
    starts_on: date,
    ends_on: date,
    url: str = "https://sponsor.example/",
) -> Sponsorship:
    return Sponsorship.objects.create(
        category=category, name=name, url=url, starts_on=starts_on, ends_on=ends_on
    )


def sponsor_words(html: str) -> list[str]:
    """The words of each sponsor line of a page or an email's HTML part."""
    return [
        " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", line)).split())
        for line in re.findall(r'<p class="sponsor"[^>]*>(.*?)</p>', html, re.S)
    ]


def send_round(mailing) -> None:
    for batch_id in mailing.batches.order_by("number").values_list("pk", flat=True):
        delivery.batch_send(batch_id=batch_id)


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
    assert post.sponsors() == []
    assert "sponsored by" not in client.get(post.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    "listing", ["/", "/category/youth-justice/", "/search/?q=courts"]
)
def test_a_sponsored_post_says_so_where_it_is_listed_as_on_its_page(client, listing):
    # The listings and search results showed a sponsored post's title and summary
    # without a word of its sponsor, which its page, its feed entry, its email and
    # its block in a digest all name.
    today = timezone.localdate()
    category = CategoryFactory(name="Youth justice", slug="youth-justice")
    sponsored = PublishedPostFactory(title="Youth courts: sponsored")
    sponsored.categories.add(category)
    not_sponsored = PublishedPostFactory(title="Adult courts")
    not_sponsored.categories.add(CategoryFactory())
    sponsor(category, "Acme Training", today, today)

    html = client.get(listing).content.decode()

    assert sponsor_words(html) == [
        "Youth justice posts sponsored by Acme Training. "
        "Sponsors have no say in what we write."
    ]
    # Under the sponsored post, not the other.
    item = html[html.index("Youth courts: sponsored") :]
    assert 'class="sponsor"' in item[: item.index("</li>")]


def test_sponsor_on_a_given_day_counts_both_end_days():
    category = CategoryFactory()
    post = PublishedPostFactory()
    post.categories.add(category)
    deal = sponsor(category, "Acme", date(2025, 1, 1), date(2025, 1, 31))
    assert post.sponsors(on=date(2025, 1, 1)) == [deal]
    assert post.sponsors(on=date(2025, 1, 31)) == [deal]
    assert post.sponsors(on=date(2025, 2, 1)) == []


def test_a_post_not_yet_saved_names_no_sponsor_even_of_a_category_without_posts():
    """An unsaved post is in no category; asked by its id (None), the one
    statement for many posts matched the sponsors of categories without posts."""
    today = timezone.localdate()
    sponsor(CategoryFactory(), "Acme", today, today)
    assert PostFactory.build().sponsors() == []


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


def test_every_reader_of_a_posts_email_gets_the_sponsor_of_the_day_it_went(
    monkeypatch, settings
):
    """A post announced on the last evening of one sponsor's deal, whose later
    batches went after midnight (a large list, a pause, a retry): each worker
    rendered the email with the sponsor of its own day, so some readers had the
    next sponsor's line and some the first's, of one email. Every copy names
    the sponsor of the day the post was announced."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    london = ZoneInfo("Europe/London")
    evening = datetime(2026, 1, 31, 23, 50, tzinfo=london)
    monkeypatch.setattr(timezone, "now", lambda: evening)
    category = CategoryFactory(name="Youth justice")
    sponsor(category, "January Ltd", date(2026, 1, 1), date(2026, 1, 31))
    sponsor(category, "February Ltd", date(2026, 2, 1), date(2026, 2, 28))
    SubscriberFactory.create_batch(2)
    post = PublishedPostFactory(published_at=evening, announced_at=evening)
    post.categories.add(category)
    mailing = delivery.mailing_create_for_post(post=post)
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    first, second = mailing.batches.order_by("number")

    delivery.batch_send(batch_id=first.pk)
    sender._last_rendered = None  # the next batch goes from another worker
    monkeypatch.setattr(timezone, "now", lambda: evening + timedelta(minutes=20))
    delivery.batch_send(batch_id=second.pk)

    assert len(mail.outbox) == 2
    for message in mail.outbox:
        assert "sponsored by January Ltd" in message.body
        assert "February Ltd" not in message.body


def test_a_second_sponsor_of_a_category_on_days_already_sold_is_refused(
    admin_client,
):
    """Only one sponsor of a category is shown on a day: a second deal over the
    same days was saved, paid for, and one of the two never appeared. The desk
    now refuses it, naming the deal in the way; the day after one ends, and
    another category's days, are free."""
    category, other = CategoryFactory(name="Youth justice"), CategoryFactory()
    sponsor(category, "Acme Training", date(2026, 1, 1), date(2026, 1, 31))

    def add(category, name: str, starts_on: str, ends_on: str):
        return admin_client.post(
            "/admin/posts/sponsorship/add/",
            {
                "category": category.pk,
                "name": name,
                "url": "https://sponsor.example/",
                "starts_on": starts_on,
                "ends_on": ends_on,
            },
        )

    refused = add(category, "Rival Ltd", "2026-01-31", "2026-02-28")
    assert refused.status_code == 200
    assert (
        "Acme Training sponsors Youth justice posts from 1 January 2026 to "
        "31 January 2026" in refused.content.decode()
    )
    assert not Sponsorship.objects.filter(name="Rival Ltd").exists()

    assert add(category, "Rival Ltd", "2026-02-01", "2026-02-28").status_code == 302
    assert add(other, "Other Ltd", "2026-01-15", "2026-01-20").status_code == 302
    deal = Sponsorship.objects.get(name="Acme Training")
    changed = admin_client.post(
        f"/admin/posts/sponsorship/{deal.pk}/change/",
        {
            "category": category.pk,
            "name": "Acme Training",
            "url": "https://sponsor.example/",
            "starts_on": "2026-01-02",
            "ends_on": "2026-01-31",
        },
    )
    assert changed.status_code == 302  # its own days are not in its way


def test_a_post_in_two_sponsored_categories_names_every_sponsor_wherever_it_is_shown(
    clock,  # noqa: F811 (the fixture imported above)
    client,
    django_capture_on_commit_callbacks,
):
    """A post filed under two categories, each sponsored that day, named one
    sponsor, the deal that started first: the other had paid for its category's
    posts, this one among them, and readers could not tell it was sponsored by
    them too (sponsored content says so, and by whom, wherever it is shown). Its
    page, its own email and its block in a digest name every sponsor, in one
    order: the deal that started first (booked first, if the same day) first."""
    youth, adult = CategoryFactory(name="Youth justice"), CategoryFactory(name="Adult")
    newcomer = "https://newcomer.example/"
    sponsor(adult, "Newcomer Ltd", date(2026, 11, 20), date(2026, 11, 30), newcomer)
    running = "https://running.example/"
    sponsor(youth, "Running Ltd", date(2026, 11, 1), date(2026, 11, 30), running)
    reader("instant@example.org", ("category", youth.slug, "instant"))
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    post = PostFactory(title="Youth justice: a sponsored look")
    post.categories.add(youth, adult)
    with django_capture_on_commit_callbacks(execute=True):
        post_publish(post=post)
    [own] = mail.outbox
    own_text, own_html = own.body, own.alternatives[0].content
    clock(23, 7, 5)
    send_round(planned_round())
    [digest] = mail.outbox
    text, html = digest.body, digest.alternatives[0].content
    page = client.get(post.get_absolute_url()).content.decode()

    words = (
        "Youth justice posts sponsored by Running Ltd. "
        "Adult posts sponsored by Newcomer Ltd. "
        "Sponsors have no say in what we write."
    )
    assert sponsor_words(page) == [words]
    assert sponsor_words(own_html) == [words]
    assert sponsor_words(html) == [words]
    # The text part's line wrapped as a plain-text reader shows it whole.
    assert f"{wrap(words, 72)}\n{running}\n{newcomer}\n" in own_text
    assert f"{wrap(words, 72)}\n{running}\n{newcomer}\n" in text


def test_of_two_deals_starting_the_same_day_the_one_booked_first_comes_first():
    zeta, alpha = CategoryFactory(name="Zeta"), CategoryFactory(name="Alpha")
    post = PublishedPostFactory()
    post.categories.add(zeta, alpha)
    booked_first = sponsor(zeta, "First Ltd", date(2026, 3, 1), date(2026, 3, 31))
    booked_next = sponsor(alpha, "Second Ltd", date(2026, 3, 1), date(2026, 3, 31))

    assert post.sponsors(on=date(2026, 3, 15)) == [booked_first, booked_next]


@pytest.mark.parametrize(
    "change",
    [
        "renamed",
        "relinked",
        "deleted",
        "added",
        "category renamed",
        # A queryset's update(), as a script or an admin action does: no save().
        "renamed in bulk",
        "category renamed in bulk",
    ],
)
@pytest.mark.parametrize("frequency", ["instant", "daily"])
def test_a_sponsorship_changed_mid_round_reaches_the_batches_sent_after_it(
    clock,  # noqa: F811 (the fixture imported above)
    settings,
    frequency,
    change,
    django_capture_on_commit_callbacks,
):
    """A worker keeps a round's rendered email for its next batches (a post's,
    or a digest's parts), and kept it across a change to a sponsorship: its
    later batches named a sponsor renamed, taken off or moved to another link,
    no sponsor for a deal added over the post's day, and a sponsored category
    by its old name, while a worker starting afresh named them as they now are.
    The batches sent after a change name the sponsors of the post's day as they
    now are."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    youth, adult = CategoryFactory(name="Youth justice"), CategoryFactory(name="Adult")
    deal = sponsor(youth, "Acme Ltd", date(2026, 11, 1), date(2026, 11, 30))
    reader("one@example.org", ("everything", "", frequency))
    reader("two@example.org", ("everything", "", frequency))
    clock(23, 6, 30)
    post = PostFactory(title="Youth justice: a sponsored look")
    post.categories.add(youth, adult)
    if frequency == "instant":
        post.status, post.published_at = Post.Status.PUBLISHED, timezone.now()
        post.announced_at = post.published_at
        post.save()
        mailing = delivery.mailing_create_for_post(post=post)
        while delivery.mailing_plan_page(mailing_id=mailing.pk):
            pass
    else:
        with django_capture_on_commit_callbacks(execute=True):
            post_publish(post=post)
        clock(23, 7, 5)
        mailing = planned_round()
    first, second = mailing.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    [before] = mail.outbox
    assert "Youth justice posts sponsored by Acme Ltd." in before.body

    clock(23, 7, 10)  # the author's change, at the desk
    if change == "renamed":
        deal.name = "Acme Training"
        deal.save()
    elif change == "relinked":
        deal.url = "https://acme.example/"
        deal.save()
    elif change == "deleted":
        deal.delete()
    elif change == "added":
        sponsor(adult, "Newcomer Ltd", date(2026, 11, 23), date(2026, 11, 23))
    elif change == "renamed in bulk":
        Sponsorship.objects.filter(pk=deal.pk).update(name="Acme Training")
    elif change == "category renamed in bulk":
        Category.objects.filter(pk=youth.pk).update(name="Youth courts")
    else:  # the line names the category its sponsor paid for
        youth.name = "Youth courts"
        youth.save()
    mail.outbox.clear()
    delivery.batch_send(batch_id=second.pk)  # by the same worker

    [after] = mail.outbox
    text, html = after.body, after.alternatives[0].content
    expected = {
        "renamed": "Youth justice posts sponsored by Acme Training.",
        "renamed in bulk": "Youth justice posts sponsored by Acme Training.",
        "relinked": "https://acme.example/",
        "deleted": "Youth justice: a sponsored look",
        "added": "Adult posts sponsored by Newcomer Ltd.",
        "category renamed": "Youth courts posts sponsored by Acme Ltd.",
        "category renamed in bulk": "Youth courts posts sponsored by Acme Ltd.",
    }[change]
    assert expected in " ".join(text.split())
    if change == "deleted":
        assert "sponsored by" not in text + html
    elif change != "relinked":  # the HTML part's links are counted ones
        [words] = sponsor_words(html)
        assert expected in words


@pytest.mark.parametrize("provider", ["one message each", "postmark batch"])
def test_a_sponsors_name_and_link_read_as_typed_in_every_part(
    clock,  # noqa: F811 (the fixtures imported above)
    sent,  # noqa: F811
    client,
    django_capture_on_commit_callbacks,
):
    """A sponsor's name and link as the desk took them, with characters HTML,
    and JSON (Postmark's batch), give a meaning to: read as typed on the page
    and in each part of the post's email and of a digest, never as markup."""
    name = 'Smith & "Sons" <Training>'
    url = "https://sponsor.example/?from=probation&to=readers"
    youth = CategoryFactory(name="Youth & justice")
    sponsor(youth, name, date(2026, 11, 1), date(2026, 11, 30), url)
    reader("instant@example.org", ("category", youth.slug, "instant"))
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    post = PostFactory(title="Youth justice: a sponsored look")
    post.categories.add(youth)
    with django_capture_on_commit_callbacks(execute=True):
        post_publish(post=post)
    own_text, own_html = sent()["instant@example.org"]
    clock(23, 7, 5)
    send_round(planned_round())
    text, html = sent()["daily@example.org"]
    page = client.get(post.get_absolute_url()).content.decode()

    words = f"Youth & justice posts sponsored by {name}. "
    words += "Sponsors have no say in what we write."
    for part in (page, own_html, html):
        assert sponsor_words(part) == [words]
        assert "<Training>" not in part and "Smith &amp; " in part
    assert f"{wrap(words, 72)}\n{url}\n" in own_text
    assert f"{wrap(words, 72)}\n{url}\n" in text
    assert 'href="https://sponsor.example/?from=probation&amp;to=readers"' in page


def test_the_post_page_says_sponsors_have_no_say_as_its_email_does(client):
    # The email said it under the sponsor's name; the page, where most readers
    # meet the sponsor, did not.
    today = timezone.localdate()
    category = CategoryFactory(name="Youth justice")
    post = PublishedPostFactory()
    post.categories.add(category)
    sponsor(category, "Acme Training", today, today)

    html = client.get(post.get_absolute_url()).content.decode()

    assert "Acme Training</a>. Sponsors have no say in what we write." in html


def test_the_desk_says_the_logo_stands_beside_the_sponsors_name(admin_client):
    # Its help said the name was the logo's alt text, while the page gives the
    # logo alt="" (the name beside it says who it is): an author looking for
    # where to type the alt text, or checking the page, was misled.
    html = admin_client.get("/admin/posts/sponsorship/add/").content.decode()

    assert "alt text" not in html
    assert "shown small, beside the sponsor's name" in html
