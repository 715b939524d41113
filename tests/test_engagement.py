"""Clicks through the site's own redirect, counted as people or machines, per link
and never per reader (newsletter/engagement.py)."""

import re
import threading
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core import mail, signing
from django.core.cache import cache
from django.db import IntegrityError, OperationalError, connection
from django.utils import timezone

from newsletter import delivery, engagement
from newsletter.models import Delivery, Link, Mailing, MailingHour
from posts.models import Post

from . import test_webhooks as webhooks_test
from .factories import (
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
)
from .locks import in_a_thread, until_done_or_waiting_for_a_lock

pytestmark = pytest.mark.django_db

REPORT = "https://www.justiceinspectorates.gov.uk/hmiprobation/suffolk/"
DATA = "https://data.justice.gov.uk/probation?area=suffolk&year=2026"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)


@pytest.fixture
def email(publish, celery_eager):
    """The post's email as a reader got it."""
    SubscriberFactory(email="reader@example.org")
    post = PostFactory(
        slug="suffolk",
        body=f"Read [the official report]({REPORT}) and [the figures]({DATA}).",
    )
    publish(post)
    [message] = mail.outbox
    return message


@pytest.fixture
def clock(email, monkeypatch):
    """The time, in seconds after the email went out."""
    sent = Mailing.objects.get().created_at

    def set_to(seconds: float) -> None:
        moment = sent + timedelta(seconds=seconds)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    set_to(0)
    return set_to


def redirects(message) -> dict[str, str]:
    """The email's redirect paths, by the address each leads to ("hidden" for
    the link no person sees, "nowhere" for one the redirect cannot follow)."""
    html = message.alternatives[0].content
    found = {}
    for path in re.findall(r'href="http://127\.0\.0\.1:8000(/r/[^"/]+/)"', html):
        link = engagement.link_for_token(path.split("/")[2])
        if link is None:
            found["nowhere"] = path
        else:
            found["hidden" if link.hidden else link.url] = path
    return found


def counts() -> dict[str, tuple[int, int]]:
    """(people, machines) by link address, the hidden link as "hidden", once
    beat's flush has added what Redis counted (nothing to add without Redis)."""
    engagement.click_counts_flush()
    return {
        "hidden" if link.hidden else link.url: (link.people, link.machines)
        for link in Link.objects.all()
    }


def click(client, path, *, agent=BROWSER, address="192.0.2.10", method="get"):
    return getattr(client, method)(path, HTTP_USER_AGENT=agent, REMOTE_ADDR=address)


def test_the_emails_links_go_through_the_redirect_and_one_is_hidden(email):
    html = email.alternatives[0].content
    links = redirects(email)
    assert {REPORT, DATA, "http://127.0.0.1:8000/posts/suffolk/", "hidden"} <= set(
        links
    )
    assert REPORT not in html
    hidden = re.search(r"<a [^>]*{}[^>]*>".format(re.escape(links["hidden"])), html)
    assert 'aria-hidden="true"' in hidden.group(0)
    assert "display:none" in hidden.group(0)
    # The reader's own links are not counted: they name the reader.
    assert "http://127.0.0.1:8000/unsubscribe/" in html
    # The text part keeps the addresses themselves.
    assert REPORT in email.body


def test_a_person_following_a_link_is_redirected_and_counted_as_a_person(
    client, email, clock
):
    clock(3600)
    response = click(client, redirects(email)[REPORT])
    assert response.status_code == 302
    assert response["Location"] == REPORT
    assert counts()[REPORT] == (1, 0)
    assert counts()[DATA] == (0, 0)


def test_the_redirect_skips_sessions_and_login_but_keeps_the_security_headers(
    client, email, clock
):
    clock(3600)
    response = click(client, redirects(email)[REPORT])
    assert response.status_code == 302
    # Answered before the session, authentication and CSRF middleware ran.
    assert not hasattr(response.wsgi_request, "user")
    assert not response.cookies
    assert "Vary" not in response
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
    assert response["X-Robots-Tag"] == "noindex"


