import csv
from collections import Counter
from collections.abc import Iterator
from itertools import chain, islice

from anymail.signals import EventType
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import display_for_field
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.http import (
    HttpRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from posts.admin import LabelledFieldsFormSet
from posts.desk import answered_yes, asking_first, counted, record_in_the_history
from posts.validators import (
    addresses_as_stored,
    clean_email,
    reject_control_characters,
    reject_invisible,
)

from .. import imports, subscriptions, webhooks
from ..enqueue import QUEUE_UNREACHABLE, QueueUnreachable, queue_reachable
from ..esp import PROVIDER_BY_BACKEND
from ..forms import TopicsForm, followed_keys
from ..models import (
    Consent,
    Delivery,
    Event,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from ..preference_views import data_download
from .spreadsheets import BYTE_ORDER_MARK, csv_cell

# A reader's row for everything: its kind, and no value.
EVERYTHING = f"{SubscriberTopic.Kind.EVERYTHING}:"


class SubscriberTopicForm(forms.ModelForm):
    """A reader's topic chosen by name from what their preference centre offers:
    typed, "Youth justice" where its slug was wanted followed nothing, and the
    reader was sent no post at all."""

    topic = forms.ChoiceField()

    def __init__(self, *args, topic_choices: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].choices = [
            ("", "---------"),
            (EVERYTHING, "Everything"),
            *topic_choices,
        ]
        if self.instance.pk:
            self.initial["topic"] = f"{self.instance.kind}:{self.instance.value}"

    def clean_topic(self) -> str:
        topic = self.cleaned_data["topic"]
        self.instance.kind, _, self.instance.value = topic.partition(":")
        return topic


class SubscriberTopicFormSet(LabelledFieldsFormSet):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Read once for every row: the reader's own keys are offered too, as on
        # their page (one the site no longer has, to keep or delete).
        following = followed_keys(self.get_queryset())
        self.topic_choices = TopicsForm(following=following).fields["topics"].choices

    def get_form_kwargs(self, index: int | None) -> dict:
        return {**super().get_form_kwargs(index), "topic_choices": self.topic_choices}

    def clean(self) -> None:
        # Django checks a row's uniqueness only on the form's own model fields:
        # the same topic twice failed on saving, a server error.
        super().clean()
        seen = set()
        for form in self.forms:
            topic = form.cleaned_data.get("topic")
            if topic is None or form.cleaned_data.get("DELETE"):
                continue
            if topic in seen:
                form.add_error("topic", "Chosen above: a reader follows it once.")
            seen.add(topic)


class SubscriberTopicInline(admin.TabularInline):
    model = SubscriberTopic
    form = SubscriberTopicForm
    formset = SubscriberTopicFormSet
    extra = 0
    fields = ["topic", "frequency"]


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "ip_address",
        "source",
        "wording_version",
        "wording",
        "confirmed_at",
        "confirmed_ip_address",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class PausedFilter(admin.SimpleListFilter):
    title = "paused"
    parameter_name = "paused"

    def lookups(self, request, model_admin):
        return [("yes", "Paused"), ("no", "Not paused")]

    def queryset(self, request, queryset):
        # A reader suppressed keeps their pause for when it is lifted, but
        # the suppression, not the pause, keeps the newsletter from them.
        paused = Q(status=Subscriber.Status.ACTIVE, paused_at__isnull=False)
        if self.value() == "yes":
            return queryset.filter(paused)
        if self.value() == "no":
            return queryset.exclude(paused)
        return queryset


class _TopicsFilter(admin.SimpleListFilter):
    """Readers by a field of what they follow, counting one who never chose as
    the desk does: following everything, as it is published. Django's own filter
    of the topics' rows left them out, and the list found fewer than the desk
    said."""

    field: str
    never_chose: str  # the value a reader with no topics has

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        topics = SubscriberTopic.objects.filter(subscriber=OuterRef("pk"))
        matches = Exists(topics.filter(**{self.field: self.value()}))
        if self.value() == self.never_chose:
            matches |= ~Exists(topics)
        return queryset.filter(matches)


class FollowsFilter(_TopicsFilter):
    title = "follows"
    parameter_name = "follows"
    field = "kind"
    never_chose = SubscriberTopic.Kind.EVERYTHING

    def lookups(self, request, model_admin):
        return SubscriberTopic.Kind.choices


class FrequencyFilter(_TopicsFilter):
    title = "how often"
    parameter_name = "frequency"
    field = "frequency"
    never_chose = SubscriberTopic.Frequency.INSTANT

    def lookups(self, request, model_admin):
        return SubscriberTopic.Frequency.choices


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 (or Excel's Windows-1252, Excel for Mac's Mac Roman, or "
        "Excel's UTF-16 “Unicode text”), "
        "its cells separated by commas, semicolons or tabs, with a header line naming "
        + ",".join(imports.COLUMNS)
        + " (or Email Address, First Name, Last Name, OPTIN_TIME: a Mailchimp "
        "export is taken as it is). The desk's export is taken as it is: only "
        "its subscribed readers come in.",
    )
    consent_source = forms.CharField(
        required=False,
        max_length=200,
        label="Consent source",
        help_text="Where these readers consented (“Mailchimp: Probation news”), "
        "for the rows that do not say: a file with no consent_source column, "
        "such as Mailchimp's export.",
    )
    import_despite_rejections = forms.BooleanField(
        required=False,
        label="Import the valid rows even if some lines are rejected",
    )

    # The upload is read whole into memory, then its text: a bound on both.
    MAX_BYTES = 5 * 1024 * 1024

    def clean_consent_source(self) -> str:
        source = self.cleaned_data["consent_source"].strip()
        reject_control_characters(source)
        return source

    def clean_file(self):
        upload = self.cleaned_data["file"]
        # A limit on the list, not on its encoding: UTF-16 writes in two bytes
        # what UTF-8, Windows-1252 and Mac Roman write in one.
        limit = self.MAX_BYTES * (2 if imports.is_utf_16(upload.read(2)) else 1)
        upload.seek(0)
        if upload.size > limit:
            raise forms.ValidationError("The file is larger than 5 MB.")
        return upload


class Echo:
    """A file-like object whose write returns the line, for streaming csv.writer."""

    def write(self, value: str) -> str:
        return value


# Readers exported at a time: each batch is one query for their topics.
EXPORT_BATCH = 2000


def _with_preferences(rows) -> Iterator[list]:
    """The export's rows (pk first, the digest hour, day and zone last) as its
    lines: what the reader follows and when, in the import's columns. Without
    them a weekly-digest reader moved to a new site followed nothing there:
    every post, at once."""
    stream = rows.iterator(chunk_size=EXPORT_BATCH)
    while batch := list(islice(stream, EXPORT_BATCH)):
        topics: dict[int, list[tuple[str, str, str]]] = {pk: [] for pk, *_ in batch}
        for pk, *topic in SubscriberTopic.objects.filter(
            subscriber_id__in=list(topics)
        ).values_list("subscriber_id", "kind", "value", "frequency"):
            topics[pk].append(tuple(topic))
        for pk, *cells, hour, weekday, time_zone in batch:
            yield cells + imports.preferences_cells(
                topics=topics[pk],
                digest_hour=hour,
                digest_weekday=weekday,
                time_zone=time_zone,
            )


class SubscriberAdminForm(forms.ModelForm):
    # No Meta: the admin builds the form's fields from SubscriberAdmin.

    def clean_email(self) -> str:
        # In the stored form, as the subscribe form and the import store it: typed
        # as "Sam@Example.org" it was a second reader beside sam@example.org, and
        # one the reader's own form, export and erasure never found.
        email = clean_email(self.cleaned_data["email"])
        if self.instance.pk is None and subscriptions.is_blocked(email):
            raise forms.ValidationError(
                "This address is on the suppression list (it bounced, complained "
                "or was suppressed): nothing may be sent to it, not even a "
                "confirmation. Lift it under Suppressions first, if you may."
            )
        return email

    def clean_name(self) -> str:
        # As the subscribe form, the reader's confirmation page and the import
        # take it: typed here, it greeted the reader in their emails, and the
        # desk's own export of them was refused by the import.
        name = self.cleaned_data["name"]
        reject_control_characters(name)
        reject_invisible(name)
        return name

    def clean(self) -> dict:
        # A reader added here is sent their confirmation once saved, and nothing
        # sends it again: with the task queue down they are not added at all,
        # rather than left pending without it.
        if self.instance.pk is None and not queue_reachable():
            raise forms.ValidationError(QUEUE_UNREACHABLE)
        return super().clean()


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberAdminForm
    show_full_result_count = False  # one COUNT a page (docs/performance.md)
    list_display = [
        "email",
        "name",
        "status",
        "paused_at",
        "created_at",
        "confirmed_at",
    ]
    list_filter = ["status", PausedFilter, FollowsFilter, FrequencyFilter]
    search_fields = ["email", "name"]
    readonly_fields = [
        "status",
        "created_at",
        "confirmation_sent_at",
        "confirmed_at",
        "unsubscribed_at",
        "paused_at",
        "soft_bounces",
        # When the reader last asked for a change of address or a one-time
        # link: the day's turn, and what retires the older links.
        "email_change_requested_at",
        "one_time_link_sent_at",
        # Only the reader agrees, by a link to their own address, and withdrawing
        # deletes what was kept (subscriptions.engagement_withdraw): the desk can
        # do neither by editing a date.
        "engagement_agreed_at",
        "last_digest_owed",
        "newsletter_emails",
    ]
    inlines = [SubscriberTopicInline, ConsentInline]
    actions = ["export_csv", "download_data", "unsubscribe", "suppress"]
    change_list_template = "admin/newsletter/subscriber/change_list.html"

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except QueueUnreachable:
            # Lost between the form's question and the commit: the reader is
            # taken back (subscriptions.subscription_request_take_back), and the
            # desk refuses as the form does, not saying what save_model said.
            list(messages.get_messages(request))
            self.message_user(request, QUEUE_UNREACHABLE, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Added at the desk, a reader is sent the form's confirmation and receives
        # nothing until they confirm (double opt-in): left pending and never
        # emailed, they were deleted a week later with the requests nobody confirmed.
        subscriptions.subscription_request(
            email=obj.email, name=obj.name, source=subscriptions.CONSENT_SOURCE_DESK
        )
        added = Subscriber.objects.get(email=obj.email)
        obj.pk, obj._state.adding = added.pk, False
        obj.refresh_from_db()
        self.message_user(
            request,
            f"A confirmation email went to {obj.email}: they receive the newsletter "
            "once they confirm it.",
            messages.SUCCESS,
        )

    def get_readonly_fields(self, request, obj=None):
        # An address changes only when its owner confirms it from their preference
        # centre: the desk would otherwise write to an address nobody confirmed,
        # past the suppression list, and lose the reader's previous address.
        if obj is None:
            return self.readonly_fields
        return ["email", *self.readonly_fields]

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(
            request, queryset, addresses_as_stored(search_term)
        )

    @admin.display(description="Owed a last digest, of posts announced until")
    def last_digest_owed(self, obj: Subscriber):
        # Set when a digest reader turns to instant, here or on their preference
        # page; the next round at their hour sends it and clears it.
        return display_for_field(
            obj.digest_owed_until, Subscriber._meta.get_field("digest_owed_until"), "-"
        )

    @admin.display(description="Newsletter emails")
    def newsletter_emails(self, obj: Subscriber):
        # What the ledger holds for the reader, by outcome, and the rows
        # themselves: the page showed their consents and topics, never a word
        # of what they were sent.
        if obj.pk is None:
            return "-"
        counts = dict(obj.deliveries.values_list("status").annotate(n=Count("pk")))
        if not counts:
            return "None yet"
        labels = dict(Delivery.Status.choices)
        summary = ", ".join(
            f"{counts[status]} {labels[status].lower()}"
            for status in labels
            if status in counts
        )
        listing = reverse("admin:newsletter_delivery_changelist")
        return format_html(
            '{} (<a href="{}?subscriber__id__exact={}">list them</a>)',
            summary,
            listing,
            obj.pk,
        )

    def save_related(self, request, form, formsets, change):
        # The topic rows change here as on the reader's preference page, and
        # under the same rule: turned to instant, a digest reader is owed what
        # their digest was waiting to hold.
        with subscriptions.topics_changing(subscriber=form.instance):
            super().save_related(request, form, formsets, change)

    def delete_model(self, request, obj):
        # Deleting a reader at the desk (a reader's request by email, say) is
        # their erasure, as from their preference centre: their comments and
        # events go too, and the address stays suppressed.
        subscriptions.subscriber_delete(subscriber=obj)

    def delete_queryset(self, request, queryset):
        for subscriber in queryset.iterator():
            subscriptions.subscriber_delete(subscriber=subscriber)

    def get_deleted_objects(self, objs, request):
        # Their ledger rows go with them, though no one may delete one alone
        # (DeliveryAdmin): that must not stop the desk erasing a reader.
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        perms_needed.discard(Delivery._meta.verbose_name)
        return to_delete, counts, perms_needed, protected

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="newsletter_subscriber_import",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        labels = dict(Subscriber.Status.choices)
        counts = dict(Subscriber.objects.values_list("status").annotate(n=Count("pk")))
        extra_context = {
            **(extra_context or {}),
            "status_counts": [
                (labels[status], counts.get(status, 0)) for status in labels
            ],
            # The button only for those the import page lets in.
            "can_import": self.has_import_permission(request),
            "paused_count": Subscriber.objects.filter(
                status=Subscriber.Status.ACTIVE, paused_at__isnull=False
            ).count(),
        }
        return super().changelist_view(request, extra_context)

    def has_import_permission(self, request: HttpRequest) -> bool:
        # An import adds subscribers and records consent on existing ones.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def import_view(self, request: HttpRequest):
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = imports.read_csv(
                    form.cleaned_data["file"].read(),
                    source=form.cleaned_data["consent_source"],
                )
            except imports.ImportFileError as error:
                form.add_error("file", str(error))
            else:
                if report.rows and (
                    not report.rejected
                    or form.cleaned_data["import_despite_rejections"]
                ):
                    try:
                        imports.import_rows(report=report)
                    except IntegrityError:
                        # Someone subscribed meanwhile; the transaction undid it all.
                        form.add_error(
                            None,
                            "The subscriber list changed while importing, so "
                            "nothing was imported. Please upload the file again.",
                        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import subscribers",
            "form": form,
            "report": report,
        }
        return TemplateResponse(
            request,
            "admin/newsletter/subscriber/import.html",
            context,
            status=400 if form.errors else 200,
        )

    def has_export_permission(self, request: HttpRequest) -> bool:
        # Its own permission, not "view": a page of the list shows a hundred
        # readers, an export takes every address and consent record away at once.
        return request.user.has_perm("newsletter.export_subscriber")

    @admin.action(
        description="Export selected subscribers as CSV", permissions=["export"]
    )
    def export_csv(self, request, queryset):
        # The consent the reader's subscription stands on: the latest they confirmed
        # to subscribe, not a request nobody confirmed (a stranger may have typed
        # the address) nor an agreement to per-reader engagement.
        latest_consent = Consent.objects.filter(
            subscriber=OuterRef("pk"), confirmed_at__isnull=False, engagement=False
        ).order_by("-confirmed_at")
        rows = (
            queryset.annotate(
                consent_source=Subquery(latest_consent.values("source")[:1]),
                consent_date=Subquery(latest_consent.values("created_at")[:1]),
            )
            .order_by("pk")
            .values_list(
                "pk",
                "email",
                "name",
                "consent_source",
                "consent_date",
                "status",
                "paused_at",
                "confirmed_at",
                "digest_hour",
                "digest_weekday",
                "time_zone",
            )
        )
        writer = csv.writer(Echo())
        header = [
            *imports.COLUMNS,
            *imports.EXPORT_COLUMNS,
            *imports.PREFERENCE_COLUMNS,
        ]
        lines = (
            writer.writerow([csv_cell(value) for value in row])
            for row in chain([header], _with_preferences(rows))
        )
        response = StreamingHttpResponse(
            chain([BYTE_ORDER_MARK], lines), content_type="text/csv; charset=utf-8"
        )
        # The author's own clock (London), not UTC: an hour behind all summer.
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = (
            f'attachment; filename="subscribers-{stamp}.csv"'
        )
        return response

    @admin.action(
        description="Download the selected reader's data (as they download it)",
        permissions=["export"],
    )
    def download_data(self, request, queryset):
        # For a reader who writes in: one whose address bounced, complained or
        # was suppressed is told no link can reach them, and to write to us.
        # One person's data at a time, as they would download it themselves.
        readers = list(queryset[:2])
        if len(readers) != 1:
            self.message_user(
                request,
                "Select one reader: a download holds one reader's data.",
                messages.ERROR,
            )
            return None
        try:
            return data_download(readers[0])
        except Subscriber.DoesNotExist:  # erased since the list was read
            self.message_user(request, "That reader's data is deleted.", messages.ERROR)
            return None

    @admin.action(
        description="Unsubscribe selected subscribers", permissions=["change"]
    )
    def unsubscribe(self, request, queryset):
        # Asked first, as Django asks before deleting: only a reader lifts their
        # unsubscribe, so one Go on the wrong action, over the whole list
        # selected, lost every reader for good.
        if not answered_yes(request):
            return self._asking_first(
                request,
                queryset,
                action="unsubscribe",
                verb="Unsubscribe",
                what_it_does="They get no more emails from us, and only they can "
                "subscribe again: the desk cannot undo this. To stop emailing an "
                "address for now, suppress it instead, which the Suppressions list "
                "can lift.",
            )
        had_left = kept = 0
        by_the_desk = []  # not those who had unsubscribed themselves
        # All or none: refused partway, the desk says nothing was changed
        # (malformed.py), and the readers before were unsubscribed all the same.
        with transaction.atomic():
            for subscriber in queryset.iterator():
                left_already = subscriber.status == Subscriber.Status.UNSUBSCRIBED
                subscriptions.subscriber_unsubscribe(subscriber=subscriber)
                # A bounce, complaint or the author's suppression is stronger than
                # an unsubscribe and stays: the message said they were unsubscribed.
                if left_already:
                    had_left += 1
                elif subscriber.status == Subscriber.Status.UNSUBSCRIBED:
                    by_the_desk.append(subscriber.pk)
                else:
                    kept += 1
            record_in_the_history(
                request,
                Subscriber.objects.filter(pk__in=by_the_desk),
                "Unsubscribed at the desk.",
            )
        message = (
            f"{counted(len(by_the_desk), 'subscriber', 'subscribers')} unsubscribed"
        )
        if had_left:
            message += f"; left as they were, unsubscribed already: {had_left}"
        if kept:
            message += (
                "; left as they were, out of the list already (bounced, "
                f"complained or suppressed): {kept}"
            )
        self.message_user(request, message + ".")

    def _asking_first(
        self, request, queryset, *, action: str, verb: str, what_it_does: str
    ) -> TemplateResponse:
        """The page asking before a list action stops the readers' emails, naming
        them by their addresses."""
        return asking_first(
            self,
            request,
            queryset,
            action=action,
            verb=verb,
            what_it_does=what_it_does,
            noun=lambda count: counted(count, "reader", "readers"),
            name=lambda reader: reader.email,
        )

    @admin.action(
        description="Suppress selected addresses (never email them)",
        permissions=["change"],
    )
    def suppress(self, request, queryset):
        # Asked first too: one Go over a whole list selected stopped every email
        # to every reader, the newsletter's and those they ask for, at once.
        if not answered_yes(request):
            return self._asking_first(
                request,
                queryset,
                action="suppress",
                verb="Suppress",
                what_it_does="We send nothing to their addresses, not even a "
                "confirmation or a link they ask for, until the desk lifts the "
                "suppression from the Suppressions list, which puts each reader "
                "back as they were.",
            )
        suppressed = []
        with transaction.atomic():  # all or none, as unsubscribing
            for pk, email in queryset.values_list("pk", "email").iterator():
                subscriptions.address_suppress(
                    email=email, reason=Suppression.Reason.MANUAL
                )
                suppressed.append(pk)
            # By id: the list's filter (those receiving, say) no longer finds them.
            record_in_the_history(
                request,
                Subscriber.objects.filter(pk__in=suppressed),
                "Suppressed at the desk: never emailed.",
            )
        self.message_user(
            request,
            f"{counted(len(suppressed), 'address', 'addresses')} suppressed.",
            messages.SUCCESS,
        )


class SuppressionAddForm(forms.ModelForm):
    email = forms.CharField(
        label="Email address",
        max_length=254,
        help_text="Never email it, reader or not (someone who wrote in asking "
        "never to be emailed): a subscribe request for it is ignored, though the "
        "visitor is told nothing of it. Only its hash is kept.",
    )

    class Meta:
        model = Suppression
        fields = []

    def clean_email(self) -> str:
        # In the stored form, as every other address: typed "Sam@Example.org",
        # it must still stop a request for sam@example.org.
        return clean_email(self.cleaned_data["email"])


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """The list holds no addresses: search by typing the full address."""

    list_display = ["__str__", "reason", "created_at", "updated_at"]
    list_filter = ["reason"]
    show_full_result_count = False  # one COUNT a page (docs/performance.md)
    search_fields = ["address_hash"]
    search_help_text = "Type a full email address to see whether it is suppressed."
    fields = ["address_hash", "reason", "created_at", "updated_at"]
    readonly_fields = fields
    # Django's own, but for what the desk is told once it is done.
    actions = ["delete_selected"]

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        return queryset.for_email(search_term), False

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = SuppressionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["email"] if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change: bool) -> None:
        # Refused for anyone not a reader, the desk could not keep its word to
        # a person who asked never to be emailed before they ever subscribed.
        email = form.cleaned_data["email"]
        subscriptions.address_suppress(email=email, reason=Suppression.Reason.MANUAL)
        obj.pk = Suppression.objects.for_email(email).get().pk
        obj._state.adding = False
        obj.refresh_from_db()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_deleted_objects(self, objs, request):
        # Lifting a hard bounce or the author's own suppression is the desk's to
        # do. An unsubscribe or an erasure is the reader's: they come back by
        # subscribing again (a fresh double opt-in lifts it); lifted here, an
        # import could add an erased person again, without their say.
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        if any(s.reason in Suppression.READER_LIFTABLE for s in objs):
            perms_needed.add(READERS_OWN_SUPPRESSION)
        return to_delete, counts, perms_needed, protected

    def delete_model(self, request, obj):
        # Deleting the row alone left its reader bounced or suppressed: still
        # out of every mailing, and shown so at the desk.
        lifted = self._lift(request, obj)
        message = " ".join([_lifted_message(lifted), *_at_the_provider([lifted])])
        self.message_user(request, message, messages.SUCCESS)

    def log_deletions(self, request, queryset):
        """Nothing: each lift is logged once done (_lift). Django logged every
        row "Deleted" before it went, untrue of a row the reader's own
        unsubscribe keeps, and silent on what became of the reader."""

    def _lift(self, request, suppression) -> subscriptions.SuppressionLifted:
        """Lift it, and say in the desk's history what became of it: deleted,
        or kept as the reader's own (nothing if lifted meanwhile elsewhere)."""
        lifted = subscriptions.suppression_lift(suppression=suppression)
        if not lifted.gone:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=[suppression],
                action_flag=CHANGE if lifted.kept_as else DELETION,
                change_message=_lifted_message(lifted),
                single_object=True,
            )
        return lifted

    @admin.action(permissions=["delete"], description="Lift selected suppressions")
    def delete_selected(self, request, queryset):
        """Django's said "Successfully deleted N suppressions" beside the lift's
        message for each: untrue of those the reader's own unsubscribe or
        erasure keeps. One message says what became of them all."""
        if not request.POST.get("post"):
            # Its page asking to confirm, which posts back here with "post".
            return admin_actions.delete_selected(self, request, queryset)
        if self.get_deleted_objects(queryset, request)[2]:  # a reader's own
            raise PermissionDenied
        # All or none: refused partway, the desk says nothing was changed
        # (malformed.py), and the suppressions before were lifted all the same.
        with transaction.atomic():
            lifts = self.delete_queryset(request, queryset)
        message = " ".join([_lifts_message(lifts), *_at_the_provider(lifts)])
        self.message_user(request, message, messages.SUCCESS)

    def delete_queryset(self, request, queryset):
        # As delete_model, a row at a time, the action saying what became of all.
        return [self._lift(request, suppression) for suppression in queryset]

    def response_delete(self, request, obj_display, obj_id):
        # The lift's own message says what became of the reader; Django's would
        # say the row was deleted, which it is not when the reader's own stays.
        return HttpResponseRedirect(reverse("admin:newsletter_suppression_changelist"))


def _lifted_message(lifted: subscriptions.SuppressionLifted) -> str:
    outcome = _lift_outcome(lifted)
    if outcome == "kept":
        kept = Suppression.Reason(lifted.kept_as).label.lower()
        return (
            "Lifted, but the address stays suppressed as the reader left it "
            f"({kept}): only they lift that, by subscribing again."
        )
    return _LIFTED[outcome]


def _lifts_message(lifts: list[subscriptions.SuppressionLifted]) -> str:
    """A bulk lift's: what became of the addresses, counted."""
    counts = Counter(map(_lift_outcome, lifts))
    lifted = len(lifts) - counts["gone"]
    if not lifted:
        return (
            "None of the selected suppressions is on the list any more: nothing "
            "was lifted."
        )
    said = "; ".join(
        counted(counts[outcome], one, more)
        for outcome, (one, more) in _LIFTS_COUNTED.items()
        if counts[outcome]
    )
    message = f"{counted(lifted, 'suppression', 'suppressions')} lifted: {said}."
    if counts["gone"]:
        message += (
            f" Lifted meanwhile, from another page of the desk: {counts['gone']}."
        )
    return message


def _at_the_provider(lifts: list[subscriptions.SuppressionLifted]) -> list[str]:
    """What the author must do at the configured provider too: it keeps its own
    list of the addresses that hard-bounced or complained, and lifted here only,
    the reader's emails (the confirmation of their subscribing again too) go
    nowhere. Counted for a bulk lift."""
    provider = PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND)
    counts = Counter(lifted.reason for lifted in lifts if not lifted.gone)
    said = []
    for reason, (one, more) in _KEPT_BY_REASON.items():
        advice = _KEPT_AT_THE_PROVIDER.get((provider, reason))
        if not advice or not counts[reason]:
            continue
        if len(lifts) == 1:
            said.append(advice)
        elif counts[reason] == 1:
            said.append(f"1 of them was {one}: {advice}")
        else:
            said.append(f"{counts[reason]} of them were {more}: {advice}")
    return said


