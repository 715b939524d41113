"""The email providers the site sends through, by the Django email backend that
speaks to each: one list for the settings' start-up check, the tracking webhook's
route, the sender's channel and the settling of uncertain batches. Names only, so
the settings can read it."""

ANYMAIL_POSTMARK = "anymail.backends.postmark.EmailBackend"
ANYMAIL_MAILGUN = "anymail.backends.mailgun.EmailBackend"
# anymail's Postmark backend made fit for batches of hundreds (delivery/postmark.py):
# mailings use it in place of anymail's, and it may be configured itself.
POSTMARK_BACKEND = "newsletter.delivery.postmark.EmailBackend"

PROVIDER_BY_BACKEND = {
    ANYMAIL_POSTMARK: "postmark",
    POSTMARK_BACKEND: "postmark",
    ANYMAIL_MAILGUN: "mailgun",
}


def is_providers(backend: str) -> bool:
    """Whether the email backend sends through a provider (any of anymail's)."""
    return backend.startswith("anymail.") or backend in PROVIDER_BY_BACKEND