def test_a_500_made_by_the_redirect_still_carries_the_security_headers(
    client, email, clock
):
    """The database down, and the link not in the cache: the redirect's 500 was
    made above the CSP and X-Frame-Options middleware, without them."""
    path = redirects(email)[REPORT]
    cache.clear()

    def database_down(execute, sql, params, many, context):
        raise OperationalError("the database went away")

    client.raise_request_exception = False
    with connection.execute_wrapper(database_down):
        response = click(client, path)

    assert response.status_code == 500
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_an_address_with_a_query_string_is_followed_whole(client, email, clock):
    clock(3600)
    assert click(client, redirects(email)[DATA])["Location"] == DATA


def test_an_address_written_with_spaces_or_over_two_lines_goes_where_the_page_does(
    client, publish, celery_eager
):
    """A link pasted as HTML with a space before its closing quote, or wrapped
    onto a second line: the post's page follows it as browsers read it (without
    them), yet the email's redirect kept them, and sent readers on to
    ".../suffolk/%20", a page the inspectorate does not have."""
    SubscriberFactory(email="reader@example.org")
    post = PostFactory(
        slug="suffolk",
        body=f'Read <a href="{REPORT} ">the official report</a> and '
        '<a href="https://data.justice.gov.uk/probation?area=suffolk\n'
        '&amp;year=2026">the figures</a>.',
    )
    publish(post)
    [message] = mail.outbox
    paths = redirects(message)
    assert {REPORT, DATA} <= set(paths)
    followed = {click(client, paths[url])["Location"] for url in (REPORT, DATA)}
    assert followed == {REPORT, DATA}


def test_the_redirect_keeps_no_record_of_who_clicked(client, email, clock):
    clock(3600)
    click(client, redirects(email)[REPORT])
    delivery = Delivery.objects.get()
    assert (delivery.last_event, delivery.last_event_at) == ("", None)
    assert counts()[REPORT] == (1, 0)


def test_a_head_request_is_a_machine_and_still_redirected(client, email, clock):
    clock(3600)
    response = click(client, redirects(email)[REPORT], method="head")
    assert response.status_code == 302
    assert counts()[REPORT] == (0, 1)


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) "
        "BingPreview/1.0b",
        "Barracuda Sentinel (EE)",
        "Mimecast URL Protect",
        "Proofpoint URL Defense",
        "Google-Safety",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "",
    ],
    ids=[
        "Microsoft ATP",
        "Barracuda",
        "Mimecast",
        "Proofpoint",
        "Google",
        "curl",
        "requests",
        "none",
    ],
)
def test_a_known_link_scanner_is_a_machine(client, email, clock, agent):
    clock(3600)
    assert click(client, redirects(email)[REPORT], agent=agent).status_code == 302
    assert counts()[REPORT] == (0, 1)


def test_a_click_within_seconds_of_the_email_going_out_is_a_machine(
    client, email, clock
):
    clock(4)
    click(client, redirects(email)[REPORT])
    assert counts()[REPORT] == (0, 1)