# The suppressions a provider keeps a list of its own for: (one, more).
_KEPT_BY_REASON = {
    Suppression.Reason.HARD_BOUNCE: ("a hard bounce", "hard bounces"),
    Suppression.Reason.COMPLAINT: ("a spam complaint", "spam complaints"),
}
# Where each provider keeps them, and how the author takes an address off:
# told, not done through its API (Postmark lets only its support reactivate a
# complaint).
_KEPT_AT_THE_PROVIDER = {
    ("postmark", Suppression.Reason.HARD_BOUNCE): (
        "Postmark keeps an address inactive after its hard bounce and refuses "
        "every email to it, a confirmation too: reactivate it in Postmark (the "
        "message stream's Suppressions)."
    ),
    ("postmark", Suppression.Reason.COMPLAINT): (
        "Postmark keeps an address inactive after its spam complaint and refuses "
        "every email to it, a confirmation too: only Postmark's support can "
        "reactivate it; ask them."
    ),
    ("mailgun", Suppression.Reason.HARD_BOUNCE): (
        "Mailgun keeps an address on its Bounces list and drops every email to "
        "it, a confirmation too, reporting a bounce that suppresses it here "
        "again: delete it from that list in Mailgun (the sending domain's "
        "Suppressions)."
    ),
    ("mailgun", Suppression.Reason.COMPLAINT): (
        "Mailgun keeps an address on its Complaints list and drops every email "
        "to it, a confirmation too, reporting a complaint that suppresses it "
        "here again: delete it from that list in Mailgun (the sending domain's "
        "Suppressions)."
    ),
}


