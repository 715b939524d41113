"""A correction to a post reaches exactly the readers the ledger says were sent the
post (as published, or in a digest that carried it), less those who left since,
once each, as a mailing of the one delivery engine; and the author sees who it
will reach, previews it and confirms it in the admin."""

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.mail.backends import locmem
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from newsletter import corrections, delivery
from newsletter.delivery import control, planner
from newsletter.digest_tasks import start_due_digests
from newsletter.models import (
    Batch,
    Delivery,
    DigestSettings,
    Mailing,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.subscriptions import (
    address_suppress,
    subscriber_delete,
    subscriber_pause,
    subscriber_unsubscribe,
)
from newsletter.tasks import plan_mailing, send_batch
from posts.models import Post, PostUpdate
from posts.services import post_publish

from .factories import (
    AreaFactory,
    InspectionFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
    admin_post_form,
    taken_down_once_its_readers_are_read,
    uncertain_long_enough_to_ask,
    unpublish_at_the_desk,
)
from .locks import (
    as_it_commits,
    as_taken_down,
    in_a_thread,
    until_done_or_waiting_for_a_lock,
)
from .test_send_controls import parted_by_its_lanes
from .test_webhooks import POSTMARK_BACKEND, SECRET, post_postmark, postmark_delivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

LONDON = ZoneInfo("Europe/London")
WRONG = "Inspectors rated the service Inadequate."
RIGHT = "Inspectors rated the service Requires improvement."


@pytest.fixture
def clock(monkeypatch):
    """The time of day, as in tests/test_digests.py: Monday 23 November 2026;
    digests go out at 07:00, weekly on Mondays."""

    def set_to(day: int, hour: int, minute: int = 0) -> None:
        moment = datetime(2026, 11, day, hour, minute, tzinfo=LONDON)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    set_to(23, 6)
    DigestSettings.objects.create(hour=7, weekday=DigestSettings.Weekday.MONDAY)
    return set_to


def reader(email: str, frequency: str = "instant", area: str = ""):
    # The factory's default confirmed_at reads the real clock, not the fixture's.
    subscriber = SubscriberFactory(email=email, confirmed_at=timezone.now())
    kind = "area" if area else "everything"
    SubscriberTopic.objects.create(
        subscriber=subscriber, kind=kind, value=area, frequency=frequency
    )
    return subscriber


def publish(on_commit, title: str, area=None):
    post = PostFactory(title=title)
    if area is not None:
        InspectionFactory(post=post, area=area)
    on_commit(post_publish, post=post)
    return post


def correction(post, **fields) -> PostUpdate:
    fields = {
        "kind": PostUpdate.Kind.CORRECTION,
        "wrong": WRONG,
        "right": RIGHT,
        **fields,
    }
    return PostUpdate.objects.create(post=post, **fields)


def said(response) -> list[tuple[str, str]]:
    """What the desk told the author on the page it answered: (level, message)."""
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def corrections_sent() -> dict[str, int]:
    """Each address the correction went to, and how many copies."""
    copies: dict[str, int] = {}
    for message in mail.outbox:
        if message.subject.startswith(("Correction: ", "Update: ")):
            for address in message.to:
                copies[address] = copies.get(address, 0) + 1
    return copies


def test_a_correction_reaches_exactly_the_readers_sent_the_post_once_each(
    clock, on_commit
):
    suffolk = AreaFactory(slug="suffolk")
    reader("instant@example.org")
    reader("daily@example.org", "daily")
    reader("weekly@example.org", "weekly")
    left = reader("left@example.org")
    paused = reader("paused@example.org")
    suppressed = reader("suppressed@example.org")
    erased = reader("erased@example.org")
    uncertain = reader("uncertain@example.org")
    reader("elsewhere@example.org", area="kent")  # follows another area only
    clock(23, 6, 30)
    post = publish(on_commit, "Suffolk: caseloads too high", area=suffolk)
    clock(23, 7, 5)  # a Monday: the daily and the weekly digest carry it
    on_commit(start_due_digests.delay)
    reader("latecomer@example.org")  # subscribed after the post went out
    subscriber_unsubscribe(subscriber=left)
    subscriber_pause(subscriber=paused)
    address_suppress(email=suppressed.email, reason=Suppression.Reason.MANUAL)
    subscriber_delete(subscriber=erased)
    # The provider's answer for this reader was lost (a dropped connection).
    Delivery.objects.filter(subscriber=uncertain).update(
        status=Delivery.Status.UNCERTAIN
    )
    mail.outbox.clear()
    clock(23, 9)

    update = correction(post)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=update,
        include_uncertain=False,
    )

    assert corrections_sent() == {
        "instant@example.org": 1,
        "daily@example.org": 1,
        "weekly@example.org": 1,
    }
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert mailing.status == Mailing.Status.DONE
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


def test_the_author_may_include_readers_whose_delivery_is_uncertain(clock, on_commit):
    post, _ = post_with_an_uncertain_reader(clock, on_commit)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=True,
    )
    assert corrections_sent() == {"sent@example.org": 1, "uncertain@example.org": 1}


def test_clicking_twice_and_retried_tasks_send_each_reader_one_copy(clock, on_commit):
    reader("one@example.org")
    reader("two@example.org")
    clock(23, 6, 30)
    post = publish(on_commit, "A post")
    mail.outbox.clear()
    clock(23, 9)
    update = correction(post)
    for include_uncertain in (False, True):  # the author clicks twice
        on_commit(
            delivery.mailing_create_for_correction,
            post_update=update,
            include_uncertain=include_uncertain,
        )
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert not mailing.include_uncertain  # the first click's choice stands
    # The broker delivers every doorbell again.
    on_commit(plan_mailing.delay, mailing.pk)
    for batch_id in mailing.batches.values_list("pk", flat=True):
        on_commit(send_batch.delay, batch_id)
    assert corrections_sent() == {"one@example.org": 1, "two@example.org": 1}


def test_a_second_correction_is_its_own_mailing_to_the_same_readers(clock, on_commit):
    reader("one@example.org")
    clock(23, 6, 30)
    post = publish(on_commit, "A post")
    mail.outbox.clear()
    clock(23, 9)
    for update in (correction(post), correction(post, kind="update", note="More.")):
        on_commit(
            delivery.mailing_create_for_correction,
            post_update=update,
            include_uncertain=False,
        )
    assert Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).count() == 2
    assert sorted(m.subject for m in mail.outbox) == [
        "Correction: A post",
        "Update: A post",
    ]