def test_a_click_within_seconds_of_a_later_batch_going_out_is_a_machine(
    client, settings, monkeypatch
):
    """The rule timed every click from when the mailing was created: a scanner
    following the link of an email whose batch went out minutes later counted as
    a person. Each click is timed from when its own batch went."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    SubscriberFactory(email="early@example.org")
    SubscriberFactory(email="late@example.org")
    post = PublishedPostFactory(
        slug="suffolk", body=f"Read [the official report]({REPORT})."
    )
    delivery.mailing_create_for_post(post=post)
    mailing = Mailing.objects.get(post=post)
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    first, second = mailing.batches.order_by("number")

    def clock(seconds: float) -> None:
        moment = mailing.created_at + timedelta(seconds=seconds)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    clock(1)
    delivery.batch_send(batch_id=first.pk)
    clock(300)
    delivery.batch_send(batch_id=second.pk)
    early, late = sorted(mail.outbox, key=lambda message: message.to)

    clock(304)
    click(client, redirects(late)[REPORT], address="198.51.100.7")  # a scanner
    click(client, redirects(early)[REPORT], address="192.0.2.10")  # a person
    assert counts()[REPORT] == (1, 1)


def test_one_message_following_every_link_at_once_is_a_machine_for_all_of_them(
    client, email, clock
):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    assert counts()[REPORT] == (1, 0)  # alone, it looks like a person
    clock(3600.8)
    click(client, links[DATA])
    assert counts()[REPORT] == (0, 1)
    assert counts()[DATA] == (0, 1)


def test_two_readers_clicking_at_once_from_their_own_addresses_are_people(
    client, email, clock
):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT], address="192.0.2.10")
    clock(3600.5)
    click(client, links[DATA], address="198.51.100.7")
    assert counts()[REPORT] == (1, 0)
    assert counts()[DATA] == (1, 0)


def test_a_reader_following_a_second_link_later_is_a_person_twice(client, email, clock):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    clock(3660)
    click(client, links[DATA])
    clock(3700)
    click(client, links[REPORT])
    assert counts()[REPORT] == (2, 0)
    assert counts()[DATA] == (1, 0)


def test_a_double_click_on_one_link_is_one_persons_click(client, email, clock):
    """Both clicks went to machines, as if the message had followed another link
    at once: a person's double click is one click of theirs."""
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    assert counts()[REPORT] == (1, 0)
    clock(3600.3)
    assert click(client, links[REPORT]).status_code == 302  # followed all the same
    clock(3600.5)
    click(client, links[REPORT])
    assert counts()[REPORT] == (1, 0)
    clock(3660)  # and again a minute later: another click of theirs
    click(client, links[REPORT])
    assert counts()[REPORT] == (2, 0)
    hours = MailingHour.objects.values_list("clicks_people", "clicks_machines")
    assert [sum(c) for c in zip(*hours, strict=True)] == [2, 0]


def test_a_machine_repeating_a_link_then_following_another_is_one_machine_click(
    client, email, clock
):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    clock(3600.3)
    click(client, links[REPORT])
    assert counts()[REPORT] == (1, 0)
    clock(3601)
    click(client, links[DATA])
    assert counts()[REPORT] == (0, 1)
    assert counts()[DATA] == (0, 1)
    hours = MailingHour.objects.values_list("clicks_people", "clicks_machines")
    assert [sum(c) for c in zip(*hours, strict=True)] == [0, 2]


def test_the_hidden_link_is_a_machine_and_so_are_the_messages_clicks_around_it(
    client, email, clock
):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    clock(3603)  # outside the burst, inside the hidden link's reach
    response = click(client, links["hidden"])
    assert response.status_code == 302
    assert response["Location"] == "http://127.0.0.1:8000/"
    clock(3606)
    click(client, links[DATA])
    assert counts()[REPORT] == (0, 1)
    assert counts()[DATA] == (0, 1)
    assert counts()["hidden"] == (0, 1)


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        signing.Signer(salt="newsletter.engagement.click").sign("zzzz"),
        signing.Signer(salt="another.purpose").sign("1"),
        "1:tampered",
    ],
    ids=["garbage", "unknown link", "another salt", "forged"],
)
def test_a_forged_or_unknown_link_is_a_404(client, email, token):
    response = client.get(f"/r/{token}/")
    assert response.status_code == 404
    # The page made by the whole stack, as any other 404.
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert all(count == (0, 0) for count in counts().values())


