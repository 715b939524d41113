"""One client address everywhere (posts/clients.py): behind the trusted proxy, every
place that counts or records a visitor sees the same client, the address the proxy
received from, never the proxy itself nor what the client wrote further left in
X-Forwarded-For."""

import pytest
from axes.models import AccessAttempt

from newsletter.models import Consent, Subscriber
from newsletter.tokens import Purpose, make_token
from posts.clients import UNKNOWN_CLIENT
from posts.comments.models import Comment

from .factories import PublishedPostFactory, SubscriberFactory, UserFactory

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.1"


@pytest.fixture(autouse=True)
def _behind_one_proxy(settings):
    settings.NEWSLETTER_TRUSTED_PROXIES = 1


def through_the_proxy(client: str, *, forged: str = "198.51.100.66") -> dict:
    """What a request looks like to the site: from the proxy, naming the client
    last in X-Forwarded-For, after whatever the client wrote itself."""
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{forged}, {client}"}


def test_the_comment_rate_limit_counts_the_client_behind_the_proxy(client, settings):
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 1
    post = PublishedPostFactory()
    url = f"/posts/{post.slug}/comments/"
    form = {"name": "Alex", "email": "alex@example.org", "body": "A fair summary."}

    first = client.post(url, form, **through_the_proxy("203.0.113.1", forged="a"))
    again = client.post(url, form, **through_the_proxy("203.0.113.1", forged="b"))
    # Another reader behind another client (the same words from the same address
    # would be the first comment sent again).
    other = client.post(
        url, {**form, "email": "sam@example.org"}, **through_the_proxy("203.0.113.2")
    )

    assert [first.status_code, again.status_code, other.status_code] == [302, 429, 302]
    assert sorted(Comment.objects.values_list("ip_address", flat=True)) == [
        "203.0.113.1",
        "203.0.113.2",
    ]


def test_the_subscribe_rate_limit_counts_the_client_behind_the_proxy(client, settings):
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 1

    def subscribe(email: str, address: str, forged: str = "198.51.100.66"):
        return client.post(
            "/subscribe/", {"email": email}, **through_the_proxy(address, forged=forged)
        )

    assert subscribe("a@example.org", "203.0.113.1", forged="a").status_code == 200
    assert subscribe("b@example.org", "203.0.113.1", forged="b").status_code == 429
    assert subscribe("c@example.org", "203.0.113.2").status_code == 200


@pytest.mark.usefixtures("celery_eager")
def test_the_consent_records_the_client_behind_the_proxy(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/subscribe/",
            {"email": "new@example.org"},
            **through_the_proxy("::ffff:203.0.113.7"),
        )

    consent = Consent.objects.get(subscriber__email="new@example.org")
    assert consent.ip_address == "203.0.113.7"


@pytest.mark.usefixtures("celery_eager")
def test_resubscribing_from_the_preference_centre_records_the_client_behind_the_proxy(
    client, django_capture_on_commit_callbacks
):
    reader = SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED)
    url = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"action": "resubscribe"}, **through_the_proxy("2001:db8::7")
        )

    assert response.status_code == 200
    assert reader.consents.get().ip_address == "2001:db8::7"


def test_the_login_lockout_counts_the_client_behind_the_proxy(client, settings):
    UserFactory(username="author")

    def log_in(address: str, password: str = "guess", forged: str = "198.51.100.66"):  # noqa: S107
        return client.post(
            "/admin/login/?next=/admin/",
            {"username": "author", "password": password},
            **through_the_proxy(address, forged=forged),
        )

    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in("203.0.113.50", forged=f"198.51.100.{n}")

    assert log_in("203.0.113.50", forged="198.51.100.200").status_code == 429
    # The proxy is not locked out: the author, elsewhere, logs in.
    right = log_in("203.0.113.60", password="correct horse battery staple")
    assert right.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {
        "203.0.113.50"
    }


def test_a_client_whose_address_cannot_be_known_is_counted_under_one_valid_address(
    client, settings
):
    settings.NEWSLETTER_TRUSTED_PROXIES = 0
    UserFactory(username="author")

    response = client.post(
        "/admin/login/",
        {"username": "author", "password": "guess"},
        REMOTE_ADDR="unix:/run/gunicorn.sock",
    )

    assert response.status_code == 200  # the form again, not an error
    assert AccessAttempt.objects.get().ip_address == UNKNOWN_CLIENT