def test_a_reader_whose_digest_has_not_gone_gets_the_corrected_post_in_it(
    clock, on_commit
):
    reader("instant@example.org")
    reader("weekly@example.org", "weekly")
    clock(24, 9)  # a Tuesday: the weekly digest goes next Monday
    post = publish(on_commit, "A post")
    mail.outbox.clear()
    clock(24, 10)
    post.refresh_from_db()
    post.body = RIGHT
    post.save()
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    assert corrections_sent() == {"instant@example.org": 1}
    clock(30, 7, 5)
    mail.outbox.clear()
    on_commit(start_due_digests.delay)
    [digest] = mail.outbox
    assert digest.to == ["weekly@example.org"]
    assert corrections_sent() == {}


def announcement_planned(post):
    """The post published and its announcement planned, no batch of it sent: its
    doorbells are not rung, so the test sends its batches one by one."""
    post_publish(post=post)
    announcement = delivery.mailing_create_for_post(post=post)
    while delivery.mailing_plan_page(mailing_id=announcement.pk):
        pass
    return announcement


def test_a_correction_mid_send_goes_only_to_readers_sent_the_earlier_text(
    settings, on_commit
):
    """Batches still to go carry the corrected post; only the readers of the
    batches already sent get the correction."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    readers = [reader(f"reader{i}@example.org") for i in range(3)]
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    first, *rest = announcement.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    [earlier] = mail.outbox
    assert WRONG in earlier.body

    post.refresh_from_db()
    post.body = RIGHT
    post.save()
    mailing = delivery.mailing_create_for_correction(
        post_update=correction(post), include_uncertain=False
    )
    for batch in rest:  # in the same worker, before the correction is planned
        delivery.batch_send(batch_id=batch.pk)
    on_commit(plan_mailing.delay, mailing.pk)

    assert corrections_sent() == {readers[0].email: 1}
    later = [m for m in mail.outbox if m.subject == "A post"][1:]
    assert sorted(m.to[0] for m in later) == [readers[1].email, readers[2].email]
    for message in later:
        assert RIGHT in message.body.split("Updates and corrections")[0]
        assert f'we said "{WRONG}"; it should say "{RIGHT}"' in " ".join(
            message.body.split()
        )


def test_a_reader_sent_the_post_after_its_correction_was_saved_is_not_told_again(
    clock, author, on_commit
):
    """The post's email shows its updates from the moment they are saved: a
    reader it went to before the author confirmed the correction's email read it
    there, and gets no second telling. A digest shows only the post's summary:
    its reader, sent it then, is told."""
    reader("first@example.org")
    late = reader("second@example.org")
    reader("daily@example.org", "daily")
    clock(23, 6, 30)
    post = PostFactory(title="A post", body=WRONG)
    with override_settings(NEWSLETTER_BATCH_SIZE=1):
        announcement = announcement_planned(post)
    first, second = announcement.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    clock(23, 6, 45)
    post.refresh_from_db()
    change_url = reverse("admin:posts_post_change", args=[post.pk])
    saved = author.post(change_url, correction_form(post, wrong=WRONG, right=RIGHT))
    assert saved.status_code == 302
    update = PostUpdate.objects.get()
    clock(23, 7, 5)
    on_commit(start_due_digests.delay)  # the daily digest: the post's summary
    clock(23, 7, 10)
    delivery.batch_send(batch_id=second.pk)
    [later] = [m for m in mail.outbox if m.to == [late.email]]
    assert f'we said "{WRONG}"; it should say "{RIGHT}"' in " ".join(later.body.split())
    mail.outbox.clear()
    clock(23, 9)

    page = author.get(confirm_url(update)).content.decode()
    on_commit(author.post, confirm_url(update), {})

    assert "<strong>2</strong> readers who received the post" in page
    assert (
        "1 reader received the post but will not get it: their email of the post "
        "went after you saved it, with it." in page
    )
    assert corrections_sent() == {"first@example.org": 1, "daily@example.org": 1}


def post_with_an_uncertain_reader(clock, on_commit):
    """A post emailed at 06:30 to two readers in one batch, the provider's answer
    for one of them lost (as the reaper records it); then 09:00. The post and its
    batch."""
    reader("sent@example.org")
    uncertain = reader("uncertain@example.org")
    clock(23, 6, 30)
    post = publish(on_commit, "A post")
    Delivery.objects.filter(subscriber=uncertain).update(
        status=Delivery.Status.UNCERTAIN
    )
    batch = Batch.objects.get(mailing__post=post, mailing__kind=Mailing.Kind.POST)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.UNCERTAIN)
    mail.outbox.clear()
    clock(23, 9)
    return post, batch


def test_a_reader_left_out_as_uncertain_gets_the_correction_once_settled_as_sent(
    clock, on_commit
):
    """The author checks the provider's log: it took the post for that reader, who
    has the earlier text and is now sent the correction, once."""
    post, batch = post_with_an_uncertain_reader(clock, on_commit)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    assert corrections_sent() == {"sent@example.org": 1}

    clock(23, 10)
    on_commit(delivery.batch_mark_sent, batch_id=batch.pk)
    assert corrections_sent() == {"sent@example.org": 1, "uncertain@example.org": 1}
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    on_commit(plan_mailing.delay, mailing.pk)  # the broker rings again
    assert corrections_sent() == {"sent@example.org": 1, "uncertain@example.org": 1}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 2


def test_a_reader_left_out_as_uncertain_gets_the_correction_once_the_provider_reports(
    client, clock, on_commit
):
    """Nobody settles the batch at the desk: the provider's webhook reports the
    post delivered to that reader, who has the earlier text and is now sent the
    correction, once."""
    post, batch = post_with_an_uncertain_reader(clock, on_commit)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    assert corrections_sent() == {"sent@example.org": 1}
    row = Delivery.objects.get(batch=batch, status=Delivery.Status.UNCERTAIN)
    delivered = postmark_delivery(row.subscriber.email)
    delivered["Metadata"] = {"batch": str(batch.pk), "delivery": str(row.pk)}

    def provider_reports() -> None:
        with override_settings(
            EMAIL_BACKEND=POSTMARK_BACKEND, ANYMAIL={"WEBHOOK_SECRET": SECRET}
        ):
            assert post_postmark(client, delivered).status_code == 200

    clock(23, 10)
    on_commit(provider_reports)
    assert corrections_sent() == {"sent@example.org": 1, "uncertain@example.org": 1}
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert mailing.status == Mailing.Status.DONE
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 2


def test_a_reader_settled_as_sent_gets_no_correction_the_author_cancelled(
    clock, on_commit
):
    post, batch = post_with_an_uncertain_reader(clock, on_commit)
    mailing = delivery.mailing_create_for_correction(
        post_update=correction(post), include_uncertain=False
    )  # its doorbell not rung: the author cancels before it goes
    assert delivery.mailing_cancel(mailing_id=mailing.pk)
    clock(23, 10)
    on_commit(delivery.batch_mark_sent, batch_id=batch.pk)
    assert corrections_sent() == {}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.CANCELLED


def test_a_reader_settled_as_sent_after_leaving_gets_no_correction(clock, on_commit):
    post, batch = post_with_an_uncertain_reader(clock, on_commit)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    left = Delivery.objects.get(batch=batch, status=Delivery.Status.UNCERTAIN)
    subscriber_unsubscribe(subscriber=left.subscriber)
    clock(23, 10)
    on_commit(delivery.batch_mark_sent, batch_id=batch.pk)
    assert corrections_sent() == {"sent@example.org": 1}


def test_readers_the_provider_took_the_post_for_get_the_correction_once(
    settings, fake_esp, on_commit
):
    """Asked, the provider says what it took of an uncertain batch: those readers
    get the correction confirmed meanwhile, the others the corrected post."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    readers = [reader(f"reader{i}@example.org") for i in range(4)]
    fake_esp.set_faults(drop_after_accept_next=1)
    post = publish(on_commit, "A post")
    uncertain = Batch.objects.get(mailing__post=post, status=Batch.Status.UNCERTAIN)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    uncertain_long_enough_to_ask(uncertain)
    on_commit(delivery.batch_settle_with_provider, batch_id=uncertain.pk)
    copies: dict[str, int] = {}
    for sent in fake_esp.deliveries():
        if sent.subject.startswith("Correction: "):
            copies[sent.address] = copies.get(sent.address, 0) + 1
    assert copies == {r.email: 1 for r in readers}


