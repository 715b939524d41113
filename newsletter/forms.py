from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.conf import settings

from posts.forms import ReaderForm
from posts.models import Area, Category, Organisation, Rating, Region
from posts.validators import clean_email, reject_control_characters, reject_invisible

from .logs import redact
from .models import (
    DEFAULT_TIME_ZONE,
    DIGEST_TIME_ZONES,
    Consent,
    DigestSettings,
    SubscriberTopic,
    Weekday,
)
from .subscriptions import CONSENT_WORDING, ENGAGEMENT_CONSENT_WORDING


@dataclass(frozen=True)
class TopicOption:
    """One thing a reader may follow: its "kind:value" key and its name; for an
    organisation, its owners' slugs, so that the picker can say what an owner's
    topic covers."""

    key: str
    name: str
    note: str = ""  # an owner's "and the 13 it owned"
    owners: str = ""  # space-separated slugs


@dataclass(frozen=True)
class TopicSection:
    """Part of a group: areas come in sections, one a region (label and key)."""

    options: list[TopicOption]
    label: str = ""
    key: str = ""


@dataclass(frozen=True)
class TopicGroup:
    label: str
    sections: list[TopicSection]

    @property
    def options(self) -> list[TopicOption]:
        return [option for section in self.sections for option in section.options]


def _offered(model, kind: str, following: Iterable[str]):
    """What of `model` the picker offers: what a reader may follow (not one only
    posts yet to go live are filed under: that would tell of an embargoed report),
    and what this reader follows already, where it was: they chose it before, and
    it would otherwise show as gone from the site."""
    followed = [
        key.partition(":")[2] for key in following if key.startswith(f"{kind}:")
    ]
    return model.objects.followable() | model.objects.filter(slug__in=followed)


def topic_groups(following: Iterable[str] = ()) -> list[TopicGroup]:
    """Everything a reader may follow, grouped (read at each form's creation, so new
    regions or organisations appear at once), and the "kind:value" keys in
    `following` besides. Five queries, whatever the size."""
    kinds = SubscriberTopic.Kind
    following = list(following)
    regions = dict(
        _offered(Region, kinds.REGION, following).values_list("slug", "name")
    )
    # Each region's areas under its name, the regions in the order of the group's.
    areas_in: dict[tuple[str, str], list[TopicOption]] = {}
    for slug, name, region, region_name in (
        _offered(Area, kinds.AREA, following)
        .order_by("region__name", "name")
        .values_list("slug", "name", "region__slug", "region__name")
    ):
        option = TopicOption(f"{kinds.AREA}:{slug}", name)
        # Not under a region not offered (its only posts are yet to go live), but
        # for an area the reader follows already, which stays where it was: with
        # no region to come under, it was listed as gone from the site.
        if region in regions or option.key in following:
            areas_in.setdefault((region, region_name), []).append(option)
    offered_organisations = _offered(Organisation, kinds.ORGANISATION, following)
    owners_of: dict[str, list[str]] = defaultdict(list)
    for owned, owner in Organisation.owners.through.objects.filter(
        from_organisation__in=offered_organisations,
        to_organisation__in=offered_organisations,
    ).values_list("from_organisation__slug", "to_organisation__slug"):
        owners_of[owned].append(owner)
    owned_count = Counter(slug for owners in owners_of.values() for slug in owners)
    organisations = [
        TopicOption(
            f"{kinds.ORGANISATION}:{slug}",
            name,
            note=f"and the {owned_count[slug]} it owned" if owned_count[slug] else "",
            owners=" ".join(owners_of[slug]),
        )
        for slug, name in offered_organisations.values_list("slug", "name")
    ]
    categories = [
        TopicOption(f"{kinds.CATEGORY}:{slug}", name)
        for slug, name in _offered(Category, kinds.CATEGORY, following).values_list(
            "slug", "name"
        )
    ]
    ratings = [
        TopicOption(f"{kinds.RATING}:{code}", label)
        for code, label in Rating.choices
        if code != Rating.NARRATIVE
    ]
    return [
        TopicGroup(
            "Regions",
            [
                TopicSection(
                    [
                        TopicOption(f"{kinds.REGION}:{slug}", name)
                        for slug, name in regions.items()
                    ]
                )
            ],
        ),
        TopicGroup(
            "Areas",
            [
                TopicSection(areas, label=name, key=f"{kinds.REGION}:{slug}")
                for (slug, name), areas in areas_in.items()
            ],
        ),
        TopicGroup("Organisations and their owners", [TopicSection(organisations)]),
        TopicGroup("Categories", [TopicSection(categories)]),
        TopicGroup("Inspections rated", [TopicSection(ratings)]),
    ]


def followed_keys(topics: Iterable[SubscriberTopic]) -> list[str]:
    """What the reader follows, as the topic picker's keys ("everything" is
    nothing ticked)."""
    return [f"{t.kind}:{t.value}" for t in topics if t.value]


def _gone_name(key: str) -> str:
    """A followed topic the site no longer has, named by what is left of it: its
    kind and slug (its name went with it)."""
    kind, _, value = key.partition(":")
    return f"{SubscriberTopic.Kind(kind).label}: {value}"