@pytest.mark.parametrize(
    "link_id", [2**63, 10**30, -(2**63) - 1], ids=["over-bigint", "huge", "negative"]
)
@pytest.mark.parametrize("method", ["get", "head"])
def test_a_signed_link_naming_an_id_no_row_can_have_is_a_404_counted_nowhere(
    client, email, clock, method, link_id
):
    """Only the site signs these tokens, yet one whose id no row can have is
    answered as an unknown link, never with a 500, and keeps no click."""
    clock(3600)
    response = click(client, f"/r/{engagement.click_token(link_id)}/", method=method)
    assert response.status_code == 404
    assert all(count == (0, 0) for count in counts().values())
    assert not MailingHour.objects.exists()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-",
        "--1",
        "-1",
        " 1",
        "1\n",
        "[1]",
        "[1, 2]",
        '"1"',
        "1:2",
        "\u0661",
        "1" * 200,
    ],
    ids=[
        "empty",
        "minus",
        "double-minus",
        "negative",
        "space",
        "newline",
        "list",
        "extra-items",
        "json-string",
        "two-parts",
        "arabic-digit",
        "far-too-long",
    ],
)
@pytest.mark.parametrize("method", ["get", "head"])
def test_a_well_signed_token_of_another_shape_is_a_404_like_a_forged_one(
    client, email, clock, method, value
):
    """Signed with the click salt and the site's key, yet not an id as
    click_token writes it: answered as a forged link, never with a 500."""
    clock(3600)
    token = signing.Signer(salt="newsletter.engagement.click").sign(value)
    response = click(client, f"/r/{token}/", method=method)
    assert response.status_code == 404
    assert response["X-Frame-Options"] == "DENY"  # the whole stack's 404 page
    assert all(count == (0, 0) for count in counts().values())
    assert not MailingHour.objects.exists()


def test_only_web_addresses_are_followed(client, email):
    mailing = Mailing.objects.get()
    link = Link.objects.create(mailing=mailing, url="javascript:alert(1)")
    assert client.get(f"/r/{engagement.click_token(link.pk)}/").status_code == 404


def test_a_post_to_the_redirect_is_refused_and_counted_nowhere(client, email, clock):
    clock(3600)
    assert client.post(redirects(email)[REPORT]).status_code == 405
    assert counts()[REPORT] == (0, 0)


# Opens, from the provider's tracking events ------------------------------------

IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
OUTLOOK = (
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16) Microsoft Outlook 16.0.17928"
)


def postmark_open_by(agent: str, *, client="Unknown", platform="Unknown") -> dict:
    return {
        **webhooks_test.postmark_open(),
        "UserAgent": agent,
        "Client": {"Name": client, "Family": client, "Company": "Unknown"},
        "Platform": platform,
    }


def mailgun_open_by(agent: str, *, bot: str, token: str) -> dict:
    return webhooks_test.mailgun_event(
        "opened",
        token,
        ip="17.58.101.12",
        **{
            "client-info": {
                "client-type": "browser" if not bot else "unknown",
                "client-os": "iOS",
                "device-type": "mobile",
                "client-name": "Mobile Safari",
                "user-agent": agent,
                "bot": bot,
            },
            "geolocation": {"country": "GB", "region": "Unknown", "city": "Unknown"},
        },
    )


@pytest.fixture
def provider(settings):
    settings.EMAIL_BACKEND = webhooks_test.POSTMARK_BACKEND
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": webhooks_test.SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": webhooks_test.MAILGUN_KEY,
    }


def opens(mailing_id: int) -> tuple[int, int]:
    mailing = Mailing.objects.get(pk=mailing_id)
    return mailing.opens_people, mailing.opens_machines


@pytest.mark.usefixtures("provider")
def test_postmark_opens_count_people_and_apples_proxy_apart(client):
    reader = SubscriberFactory(email="reader@example.org")
    mailing_id = webhooks_test.delivery_to(reader, webhooks_test.POSTMARK_ID).mailing_id
    for payload in (
        postmark_open_by("Mozilla/5.0"),  # Apple's Mail Privacy Protection proxy
        postmark_open_by(IPHONE_MAIL, client="Apple Mail", platform="Mobile"),
        postmark_open_by(OUTLOOK, client="Outlook 2016", platform="Desktop"),
        postmark_open_by(""),
        postmark_open_by("Mozilla/5.0 (compatible; YahooMailProxy)"),
    ):
        assert webhooks_test.post_postmark(client, payload).status_code == 200
    redelivered = postmark_open_by(OUTLOOK, client="Outlook 2016", platform="Desktop")
    webhooks_test.post_postmark(client, redelivered)
    assert opens(mailing_id) == (2, 3)