def emailed_correction(clock, on_commit, title: str, **fields):
    """A post emailed to one reader at 06:30, then its correction at 09:00: the
    post and the correction's email."""
    reader("one@example.org")
    clock(23, 6, 30)
    post = publish(on_commit, title)
    mail.outbox.clear()
    clock(23, 9)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post, **fields),
        include_uncertain=False,
    )
    [message] = mail.outbox
    return post, message


def test_the_correction_email_quotes_what_changed_and_links_to_the_post(
    clock, on_commit
):
    post, message = emailed_correction(
        clock,
        on_commit,
        "Suffolk: caseloads too high",
        note="We misread the report's summary.",
    )
    assert message.subject == "Correction: Suffolk: caseloads too high"
    html = message.alternatives[0].content
    post_url = f"http://127.0.0.1:8000{post.get_absolute_url()}"
    # The correction first (after the heading, which names the post), then the link:
    # straight in the text part, through the counting redirect in the HTML.
    for part, link in (
        (message.body, post_url),
        (html[html.index("</h1>") :], "http://127.0.0.1:8000/r/"),
    ):
        assert part.index(WRONG) < part.index(RIGHT) < part.index(link)
        assert "We misread the report's summary." in part
        assert "http://127.0.0.1:8000/unsubscribe/" in part
    assert "<blockquote" in html
    assert message.extra_headers["List-Unsubscribe"].startswith(
        "<http://127.0.0.1:8000/unsubscribe/"
    )
    assert message.extra_headers["List-Unsubscribe-Post"] == (
        "List-Unsubscribe=One-Click"
    )


def test_only_a_published_posts_readers_can_get_a_correction():
    draft = PostFactory()
    with pytest.raises(ValueError):
        delivery.mailing_create_for_correction(
            post_update=correction(draft), include_uncertain=False
        )
    assert not Mailing.objects.exists()


@pytest.fixture
def author():
    client = Client()
    client.force_login(UserFactory(email="author@example.org"))
    return client


@pytest.fixture
def editor():
    """Another person at the desk (all permissions: a test whose database is
    flushed after it has no roles)."""
    client = Client()
    client.force_login(UserFactory(email="editor@example.org"))
    return client


@pytest.fixture
def sent_post(on_commit):
    """A post sent to four readers: one still reading, one who left, one who
    paused, one whose delivery is uncertain."""
    reader("reading@example.org")
    left, paused, uncertain = (
        reader(f"{name}@example.org") for name in ("left", "paused", "uncertain")
    )
    post = publish(on_commit, "Suffolk: caseloads too high")
    subscriber_unsubscribe(subscriber=left)
    subscriber_pause(subscriber=paused)
    Delivery.objects.filter(subscriber=uncertain).update(
        status=Delivery.Status.UNCERTAIN
    )
    mail.outbox.clear()
    return post


def confirm_url(update: PostUpdate) -> str:
    return reverse("admin:posts_post_correction", args=[update.post_id, update.pk])


def test_the_post_page_offers_to_email_a_saved_correction(author, sent_post):
    update = correction(sent_post)
    response = author.get(reverse("admin:posts_post_change", args=[sent_post.pk]))
    assert confirm_url(update) in response.content.decode()


def test_the_author_sees_who_it_reaches_and_a_preview_before_anything_is_sent(
    author, sent_post
):
    response = author.get(confirm_url(correction(sent_post)))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<strong>1</strong> reader who received the post" in page
    assert "1 reader received the post but will not get it: unsubscribed since" in page
    assert "1 reader received the post but will not get it: paused their emails" in page
    assert "1 reader may or may not have received the post" in page
    assert "Correction: Suffolk: caseloads too high" in page
    assert 'width="700"' in page and 'width="375"' in page
    assert "Inspectors rated the service Inadequate." in page
    assert mail.outbox == []
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()


def test_readers_whose_email_of_the_post_never_arrived_are_not_sent_its_correction(
    author, on_commit
):
    """The provider took the post for four readers but its latest word on three
    is that the email never arrived: a full mailbox (a soft bounce: the reader
    stays on the list), their mail provider refusing our sender, an address
    Mailgun dropped it for. They were told "we sent you this post" of a text
    they never had; the author is told why they are left out."""
    for name in ("arrived", "full", "refused", "dropped"):
        reader(f"{name}@example.org")
    post = publish(on_commit, "Suffolk: caseloads too high")
    for name, fields in (
        ("full", {"last_event": "bounced"}),
        ("refused", {"last_event": "bounced", "sender_refused": True}),
        ("dropped", {"last_event": "failed"}),
    ):
        Delivery.objects.filter(subscriber__email=f"{name}@example.org").update(
            **fields
        )
    mail.outbox.clear()
    update = correction(post)

    page = author.get(confirm_url(update)).content.decode()
    assert "<strong>1</strong> reader who received the post" in page
    assert (
        "3 readers received the post but will not get it: their email of the post "
        "never arrived (the provider reported it bounced or dropped)" in page
    )
    on_commit(author.post, confirm_url(update), {})
    assert corrections_sent() == {"arrived@example.org": 1}


