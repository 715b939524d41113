"""Personal links other code puts in emails and pages."""

from .emails import site_link
from .models import Subscriber
from .tokens import Purpose, make_token


def preferences_url(subscriber: Subscriber) -> str:
    """Absolute URL of the subscriber's preference centre; it never expires."""
    return site_link(
        "newsletter:preferences", token=make_token(subscriber, Purpose.PREFERENCES)
    )