@pytest.mark.usefixtures("provider")
def test_mailgun_opens_its_bots_marked_are_machines(client):
    reader = SubscriberFactory(email="reader@example.org")
    mailing_id = webhooks_test.delivery_to(
        reader, f"<{webhooks_test.MAILGUN_ID}>"
    ).mailing_id
    for token, agent, bot in (
        ("a" * 50, "Mozilla/5.0", "apple"),
        ("b" * 50, "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "gmail"),
        ("c" * 50, IPHONE_MAIL, ""),
    ):
        payload = mailgun_open_by(agent, bot=bot, token=token)
        payload["event-data"]["id"] = token
        assert webhooks_test.post_mailgun(client, payload).status_code == 200
    assert opens(mailing_id) == (1, 2)


@pytest.mark.usefixtures("provider")
def test_the_providers_clicks_are_not_counted_the_redirect_counts_them(client):
    reader = SubscriberFactory(email="reader@example.org")
    mailing_id = webhooks_test.delivery_to(reader, webhooks_test.POSTMARK_ID).mailing_id
    webhooks_test.post_postmark(client, webhooks_test.postmark_click())
    assert opens(mailing_id) == (0, 0)
    assert not Link.objects.exists()


@pytest.mark.usefixtures("provider")
def test_an_open_of_a_message_we_cannot_place_counts_nowhere(client):
    SubscriberFactory(email="reader@example.org")
    assert webhooks_test.post_postmark(client, postmark_open_by(IPHONE_MAIL))
    assert not Mailing.objects.filter(opens_people__gt=0).exists()


def test_a_link_too_long_to_count_is_left_as_it_is_and_the_email_goes(
    publish, celery_eager
):
    SubscriberFactory()
    long_url = "https://example.org/" + "x" * 2100
    publish(PostFactory(body=f"[A very long link]({long_url})"))
    [message] = mail.outbox
    assert long_url in message.alternatives[0].content
    assert Delivery.objects.get().status == Delivery.Status.SENT
    assert not Link.objects.filter(url=long_url).exists()


def test_a_click_is_followed_even_when_the_cache_is_unreachable(
    client, email, clock, settings
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing listens
        }
    }
    clock(3600)
    response = click(client, redirects(email)[REPORT])
    assert response.status_code == 302
    # Counted straight into the link's row instead.
    link = Link.objects.get(url=REPORT)
    assert (link.people, link.machines) == (1, 0)