def test_a_reader_whose_email_of_the_post_bounces_as_the_correction_goes_is_skipped(
    author, on_commit, django_capture_on_commit_callbacks
):
    """The author confirms the correction; before its batch goes, the provider
    reports one reader's email of the post bounced. The batch reads the ledger
    as it is when it goes, as the page did: that reader never had the post."""
    for name in ("arrived", "bounced"):
        reader(f"{name}@example.org")
    post = publish(on_commit, "Suffolk: caseloads too high")
    mail.outbox.clear()
    update = correction(post)
    with django_capture_on_commit_callbacks() as to_plan:
        author.post(confirm_url(update), {})
    with django_capture_on_commit_callbacks() as to_send:
        for plan in to_plan:
            plan()
    assert Delivery.objects.filter(mailing__kind=Mailing.Kind.CORRECTION).count() == 2
    Delivery.objects.filter(subscriber__email="bounced@example.org").update(
        last_event="bounced"
    )
    for send in to_send:
        on_commit(send)

    assert corrections_sent() == {"arrived@example.org": 1}
    skipped = Delivery.objects.get(
        mailing__kind=Mailing.Kind.CORRECTION, subscriber__email="bounced@example.org"
    )
    assert skipped.status == Delivery.Status.SKIPPED


def test_confirming_twice_emails_each_reader_once(author, sent_post, on_commit):
    update = correction(sent_post)
    for _ in range(2):
        response = on_commit(author.post, confirm_url(update), {})
        mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
        assert response.status_code == 302
        assert response.url == reverse(
            "admin:newsletter_mailing_change", args=[mailing.pk]
        )
    assert corrections_sent() == {"reading@example.org": 1}
    progress = author.get(response.url)
    assert progress.status_code == 200


def test_the_author_chooses_to_include_readers_whose_delivery_is_uncertain(
    author, sent_post, on_commit
):
    on_commit(
        author.post, confirm_url(correction(sent_post)), {"include_uncertain": "on"}
    )
    assert corrections_sent() == {
        "reading@example.org": 1,
        "uncertain@example.org": 1,
    }


def test_a_test_send_goes_to_the_author_alone(author, sent_post, on_commit):
    update = correction(sent_post)
    test_url = reverse(
        "admin:posts_post_correction_test", args=[sent_post.pk, update.pk]
    )
    response = on_commit(author.post, test_url)
    assert response.status_code == 302
    [test] = mail.outbox
    assert test.to == ["author@example.org"]
    assert test.subject == "[TEST] Correction: Suffolk: caseloads too high"
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()


def test_an_editor_without_the_mailing_permission_may_preview_but_not_send(
    sent_post, on_commit
):
    editor = UserFactory(username="editor", is_superuser=False)
    # The post's updates too: their email is for those who may see them.
    editor.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_post", "change_post", "review_post", "view_postupdate"]
        )
    )
    client = Client()
    client.force_login(editor)
    update = correction(sent_post)
    assert client.get(confirm_url(update)).status_code == 200
    assert on_commit(client.post, confirm_url(update), {}).status_code == 403
    assert mail.outbox == []
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()


def test_who_may_not_change_the_post_is_offered_no_test_of_its_correction(
    sent_post, on_commit
):
    """The correction's page offered "Send a test to me" to anyone who could open
    it, and the button answered 403 to those who may not change the post."""
    reviewer = UserFactory(
        username="reviewer", email="reviewer@example.org", is_superuser=False
    )
    reviewer.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_post", "review_post", "view_postupdate"]
        )
    )
    client = Client()
    client.force_login(reviewer)
    update = correction(sent_post)
    test_url = reverse(
        "admin:posts_post_correction_test", args=[sent_post.pk, update.pk]
    )
    page = client.get(confirm_url(update))
    assert page.status_code == 200
    assert test_url not in page.text
    assert "Send a test to me" not in page.text
    assert "Tests of this email are sent by those who may change the post." in page.text
    assert on_commit(client.post, test_url).status_code == 403
    assert mail.outbox == []


def test_a_correction_of_another_post_or_a_draft_sends_nothing(author, on_commit):
    draft = PostFactory()
    published = PublishedPostFactory()
    update = correction(draft)
    elsewhere = reverse("admin:posts_post_correction", args=[published.pk, update.pk])
    assert author.get(elsewhere).status_code == 404
    assert on_commit(author.post, elsewhere, {}).status_code == 404
    missing = reverse("admin:posts_post_correction", args=[draft.pk, 999999])
    assert author.get(missing).status_code == 404
    page = author.get(confirm_url(update)).content.decode()
    assert "This post is not published" in page
    response = on_commit(author.post, confirm_url(update), {}, follow=True)
    assert "Only the readers of a published post" in response.content.decode()
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()
    assert mail.outbox == []


def test_an_update_to_a_scheduled_post_is_not_offered_to_readers_not_yet_sent_it(
    author, on_commit
):
    # Scheduled for Monday, its status already "published": the post's page
    # offered to email its readers, and the update's page a button for 0 readers
    # that ended in "Only the readers of a published post can get a correction."
    reader("reading@example.org")
    post = PostFactory(published_at=timezone.now() + timedelta(days=3))
    on_commit(post_publish, post=post)
    update = correction(post)

    change_page = author.get(reverse("admin:posts_post_change", args=[post.pk])).text
    page = author.get(confirm_url(update)).text

    assert confirm_url(update) not in change_page
    assert "Not published: nobody has received this post." in change_page
    assert "nobody has received it, so there is nobody to tell" in page
    assert 'id="confirm-correction"' not in page
    assert not Mailing.objects.exists()


