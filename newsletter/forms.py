import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from email_validator import EmailNotValidError, validate_email

from posts.models import Area, Category, Organisation, Rating, Region

from .models import SubscriberTopic
from .subscriptions import CONSENT_WORDING

# Bidirectional overrides and isolates make text display in another order than it is
# stored: in a name they can disguise what a subject line or greeting says.
_BIDI_CONTROLS = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def reject_control_characters(value: str) -> None:
    """No line breaks or other control characters in text that may reach an email.

    Header injection needs CR or LF; U+0085, U+2028 and U+2029 break lines too in
    some mail clients, and the rest of Unicode's control category has no business
    in a name.
    """
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise ValidationError(
                "Please use letters, spaces and punctuation only.", code="control"
            )


def normalise_address(value: str) -> str:
    """A deliverable, normalised address, or a ValidationError saying what is wrong.

    Internationalised domains (bücher.example) are accepted and stored in their
    ASCII (IDNA) form, which every provider can deliver to and which keeps one row
    per mailbox. Non-ASCII local parts need SMTPUTF8 end to end, which not every
    provider offers, so they are refused with a clear message.
    """
    reject_control_characters(value)
    try:
        checked = validate_email(
            value.strip(), allow_smtputf8=False, check_deliverability=False
        )
    except EmailNotValidError as error:
        if any(ord(char) > 127 for char in value.split("@")[0]):
            raise ValidationError(
                "Addresses with accented or non-Latin letters before the @ are not "
                "supported. Please use another address.",
                code="smtputf8",
            ) from error
        raise ValidationError("Enter a valid email address.", code="invalid") from error
    address = checked.ascii_email.lower()
    if len(address) > 254:
        raise ValidationError("Enter a valid email address.", code="invalid")
    return address


def topic_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Everything a reader may follow, grouped, as "kind:value" keys (read at each
    form's creation, so new regions or organisations appear at once)."""
    kinds = SubscriberTopic.Kind

    def group(kind: str, items) -> list[tuple[str, str]]:
        return [(f"{kind}:{slug}", name) for slug, name in items]

    return [
        ("Regions", group(kinds.REGION, Region.objects.values_list("slug", "name"))),
        ("Areas", group(kinds.AREA, Area.objects.values_list("slug", "name"))),
        (
            "Organisations and their owners",
            group(kinds.ORGANISATION, Organisation.objects.values_list("slug", "name")),
        ),
        (
            "Categories",
            group(kinds.CATEGORY, Category.objects.values_list("slug", "name")),
        ),
        (
            "Inspections rated",
            group(
                kinds.RATING,
                [(c, label) for c, label in Rating.choices if c != Rating.NARRATIVE],
            ),
        ),
    ]


class TopicsForm(forms.Form):
    """What a reader follows and how often; nothing ticked means everything."""

    topics = forms.MultipleChoiceField(
        label="Only posts about (leave all unticked for everything)",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    frequency = forms.ChoiceField(
        label="How often",
        choices=SubscriberTopic.Frequency.choices,
        initial=SubscriberTopic.Frequency.INSTANT,
        # Not sent by a form that predates topics (or a bare POST): as published.
        required=False,
        widget=forms.RadioSelect,
    )

    def clean_frequency(self) -> str:
        return self.cleaned_data["frequency"] or SubscriberTopic.Frequency.INSTANT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topics"].choices = topic_choices()


class SubscribeForm(TopicsForm):
    field_order = ["email", "name", "website", "topics", "frequency"]

    email = forms.CharField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    name = forms.CharField(
        label="Name (optional)",
        max_length=100,
        required=False,
        validators=[reject_control_characters],
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    # The honeypot: hidden from people by CSS, filled in by bots that fill in
    # every field. Not type=hidden, which bots know to leave alone.
    website = forms.CharField(
        label="Leave this field empty",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )
    consent_wording = CONSENT_WORDING

    def clean_email(self) -> str:
        return normalise_address(self.cleaned_data["email"])

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def is_from_a_bot(self) -> bool:
        return bool(self.data.get("website"))


class ChangeEmailForm(forms.Form):
    new_email = forms.CharField(
        label="New email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_new_email(self) -> str:
        return normalise_address(self.cleaned_data["new_email"])