def _lift_outcome(lifted: subscriptions.SuppressionLifted) -> str:
    if lifted.gone:
        return "gone"
    if lifted.kept_as:
        return "kept"
    if lifted.reader_status == Subscriber.Status.ACTIVE:
        return "paused" if lifted.reader_paused else "receiving"
    if lifted.reader_status == Subscriber.Status.PENDING:
        return "pending"
    return "nobody"


_LIFTED = {
    "receiving": "Lifted: its reader receives the newsletter again.",
    "paused": (
        "Lifted: its reader is subscribed again, their newsletter paused as they "
        "left it (nothing is sent to them until they resume it)."
    ),
    "pending": (
        "Lifted: its reader never confirmed their subscription, and is "
        "pending again (they receive nothing until they confirm)."
    ),
    "nobody": "Lifted: no reader holds the address; it may subscribe again.",
    "gone": "It was lifted meanwhile, from another page of the desk.",
}
# The same, counted: (one, more than one).
_LIFTS_COUNTED = {
    "receiving": (
        "reader receives the newsletter again",
        "readers receive the newsletter again",
    ),
    "paused": (
        "reader is subscribed again, their newsletter paused as they left it",
        "readers are subscribed again, their newsletter paused as they left it",
    ),
    "pending": (
        "reader is pending again (they never confirmed)",
        "readers are pending again (they never confirmed)",
    ),
    "nobody": (
        "address no reader holds may subscribe again",
        "addresses no reader holds may subscribe again",
    ),
    "kept": (
        "address stays suppressed as its reader left it (their own unsubscribe "
        "or erasure, which only they lift, by subscribing again)",
        "addresses stay suppressed as their readers left them (their own "
        "unsubscribe or erasure, which only they lift, by subscribing again)",
    ),
}