def test_a_click_for_a_host_the_site_does_not_serve_is_refused_and_not_counted(
    client, email, settings
):
    """The click redirect answered before Django checked the Host header."""
    settings.ALLOWED_HOSTS = ["news.example"]
    client.raise_request_exception = False
    response = client.get(redirects(email)[REPORT], HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["X-Frame-Options"] == "DENY"
    engagement.click_counts_flush()
    link = Link.objects.get(url=REPORT)
    assert (link.people, link.machines) == (0, 0)


# Counting in Redis, added to the links by beat's flush ---------------------------

needs_redis = pytest.mark.skipif(
    not settings.REDIS_URL, reason="clicks are counted in Redis only with REDIS_URL"
)


def link_counts(url: str) -> tuple[int, int]:
    """The link's row as it stands, without flushing first."""
    link = Link.objects.get(url=url, hidden=False)
    return link.people, link.machines


def take_batch(name: str) -> dict:
    """What a flush does first, by hand: take the counts as a batch of its own."""
    client = engagement._redis()
    batch = cache.make_key(engagement._BATCH + name)
    client.rename(cache.make_key(engagement._CLICKS), batch)
    return client.lrange(batch, 0, -1)


@needs_redis
def test_a_click_reads_and_writes_nothing_in_the_database(
    client, email, clock, django_assert_num_queries
):
    links = redirects(email)  # the email's links, as the first click reads them
    clock(3600)
    with django_assert_num_queries(0):
        assert click(client, links[REPORT]).status_code == 302
    assert link_counts(REPORT) == (0, 0)  # until beat's flush
    assert engagement.click_counts_flush() == 1
    assert link_counts(REPORT) == (1, 0)
    assert engagement.click_counts_flush() == 0  # nothing is added twice


@needs_redis
def test_a_link_deleted_before_the_flush_does_not_stop_the_others(client, email, clock):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    click(client, links[DATA], address="192.0.2.77")
    Link.objects.filter(url=REPORT).delete()
    assert engagement.click_counts_flush() == 1  # the deleted link's click is not
    assert link_counts(DATA) == (1, 0)
    hours = MailingHour.objects.get()
    assert (hours.clicks_people, hours.clicks_machines) == (1, 0)


@needs_redis
def test_a_click_redis_refuses_is_counted_at_once_and_the_next_goes_to_redis(
    client, email, clock
):
    """The click's GET and RPUSH go at once on one connection: an error answer to
    one leaves the other's unread, which must not answer the next click."""
    links = redirects(email)
    clock(3600)
    clicks = cache.make_key(engagement._CLICKS)
    engagement._redis().set(clicks, "not a list")  # RPUSH answers WRONGTYPE
    assert click(client, links[REPORT]).status_code == 302
    assert link_counts(REPORT) == (1, 0)  # counted in the row, not lost
    engagement._redis().delete(clicks)
    response = click(client, links[DATA], address="192.0.2.77")
    assert (response.status_code, response["Location"]) == (302, DATA)
    assert link_counts(DATA) == (0, 0)  # kept in Redis, for the flush
    assert engagement.click_counts_flush() == 1
    assert link_counts(DATA) == (1, 0)


@needs_redis
def test_a_click_whose_answer_from_redis_is_lost_is_counted_once(
    client, email, clock, monkeypatch
):
    """Redis kept the click for the flush, and its answer timed out on the way
    back: the click was counted in the row at once as well, so twice."""
    links = redirects(email)
    clock(3600)
    connection = engagement._redis().connection_pool.connection_class
    answer = connection.read_response

    def answer_lost(self, *args, **kwargs):
        answer(self, *args, **kwargs)  # Redis ran the commands
        raise redis.TimeoutError("Timeout reading from 127.0.0.1:6379")

    monkeypatch.setattr(connection, "read_response", answer_lost)
    response = click(client, links[REPORT])
    monkeypatch.setattr(connection, "read_response", answer)

    assert (response.status_code, response["Location"]) == (302, REPORT)
    assert counts()[REPORT] == (1, 0)
    hours = MailingHour.objects.get()
    assert (hours.clicks_people, hours.clicks_machines) == (1, 0)


@needs_redis
def test_a_click_redis_never_received_is_counted_at_once_and_once(
    client, email, clock, monkeypatch
):
    links = redirects(email)
    clock(3600)
    connection = engagement._redis().connection_pool.connection_class
    send = connection.send_packed_command

    def send_fails(self, *args, **kwargs):
        raise redis.ConnectionError("Error 32 while writing to socket. Broken pipe.")

    monkeypatch.setattr(connection, "send_packed_command", send_fails)
    response = click(client, links[REPORT])
    monkeypatch.setattr(connection, "send_packed_command", send)

    assert (response.status_code, response["Location"]) == (302, REPORT)
    assert link_counts(REPORT) == (1, 0)  # in the row at once, not lost
    assert counts()[REPORT] == (1, 0)  # and nothing for the flush to add


@needs_redis
def test_the_cache_reuses_one_redis_client():
    """Django's builds one per call, which costs more than the round trip."""
    assert engagement._redis() is engagement._redis()
    assert cache._cache.get_client() is cache._cache.get_client(write=True)


@needs_redis
def test_clicks_during_a_flush_wait_for_the_next_one(client, email, clock, monkeypatch):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    add_to_rows = engagement._links_add

    def add_while_a_reader_clicks(changes):
        click(client, links[REPORT], address="192.0.2.77")  # after the counts were read
        add_to_rows(changes)

    monkeypatch.setattr(engagement, "_links_add", add_while_a_reader_clicks)
    engagement.click_counts_flush()
    monkeypatch.setattr(engagement, "_links_add", add_to_rows)
    assert link_counts(REPORT) == (1, 0)
    engagement.click_counts_flush()
    assert link_counts(REPORT) == (2, 0)


@needs_redis
def test_two_overlapping_flushes_add_each_click_once(client, email, clock, monkeypatch):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    click(client, links[DATA], address="192.0.2.77")
    add_to_rows = engagement._links_add

    def another_flush_meanwhile(changes):
        monkeypatch.setattr(engagement, "_links_add", add_to_rows)
        engagement.click_counts_flush()  # finds this flush's batch, not yet added
        add_to_rows(changes)

    monkeypatch.setattr(engagement, "_links_add", another_flush_meanwhile)
    engagement.click_counts_flush()
    assert (link_counts(REPORT), link_counts(DATA)) == ((1, 0), (1, 0))


@needs_redis
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs two connections' locks"
)
@pytest.mark.django_db(transaction=True)
def test_two_flushes_at_once_move_a_remembered_click_to_machines_once(
    client, email, clock, monkeypatch
):
    """Each flush remembers the last seconds' clicks for the next: two at once,
    on batches of their own, both read the same memory, and both moved its
    click to machines."""
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    engagement.click_counts_flush()  # remembered as a person's
    clock(3601)  # the same message follows the other links: a scanner
    click(client, links[DATA])
    first = take_batch("first")
    clock(3602)
    click(client, links["hidden"])
    second = take_batch("second")
    adding, go_on = threading.Event(), threading.Event()
    add_to_rows = engagement._links_add

    def wait_for_the_other_flush(changes):
        if not adding.is_set():  # the first flush only
            adding.set()
            go_on.wait(timeout=10)
        add_to_rows(changes)

    def flush(name, kept):
        clicks = [engagement.Click.from_kept(click) for click in kept]
        return lambda: engagement.clicks_add(clicks, batch=name)

    monkeypatch.setattr(engagement, "_links_add", wait_for_the_other_flush)
    answers = []
    flushing = in_a_thread(flush("first", first), answers)
    assert adding.wait(timeout=10)
    other = in_a_thread(flush("second", second), answers)
    until_done_or_waiting_for_a_lock(other)
    go_on.set()
    flushing.join(timeout=10)
    other.join(timeout=10)

    assert sorted(answers) == [1, 1]
    assert link_counts(REPORT) == (0, 1)  # moved to machines once
    assert link_counts(DATA) == (0, 1)