@pytest.mark.parametrize("sent_before_the_cancel", [1, 0], ids=["part-sent", "unsent"])
def test_a_cancelled_correction_is_emailed_again_to_the_readers_it_had_not_reached(
    settings, author, on_commit, sent_before_the_cancel
):
    """The author cancelled its email (one batch gone, or none planned yet), then
    confirms it again: the others get it, nobody a second copy."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    readers = [reader(f"reader{i}@example.org") for i in range(3)]
    post = publish(on_commit, "A post")
    mail.outbox.clear()
    update = correction(post)
    # Its doorbells are not rung: its batches go below, one by one.
    mailing = delivery.mailing_create_for_correction(
        post_update=update, include_uncertain=False
    )
    if sent_before_the_cancel:
        while delivery.mailing_plan_page(mailing_id=mailing.pk):
            pass
        first = mailing.batches.order_by("number").first()
        delivery.batch_send(batch_id=first.pk)
    assert delivery.mailing_cancel(mailing_id=mailing.pk)
    sent = {r.email: 1 for r in readers[:sent_before_the_cancel]}
    assert corrections_sent() == sent

    page = author.get(confirm_url(update)).content.decode()
    assert "Its email was cancelled" in page
    assert 'id="confirm-correction"' in page
    response = on_commit(author.post, confirm_url(update), {})
    assert response.status_code == 302
    assert corrections_sent() == {r.email: 1 for r in readers}
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert mailing.status == Mailing.Status.DONE
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


@pytest.mark.parametrize("settled", [False, True], ids=["left uncertain", "settled"])
def test_a_correction_sent_again_reaches_the_readers_its_uncertain_batch_skipped(
    settings, author, on_commit, settled
):
    """Cancelled while a batch waited for its retry beside a reader whose answer
    was lost, the batch was left to settle with its waiting reader skipped:
    confirmed again, the correction reaches that reader too, settled or not."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    readers = [reader(f"reader{i}@example.org") for i in range(3)]
    post = publish(on_commit, "A post")
    mail.outbox.clear()
    update = correction(post)
    mailing = delivery.mailing_create_for_correction(
        post_update=update, include_uncertain=False
    )
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    first = mailing.batches.order_by("number").first()
    uncertain = parted_by_its_lanes(first)
    assert delivery.mailing_cancel(mailing_id=mailing.pk)
    if settled:
        assert delivery.batch_mark_sent(batch_id=first.pk)

    on_commit(author.post, confirm_url(update), {})
    others = [r for r in readers if r.pk != uncertain.subscriber_id]
    assert corrections_sent() == {r.email: 1 for r in others}
    uncertain.refresh_from_db()
    first.refresh_from_db()
    if settled:
        assert (uncertain.status, first.status) == ("sent", Batch.Status.DONE)
    else:  # it went once more, and its uncertain reader is still to settle
        assert (uncertain.status, first.status) == ("uncertain", "uncertain")
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 2 + settled


def test_the_post_page_shows_the_dated_correction_the_email_links_to(client):
    post = PublishedPostFactory()
    correction(post, made_on="2026-11-24")
    page = client.get(post.get_absolute_url()).content.decode()
    assert 'Correction, <time datetime="2026-11-24">24 November 2026</time>' in page
    assert f"we said <q>{WRONG}</q>; it should say <q>{RIGHT}</q>" in page


def correction_form(post, **update) -> dict:
    """The post's admin form, published, with one row of updates and corrections."""
    when = timezone.localtime(post.published_at)
    return admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        status="published",
        published_at_0=f"{when:%Y-%m-%d}",
        published_at_1=f"{when:%H:%M:%S}",
        **{
            "updates-TOTAL_FORMS": "1",
            "updates-0-post": str(post.pk),
            "updates-0-kind": "correction",
            "updates-0-made_on": "2026-11-24",
            **{f"updates-0-{field}": value for field, value in update.items()},
        },
    )


def test_the_author_adds_a_correction_on_the_post_then_emails_it(
    author, sent_post, on_commit
):
    change_url = reverse("admin:posts_post_change", args=[sent_post.pk])
    empty = author.post(change_url, correction_form(sent_post))
    assert empty.status_code == 200
    assert "Say what changed" in empty.content.decode()
    assert not PostUpdate.objects.exists()

    saved = author.post(
        change_url, correction_form(sent_post, wrong=WRONG, right=RIGHT)
    )
    assert saved.status_code == 302
    update = PostUpdate.objects.get()
    assert (update.wrong, update.right) == (WRONG, RIGHT)
    on_commit(author.post, confirm_url(update), {})
    assert corrections_sent() == {"reading@example.org": 1}

    # Emailed, it stays: deleting it is refused with a reason, not an error page.
    refused = author.post(
        change_url,
        correction_form(
            sent_post,
            id=str(update.pk),
            wrong=WRONG,
            right=RIGHT,
            DELETE="on",
        )
        | {"updates-INITIAL_FORMS": "1"},
    )
    assert refused.status_code == 200
    assert "protected" in refused.content.decode()
    assert PostUpdate.objects.filter(pk=update.pk).exists()


def test_an_emailed_corrections_wording_stays_as_its_readers_received_it(
    author, sent_post, on_commit
):
    """Changed at the desk after its email went, the post's page said one thing
    and the readers' inboxes another, with no word of it."""
    update = correction(sent_post, note="We misread the report.")
    on_commit(author.post, confirm_url(update), {})
    assert corrections_sent() == {"reading@example.org": 1}
    change_url = reverse("admin:posts_post_change", args=[sent_post.pk])
    response = author.post(
        change_url,
        correction_form(
            sent_post,
            id=str(update.pk),
            kind="update",
            wrong=WRONG,
            right="Inspectors rated the service Good.",
            note="Reworded.",
        )
        | {"updates-INITIAL_FORMS": "1"},
    )
    assert response.status_code == 302
    update.refresh_from_db()
    assert (update.kind, update.wrong, update.right, update.note) == (
        PostUpdate.Kind.CORRECTION,
        WRONG,
        RIGHT,
        "We misread the report.",
    )
    page = author.get(sent_post.get_absolute_url()).content.decode()
    assert f"it should say <q>{RIGHT}</q>" in page
    desk = author.get(change_url).content.decode()
    assert "Readers have it as it was sent" in desk


def test_a_correction_not_yet_emailed_can_still_be_reworded(author, sent_post):
    update = correction(sent_post)
    change_url = reverse("admin:posts_post_change", args=[sent_post.pk])
    response = author.post(
        change_url,
        correction_form(
            sent_post, id=str(update.pk), wrong=WRONG, right="It was rated Good."
        )
        | {"updates-INITIAL_FORMS": "1"},
    )
    assert response.status_code == 302
    update.refresh_from_db()
    assert update.right == "It was rated Good."