READERS_OWN_SUPPRESSION = (
    "suppressions of readers who unsubscribed or deleted their data "
    "(only they lift them, by subscribing again)"
)


class _KnownValuesFilter(admin.SimpleListFilter):
    """The values a column of events can hold, to filter by. Django's own filter
    offers the values found, reading every event for them on each page of the
    list: 180 ms a filter at 2,000,000 events (90 days of a 100,000-reader list),
    more than the page's own statements. Same parameter as Django's."""

    values: tuple[str, ...]

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.values]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.parameter_name: self.value()})


class ProviderFilter(_KnownValuesFilter):
    title = "esp"
    parameter_name = "esp__exact"
    values = tuple(sorted(set(PROVIDER_BY_BACKEND.values())))


class EventTypeFilter(_KnownValuesFilter):
    title = "event type"
    parameter_name = "event_type__exact"
    values = tuple(
        sorted(
            value
            for name, value in vars(EventType).items()
            # Inbound ones are of mail sent to the site, which it does not take.
            if name.isupper() and not name.startswith("INBOUND")
        )
    )


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "esp", "event_type", "recipient", "message_id"]
    change_list_template = "admin/newsletter/event/change_list.html"
    list_filter = [ProviderFilter, EventTypeFilter]
    show_full_result_count = False  # one COUNT a page (docs/performance.md)
    search_fields = ["recipient", "message_id", "event_id"]
    readonly_fields = [
        "esp",
        "event_id",
        "event_type",
        "sender_refused",
        "recipient",
        "message_id",
        "timestamp",
        "raw",
        "received_at",
    ]

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(
            request, queryset, addresses_as_stored(search_term)
        )

    def changelist_view(self, request, extra_context=None):
        # Where events come in, or why none can: the author sees an empty list
        # and needs to know whether that is quiet or a switched-off webhook.
        try:
            provider = webhooks.tracking_provider()
        except webhooks.TrackingOff as off:
            webhook = {"off": str(off)}
        else:
            webhook = {"path": reverse("tracking_webhook", kwargs={"esp": provider})}
        extra_context = {**(extra_context or {}), "webhook": webhook}
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