@needs_redis
def test_a_flush_the_database_refuses_keeps_its_batch_for_the_next(
    client, email, clock
):
    """Only a batch added already is skipped: any other refusal was taken for
    one, and the batch deleted from Redis with its clicks uncounted."""
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])

    def hours_refused(execute, sql, params, many, context):
        if "newsletter_mailinghour" in sql and sql.lstrip().startswith("INSERT"):
            raise IntegrityError("new row violates check constraint")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(hours_refused), pytest.raises(IntegrityError):
        engagement.click_counts_flush()
    assert link_counts(REPORT) == (0, 0)
    assert engagement.click_counts_flush() == 1  # the next minute's
    assert link_counts(REPORT) == (1, 0)


@needs_redis
def test_a_flush_whose_worker_died_is_finished_by_the_next_and_never_doubled(
    client, email, clock
):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    # A worker took the counts, then died before adding them.
    take_batch("died-before-adding")
    click(client, links[REPORT], address="192.0.2.77")
    engagement.click_counts_flush()
    assert link_counts(REPORT) == (2, 0)
    # A worker added its batch, then died before deleting it from Redis.
    click(client, links[REPORT], address="192.0.2.78")
    taken = take_batch("died-after-adding")
    engagement.click_counts_flush()
    engagement._redis().rpush(
        cache.make_key(engagement._BATCH + "died-after-adding"), *taken
    )
    engagement.click_counts_flush()
    assert link_counts(REPORT) == (3, 0)
    assert not engagement._redis().keys(cache.make_key(engagement._BATCH) + "*")


