from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms

from posts.models import Area, Category, Organisation, Rating, Region
from posts.validators import clean_email, reject_control_characters

from .models import (
    DEFAULT_TIME_ZONE,
    DIGEST_TIME_ZONES,
    DigestSettings,
    SubscriberTopic,
    Weekday,
)
from .subscriptions import CONSENT_WORDING


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
        return clean_email(self.cleaned_data["email"])

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
        return clean_email(self.cleaned_data["new_email"])


class DigestTimeForm(forms.Form):
    """When a reader's daily or weekly digests arrive, in their time zone. "The
    usual" follows the site's setting, and is what a form without these fields
    (one that predates them, or a bare POST) chooses."""

    digest_hour = forms.TypedChoiceField(
        label="Hour", coerce=int, empty_value=None, required=False
    )
    digest_weekday = forms.TypedChoiceField(
        label="Day, for weekly digests", coerce=int, empty_value=None, required=False
    )
    time_zone = forms.ChoiceField(
        label="Your time zone",
        choices=DIGEST_TIME_ZONES,
        initial=DEFAULT_TIME_ZONE,
        required=False,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        site = DigestSettings.load()
        self.fields["digest_hour"].choices = [
            ("", f"The usual time ({site.hour:02}:00)"),
            *((hour, f"{hour:02}:00") for hour in range(24)),
        ]
        self.fields["digest_weekday"].choices = [
            ("", f"The usual day ({site.get_weekday_display()})"),
            *Weekday.choices,
        ]

    def clean_time_zone(self) -> str:
        name = self.cleaned_data["time_zone"] or DEFAULT_TIME_ZONE
        # Offered only if this machine's zoneinfo knows it (tzdata may lag).
        try:
            ZoneInfo(name)
        except (ValueError, ZoneInfoNotFoundError):
            raise forms.ValidationError("Choose a time zone from the list.") from None
        return name