@pytest.mark.parametrize(
    "half", [{"wrong": WRONG}, {"right": RIGHT}], ids=["said-only", "should-say-only"]
)
def test_a_correction_saying_only_one_side_of_what_changed_is_refused(
    author, sent_post, half
):
    """Given what the post said without what it should say (or the reverse), and a
    note: the email quoted an empty "It should say", or dropped the half given."""
    change_url = reverse("admin:posts_post_change", args=[sent_post.pk])
    response = author.post(
        change_url, correction_form(sent_post, note="We misread the report.", **half)
    )
    assert response.status_code == 200
    assert "what the post said and what it should say" in response.content.decode()
    assert not PostUpdate.objects.exists()


def test_a_post_taken_off_the_site_after_it_was_emailed_is_not_said_unread(
    author, sent_post
):
    """Its readers did receive it: told "nobody has received it", the author would
    not think to publish it again and tell them."""
    update = correction(sent_post)
    unpublish_at_the_desk(sent_post)
    pages = [
        author.get(confirm_url(update)).content.decode(),
        author.get(
            reverse("admin:posts_post_change", args=[sent_post.pk])
        ).content.decode(),
    ]
    for page in pages:
        assert "nobody has received" not in page
        assert "publish it again" in page.lower()


def test_a_correction_whose_post_is_taken_down_as_it_goes_waits_for_the_post(
    clock, on_commit, monkeypatch
):
    """Unpublishing paused the correction's mailing, but its batch already
    claimed still went, its link to the post leading nowhere."""
    reader("one@example.org")
    reader("two@example.org")
    post = publish(on_commit, "Suffolk: caseloads too high")
    taken_down_once_its_readers_are_read(monkeypatch, post)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    assert corrections_sent() == {}
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert set(mailing.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.QUEUED
    }

    on_commit(post_publish, post=post)
    on_commit(delivery.mailing_resume, mailing_id=mailing.pk)
    assert corrections_sent() == {"one@example.org": 1, "two@example.org": 1}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def corrected_as_handed_over(monkeypatch, post, *, refused: bool = False) -> list:
    """The author corrects the post (WRONG to RIGHT) and confirms its correction,
    planned at once, while the first email is being handed to the provider (which
    then refuses it, if `refused`); the list gets the correction's mailing then."""
    handed_over = locmem.EmailBackend.send_messages
    corrections_made = []

    def author_corrects_meanwhile(backend, messages):
        if not corrections_made:
            post.body = RIGHT
            post.save()
            mailing = delivery.mailing_create_for_correction(
                post_update=correction(post), include_uncertain=False
            )
            while delivery.mailing_plan_page(mailing_id=mailing.pk):
                pass
            corrections_made.append(mailing)
            if refused:
                raise ConnectionRefusedError("the provider is down")
        return handed_over(backend, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", author_corrects_meanwhile)
    return corrections_made


def test_a_correction_confirmed_while_a_batch_of_the_earlier_text_goes_reaches_it(
    settings, monkeypatch
):
    """A batch renders the post when it is claimed. The author corrects the post
    and confirms the correction while one is being handed over, its readers still
    queued in the ledger: they get the earlier text, and the correction too."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    readers = [reader(f"reader{i}@example.org") for i in range(2)]
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    [batch] = announcement.batches.all()
    corrections_made = corrected_as_handed_over(monkeypatch, post)
    delivery.batch_send(batch_id=batch.pk)
    assert all(WRONG in message.body for message in mail.outbox)
    for correction_batch in corrections_made[0].batches.all():
        delivery.batch_send(batch_id=correction_batch.pk)

    assert corrections_sent() == {r.email: 1 for r in readers}


def test_a_reader_whose_earlier_text_the_provider_refused_gets_no_correction(
    settings, monkeypatch
):
    """The author confirms a correction while a batch of the post is being handed
    over, and the provider refuses it (down for a minute): its readers never had
    the earlier text. The batch's retry brings them the corrected post, and the
    correction, going first, is not sent them ("we sent you this post")."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    readers = [reader(f"reader{i}@example.org") for i in range(2)]
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    [batch] = announcement.batches.all()
    corrections_made = corrected_as_handed_over(monkeypatch, post, refused=True)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    assert mail.outbox == []
    for correction_batch in corrections_made[0].batches.all():
        delivery.batch_send(batch_id=correction_batch.pk)
    delivery.batch_send(batch_id=batch.pk)  # its retry

    assert corrections_sent() == {}
    assert sorted(m.to[0] for m in mail.outbox) == [r.email for r in readers]
    for message in mail.outbox:
        text, _ = message.body.split("Updates and corrections")
        assert RIGHT in text and WRONG not in text


def test_a_reader_skipped_as_never_sent_the_earlier_text_stays_so_when_sent_again(
    settings, monkeypatch
):
    """The correction's batch skipped a reader whose email of the post the
    provider had refused (never sent the earlier text), and waited for its retry
    when the author cancelled it. The post's retry brought that reader the
    corrected post. Sent again, the correction reaches the reader it was kept
    from, not them."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    told, refused = (reader(f"{name}@example.org") for name in ("told", "refused"))
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    first, second = announcement.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    settings.NEWSLETTER_BATCH_SIZE = 2  # the correction's: one batch of both
    corrections_made = corrected_as_handed_over(monkeypatch, post, refused=True)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=second.pk)
    [mailing] = corrections_made
    [batch] = mailing.batches.all()

    def still_down(backend, messages):
        raise ConnectionRefusedError("the provider is down")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", still_down)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    monkeypatch.undo()
    skipped = batch.deliveries.get(subscriber=refused)
    assert skipped.status == Delivery.Status.SKIPPED
    assert delivery.mailing_cancel(mailing_id=mailing.pk)
    delivery.batch_send(batch_id=second.pk)  # its retry: the corrected post
    assert [m.to for m in mail.outbox] == [[told.email], [refused.email]]

    assert delivery.correction_send_again(mailing_id=mailing.pk)
    delivery.batch_send(batch_id=batch.pk)

    assert corrections_sent() == {told.email: 1}
    skipped.refresh_from_db()
    assert skipped.status == Delivery.Status.SKIPPED


def test_the_text_emails_heading_is_underlined_to_its_end(clock, on_commit):
    _post, message = emailed_correction(clock, on_commit, "Kent")
    lines = message.body.splitlines()
    heading = lines.index('Correction to "Kent"')
    assert lines[heading + 1] == "=" * len('Correction to "Kent"')


def test_a_reader_whose_uncertain_copy_went_after_the_correction_is_not_sent_it(
    settings, monkeypatch
):
    """The author includes readers whose delivery is uncertain, and pauses the
    correction's email before it goes. Meanwhile the announcement goes on with
    the corrected post, and the provider's answer for one batch is lost. Resumed,
    the correction reaches the reader sent the earlier text, not that batch's
    reader: their copy, if any, said it right already."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    readers = [reader(f"reader{i}@example.org") for i in range(2)]
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    first, second = announcement.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    post.refresh_from_db()
    post.body = RIGHT
    post.save()
    mailing = delivery.mailing_create_for_correction(
        post_update=correction(post), include_uncertain=True
    )
    assert delivery.mailing_pause(mailing_id=mailing.pk)

    def connection_dropped(backend, messages):
        raise ConnectionResetError("the provider's answer was lost")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", connection_dropped)
    delivery.batch_send(batch_id=second.pk)
    monkeypatch.undo()
    second.refresh_from_db()
    assert second.status == Batch.Status.UNCERTAIN
    assert delivery.mailing_resume(mailing_id=mailing.pk)
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    for batch in mailing.batches.all():
        delivery.batch_send(batch_id=batch.pk)

    assert corrections_sent() == {readers[0].email: 1}


def test_a_correction_to_a_post_nobody_was_sent_is_not_offered_nor_locked(
    author, on_commit
):
    """Published without its email (or before any reader's copy went), a post
    has nobody to tell: the page offered to email "0 readers", and confirming
    made the correction read-only for good though no reader had it."""
    reader("reading@example.org")
    post = PublishedPostFactory(email_subscribers=False)
    update = correction(post)

    page = author.get(confirm_url(update)).text
    response = on_commit(author.post, confirm_url(update), {}, follow=True)

    assert 'id="confirm-correction"' not in page
    assert "nobody has received it, so there is nobody to tell" in page
    assert "Nobody has received this post" in response.text
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()
    change_page = author.get(reverse("admin:posts_post_change", args=[post.pk])).text
    assert confirm_url(update) not in change_page


def test_a_correction_to_a_post_whose_readers_have_all_left_is_not_offered_nor_locked(
    author, on_commit
):
    """Everyone sent the post has unsubscribed or paused since: the page offered
    to email "0 readers", and confirming said the correction was "on its way"
    and made it read-only for good, though it went to nobody."""
    left, paused = reader("left@example.org"), reader("paused@example.org")
    post = publish(on_commit, "A post")
    subscriber_unsubscribe(subscriber=left)
    subscriber_pause(subscriber=paused)
    mail.outbox.clear()
    update = correction(post)

    page = author.get(confirm_url(update)).text
    response = on_commit(author.post, confirm_url(update), {}, follow=True)

    assert 'id="confirm-correction"' not in page
    assert "1 reader received the post but will not get it: unsubscribed since" in page
    assert "Nobody who received it without this correction still gets" in page
    assert said(response) == [
        (
            "error",
            "Nobody who received this post without this correction still gets our "
            "emails: there is nobody to tell.",
        )
    ]
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()
    assert corrections_sent() == {}


def test_a_reader_skipped_by_the_batch_going_when_the_correction_came_is_not_sent_it(
    settings, monkeypatch
):
    """The author confirms a correction while a batch of the post is being handed
    over. One of its readers turned to a weekly digest before it went, so the
    batch skipped them: they never had the post (their digest will carry it,
    corrected), and get no correction telling them "we sent you this post"."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    sent, turned = reader("sent@example.org"), reader("turned@example.org")
    post = PostFactory(title="A post", body=WRONG)
    announcement = announcement_planned(post)
    SubscriberTopic.objects.filter(subscriber=turned).update(frequency="weekly")
    [batch] = announcement.batches.all()
    corrections_made = corrected_as_handed_over(monkeypatch, post)
    delivery.batch_send(batch_id=batch.pk)
    assert [m.to for m in mail.outbox] == [[sent.email]]
    for correction_batch in corrections_made[0].batches.all():
        delivery.batch_send(batch_id=correction_batch.pk)

    assert corrections_sent() == {sent.email: 1}
    assert corrections_made[0].deliveries.get(subscriber=turned).status == (
        Delivery.Status.SKIPPED
    )


def test_a_reader_settled_as_sent_while_the_post_is_off_the_site_gets_it_once_back(
    clock, on_commit
):
    """The correction went; the post was then taken off the site; settling the
    uncertain batch emailed its reader the correction at once, its link leading
    nowhere. It now waits, paused, until the author resumes it with the post
    back on the site."""
    post, batch = post_with_an_uncertain_reader(clock, on_commit)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(post),
        include_uncertain=False,
    )
    unpublish_at_the_desk(post)
    clock(23, 10)
    on_commit(delivery.batch_mark_sent, batch_id=batch.pk)
    assert corrections_sent() == {"sent@example.org": 1}
    mailing = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert mailing.paused_at is not None

    on_commit(post_publish, post=post)
    on_commit(delivery.mailing_resume, mailing_id=mailing.pk)
    assert corrections_sent() == {"sent@example.org": 1, "uncertain@example.org": 1}


def test_confirming_a_correction_that_cannot_go_again_says_why_and_sends_nothing(
    author, sent_post, on_commit
):
    """Confirmed a second time while its email goes, or after a cancel with its
    post off the site, the page came back on the mailing saying nothing: the
    author could not tell whether it had gone again."""
    update = correction(sent_post)
    mailing = delivery.mailing_create_for_correction(
        post_update=update, include_uncertain=False
    )  # its doorbell not rung: it is going out
    response = author.post(confirm_url(update), {}, follow=True)
    assert said(response) == [
        (
            "warning",
            "The correction's email is already going out: nothing more to send.",
        )
    ]
    assert delivery.mailing_cancel(mailing_id=mailing.pk)
    unpublish_at_the_desk(sent_post)
    response = on_commit(author.post, confirm_url(update), {}, follow=True)
    assert said(response) == [
        (
            "warning",
            "The correction's email was not sent again: its post is not on the "
            "site. Publish it again first.",
        )
    ]
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.CANCELLED
    assert corrections_sent() == {}


def cancelled_correction(on_commit) -> tuple[Post, PostUpdate, Mailing]:
    """A published post to one reader, and its correction's email, cancelled
    before it went."""
    reader("reading@example.org")
    post = publish(on_commit, "A post")
    update = correction(post)
    with transaction.atomic():
        mailing = delivery.mailing_create_for_correction(
            post_update=update, include_uncertain=False
        )
        assert delivery.mailing_cancel(mailing_id=mailing.pk)
    return post, update, mailing


def test_a_cancelled_correction_sent_again_with_nobody_left_to_reach_says_so(
    author, on_commit
):
    """The one reader the cancel kept it from unsubscribed since: confirmed
    again, the page said it was on its way to the readers it had not reached."""
    _post, update, _mailing = cancelled_correction(on_commit)
    subscriber_unsubscribe(subscriber=Subscriber.objects.get())

    response = on_commit(author.post, confirm_url(update), {}, follow=True)

    assert said(response) == [
        (
            "warning",
            "The correction's email has reached every reader who received the "
            "post without it and still gets our emails: nothing more to send.",
        )
    ]
    assert corrections_sent() == {}


def test_the_correction_page_says_its_email_is_going_or_paused_not_emailed(
    author, sent_post
):
    update = correction(sent_post)
    # Its doorbell not rung: it is going out.
    delivery.mailing_create_for_correction(post_update=update, include_uncertain=False)
    going = author.get(confirm_url(update)).text
    unpublish_at_the_desk(sent_post)
    paused = author.get(confirm_url(update)).text

    assert "This correction's email is going out" in going
    assert "This correction's email is paused. The post was unpublished" in paused
    assert "has been emailed" not in going + paused


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_double_click_sending_a_cancelled_correction_again_says_it_is_going(
    author, on_commit
):
    """The author cancelled a correction's email, then confirms it again with a
    double click: the first click sends it again as the second asks, and the
    second came back saying it was not sent again because the post was not on
    the site, though the post was, and the email was going."""
    _post, update, mailing = cancelled_correction(on_commit)

    going, response = as_it_commits(
        lambda: delivery.correction_send_again(mailing_id=mailing.pk),
        lambda: author.post(confirm_url(update), {}, follow=True),
        must_wait=True,  # the second, for the first's
    )

    assert going is True
    assert said(response) == [
        (
            "warning",
            "The correction's email is already going out: nothing more to send.",
        )
    ]
    assert corrections_sent() == {"reading@example.org": 1}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_correction_confirmed_as_its_post_is_taken_down_is_refused(
    author, editor, on_commit
):
    """The author confirms a correction's email as an editor takes its post off the
    site: the confirmation read the post as published before the unpublish
    committed and made a mailing the unpublish had not paused, which went out
    once the post was back without the author resuming it. It now waits for the
    unpublish, and is refused as for any post off the site."""
    reader("reading@example.org")
    post = publish(on_commit, "A post")
    update = correction(post)
    response = as_taken_down(
        post, editor, lambda: author.post(confirm_url(update), {}, follow=True)
    )
    assert said(response) == [
        ("error", "Only the readers of a published post can get a correction.")
    ]
    assert not Mailing.objects.filter(kind=Mailing.Kind.CORRECTION).exists()
    assert corrections_sent() == {}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_taken_down_as_its_correction_is_confirmed_holds_the_correction(
    editor, on_commit, monkeypatch
):
    """An editor takes the post off the site as its correction's email, its
    readers counted, is being made: the unpublish paused the post's mailings but
    not the correction's, made just after, whose email went out once the post was
    back without the author resuming it. The unpublish now waits for the
    correction and pauses its mailing with the others."""
    reader("reading@example.org")
    post = publish(on_commit, "A post")
    update = correction(post)
    counted, go_on = threading.Event(), threading.Event()
    count = corrections.anyone_to_tell

    def counted_then_wait(post):
        monkeypatch.setattr(corrections, "anyone_to_tell", count)
        anyone = count(post)
        counted.set()
        go_on.wait(timeout=10)  # before the mailing is made
        return anyone

    monkeypatch.setattr(corrections, "anyone_to_tell", counted_then_wait)
    # A worker busy elsewhere takes up its planning once the desk is done: rung
    # at the commit (tasks run in-process here), it would race the desk's pause.
    rings = []
    monkeypatch.setattr(planner, "ring_once_committed", rings.append)

    def confirm() -> Mailing:
        with transaction.atomic():
            return delivery.mailing_create_for_correction(
                post_update=update, include_uncertain=False
            )

    made, desk = [], []
    confirming = in_a_thread(confirm, made)
    assert counted.wait(timeout=10)
    taking_down = in_a_thread(lambda: unpublish_at_the_desk(post, editor=editor), desk)
    until_done_or_waiting_for_a_lock(taking_down)
    go_on.set()
    confirming.join(timeout=10)
    taking_down.join(timeout=10)

    assert len(desk) == 1, "the unpublish did not go through"
    [mailing] = made
    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    for ring in rings:
        ring()
    assert corrections_sent() == {}

    on_commit(post_publish, post=post)
    on_commit(delivery.mailing_resume, mailing_id=mailing.pk)
    assert corrections_sent() == {"reading@example.org": 1}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_correction_sent_again_as_its_post_is_taken_down_is_refused(
    author, editor, on_commit
):
    """The author confirms a cancelled correction's email again as an editor takes
    its post off the site: the send again read the post as published before the
    unpublish committed, whose pause passed the mailing by, cancelled still. Its
    email then waited queued, not shown paused at the desk, and went out once the
    post was back without the author resuming it. The send again now waits for
    the unpublish, and is refused as for any post off the site."""
    post, update, mailing = cancelled_correction(on_commit)
    response = as_taken_down(
        post, editor, lambda: author.post(confirm_url(update), {}, follow=True)
    )
    assert said(response) == [
        (
            "warning",
            "The correction's email was not sent again: its post is not on the "
            "site. Publish it again first.",
        )
    ]
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.CANCELLED
    assert corrections_sent() == {}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_taken_down_as_its_correction_is_sent_again_holds_the_correction(
    editor, on_commit, monkeypatch
):
    """An editor takes the post off the site as the author sends a cancelled
    correction's email again: the unpublish's pause passed the mailing by,
    cancelled still, the send again not yet committed. Its email then waited
    queued, not shown paused at the desk, and went out once the post was back
    without the author resuming it. The unpublish now waits for the send again,
    and pauses the mailing with the post's others."""
    post, _update, mailing = cancelled_correction(on_commit)
    # A worker busy elsewhere takes up its planning once the desk is done: rung
    # at the commit (tasks run in-process here), it would race the desk's pause.
    rings = []
    monkeypatch.setattr(control, "ring_once_committed", rings.append)

    going, _editor = as_it_commits(
        lambda: delivery.correction_send_again(mailing_id=mailing.pk),
        lambda: unpublish_at_the_desk(post, editor=editor),
    )

    assert going is True
    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    for ring in rings:
        ring()
    assert corrections_sent() == {}

    monkeypatch.undo()
    on_commit(post_publish, post=post)
    assert corrections_sent() == {}
    on_commit(delivery.mailing_resume, mailing_id=mailing.pk)
    assert corrections_sent() == {"reading@example.org": 1}