class TopicsForm(ReaderForm):
    """What a reader follows and how often; nothing ticked means everything."""

    # Shown as the topic picker (templates/newsletter/_topics_fields.html, from
    # topic_picker()): hundreds of options, so not the widget's own markup.
    topics = forms.MultipleChoiceField(
        label="Only posts about (leave all unticked for everything)",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        # Said in words, not the site's key: a page opened before a topic went
        # (its only post back to draft, a category deleted) sends it still.
        error_messages={
            "invalid_choice": "A topic you ticked is no longer offered, so it is "
            "not in the list now. Check your choice and send the form again."
        },
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

    def __init__(self, *args, following: Iterable[str] = (), **kwargs) -> None:
        """`following`: the "kind:value" keys the reader follows now. Those the
        site no longer has (a category the author deleted) match no post, so the
        reader gets nothing for them: they are offered too, ticked, so that the
        page does not say "every post", and the reader sees them and can untick
        them."""
        super().__init__(*args, **kwargs)
        self.topic_groups = topic_groups(following)
        offered = {
            option.key for group in self.topic_groups for option in group.options
        }
        if gone := sorted(set(following) - offered):
            self.topic_groups.append(
                TopicGroup(
                    "No longer on the site",
                    [TopicSection([TopicOption(key, _gone_name(key)) for key in gone])],
                )
            )
        self.fields["topics"].choices = [
            (group.label, [(option.key, option.name) for option in group.options])
            for group in self.topic_groups
        ]

    def topic_picker(self) -> list[dict]:
        """The groups as the picker shows them: each option with whether the reader
        has chosen it (sent, or already followed), and each group's counts."""
        chosen = set(self["topics"].value() or ())
        picker = []
        for group in self.topic_groups:
            sections = [
                {
                    "label": section.label,
                    "key": section.key,
                    "options": [(o, o.key in chosen) for o in section.options],
                }
                for section in group.sections
            ]
            if not group.options:
                continue  # e.g. no categories yet: nothing to open
            picker.append(
                {
                    "label": group.label,
                    "sections": sections,
                    "total": len(group.options),
                    "chosen": sum(o.key in chosen for o in group.options),
                }
            )
        return picker

    def topics_shown(self) -> str:
        """Where the form is compared with what its page showed
        (show_hidden_initial, the preference centre): the topics shown as chosen,
        as hidden inputs. The picker's checkboxes are not the widget's, which
        would add them."""
        if not self.fields["topics"].show_hidden_initial:
            return ""
        return self["topics"].as_hidden(only_initial=True)

    def chosen_topics(self) -> list[TopicOption]:
        chosen = set(self["topics"].value() or ())
        return [
            option
            for group in self.topic_groups
            for option in group.options
            if option.key in chosen
        ]


def _name_field() -> forms.CharField:
    return forms.CharField(
        label="Name (optional)",
        max_length=100,
        required=False,
        validators=[reject_control_characters, reject_invisible],
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


class ConfirmForm(ReaderForm):
    """What the reader confirms on their own link's page, where the address is
    proved: the name the request gave (anyone may have typed it, so it is shown
    and theirs to change) and, asked only here, unticked, per-reader engagement."""

    name = _name_field()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if settings.NEWSLETTER_PER_READER_ENGAGEMENT:
            self.fields["engagement"] = forms.BooleanField(
                label=ENGAGEMENT_CONSENT_WORDING, required=False, initial=False
            )

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()


class SubscribeForm(TopicsForm):
    field_order = ["email", "name", "website", "topics", "frequency"]

    email = forms.CharField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    name = _name_field()
    # The honeypot: hidden from people by CSS, filled in by bots that fill in
    # every field. Not type=hidden, which bots know to leave alone.
    website = forms.CharField(
        label="Leave this field empty",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )
    # The page the reader came from (the view fills it in from the Referer), kept
    # through the form's own round trip; only a path on this site is kept. The
    # reader can neither see nor change it, so what will not do is dropped
    # (page_kept), never refused.
    page = forms.CharField(required=False, widget=forms.HiddenInput)
    consent_wording = CONSENT_WORDING

    def clean_email(self) -> str:
        return clean_email(self.cleaned_data["email"])

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_page(self) -> str:
        return self.page_kept(self.cleaned_data["page"])

    @staticmethod
    def page_kept(page: str) -> str:
        """The page the form was on, as kept with the consent and shown on the
        desk: a path on this site that the consent has room for, else none (a
        long slug's page is left out, not the reader's subscription). A reader's
        token in it (their preferences page, say) is not the desk's."""
        is_local_path = page.startswith("/") and not page.startswith("//")
        if not (is_local_path and page.isprintable()):
            return ""
        page = redact(page)
        return page if len(page) <= Consent._meta.get_field("page").max_length else ""

    def is_from_a_bot(self) -> bool:
        return bool(self.data.get("website"))


class ChangeEmailForm(ReaderForm):
    new_email = forms.CharField(
        label="New email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_new_email(self) -> str:
        return clean_email(self.cleaned_data["new_email"])


class DigestTimeForm(ReaderForm):
    """When a reader's daily or weekly digests arrive, in their time zone. "The
    usual" follows the site's setting, and is what a form without these fields
    (one that predates them, or a bare POST) chooses."""

    # Each with the value its page showed (show_hidden_initial): a page opened
    # before the reader changed it in another tab sends that back.
    digest_hour = forms.TypedChoiceField(
        label="Hour",
        coerce=int,
        empty_value=None,
        required=False,
        show_hidden_initial=True,
    )
    digest_weekday = forms.TypedChoiceField(
        label="Day, for weekly digests",
        coerce=int,
        empty_value=None,
        required=False,
        show_hidden_initial=True,
    )
    time_zone = forms.ChoiceField(
        label="Your time zone",
        choices=DIGEST_TIME_ZONES,
        initial=DEFAULT_TIME_ZONE,
        required=False,
        show_hidden_initial=True,
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


class CommentDataForm(ReaderForm):
    """The address whose comments' data a visitor asks to be sent a link to."""

    email = forms.CharField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_email(self) -> str:
        return clean_email(self.cleaned_data["email"])