@needs_redis
def test_a_burst_moves_earlier_clicks_to_machines_across_a_flush(client, email, clock):
    links = redirects(email)
    clock(3600)
    click(client, links[REPORT])
    engagement.click_counts_flush()
    assert link_counts(REPORT) == (1, 0)
    clock(3601)  # the same message, a second later: a scanner
    click(client, links[DATA])
    assert counts()[REPORT] == (0, 1)
    assert counts()[DATA] == (0, 1)


@needs_redis
def test_a_click_keeps_only_a_reader_part_that_could_be_one(client, email, clock):
    """Anyone may add a query string to a public link: until the flush checks a
    reader part's signature, Redis (the broker's too) holds only what fits one."""
    clock(3600)
    path = redirects(email)[REPORT]
    genuine = engagement._reader_part(7).removeprefix("?reader=")
    for reader in ("x" * 4000, "1:" + "a" * 4000, genuine):
        click(client, f"{path}?reader={reader}")
    kept = engagement._redis().lrange(cache.make_key(engagement._CLICKS), 0, -1)
    readers = [engagement.Click.from_kept(click).reader for click in kept]
    assert readers == ["", "", genuine]


def test_beat_flushes_the_click_counts_every_minute():
    from newsletter.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["flush-click-counts"]
    assert entry["task"] in app.tasks
    assert entry["schedule"] <= 60


def test_a_changed_link_leads_to_its_new_address_once_forgotten(client, email, clock):
    path = redirects(email)[REPORT]
    clock(3600)
    link = Link.objects.get(url=REPORT)
    Link.objects.filter(pk=link.pk).update(fixed_url=DATA + "&corrected=1")
    engagement.link_forget(link.pk)
    response = click(client, path)
    assert response["Location"] == DATA + "&corrected=1"


def test_a_link_held_in_the_cache_by_an_older_release_is_read_again(
    client, email, clock
):
    path = redirects(email)[REPORT]
    link = Link.objects.get(url=REPORT)
    clock(3600)
    # Held with fewer fields than a ClickTarget has now (as before link fixes).
    cache.set(engagement._link_key(link.pk), (link.pk, link.mailing_id, REPORT))
    response = click(client, path)
    assert (response.status_code, response["Location"]) == (302, REPORT)


# A report's address typed with three slashes: the email carries it, and no
# browser can open it.
NOWHERE = "https:///www.justiceinspectorates.gov.uk/hmiprobation/suffolk/"


@pytest.fixture
def email_with_a_broken_link(publish, celery_eager):
    SubscriberFactory(email="reader@example.org")
    publish(PostFactory(slug="suffolk", body=f"Read [the report]({NOWHERE})."))
    [message] = mail.outbox
    return message


def test_a_click_on_a_link_that_leads_nowhere_is_a_404_counted_nowhere(
    client, email_with_a_broken_link, monkeypatch
):
    path = redirects(email_with_a_broken_link)["nowhere"]
    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    assert click(client, path).status_code == 404

    assert counts()[NOWHERE] == (0, 0)
    assert not MailingHour.objects.exists()


def test_a_click_before_the_broken_link_was_fixed_is_not_counted_the_next_is(
    client, email_with_a_broken_link, monkeypatch
):
    """The click's 404 and the author's fix may fall within one flush."""
    path = redirects(email_with_a_broken_link)["nowhere"]
    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert click(client, path).status_code == 404

    monkeypatch.setattr(timezone, "now", lambda: later + timedelta(seconds=20))
    engagement.link_fix(
        post=Post.objects.get(), url=NOWHERE, target=REPORT, user=StaffFactory()
    )
    monkeypatch.setattr(timezone, "now", lambda: later + timedelta(seconds=40))
    assert click(client, path, address="192.0.2.77")["Location"] == REPORT

    assert counts()[NOWHERE] == (1, 0)
