import logging
from collections.abc import Callable
from datetime import timedelta

import requests
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import Case, CharField, Count, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from posts.desk import answered_yes, asking_first, counted, record_in_the_history
from posts.validators import addresses_as_stored, row_id_in

from .. import corrections, delivery
from ..delivery.control import RUNNING
from ..delivery.provider import CannotAsk, TooSoonToAsk, search_lag
from ..engagement import OPENS_NOT_COUNTED, opens_counted
from ..enqueue import SENT_ONCE_THE_QUEUE_IS_BACK, queue_reachable
from ..models import Batch, Delivery, DigestSettings, Mailing

logger = logging.getLogger(__name__)

# Progress is read from the batches' counters (a few thousand rows for a million
# recipients), never by counting the ledger. Rate: recipients sent in this window.
RATE_WINDOW = timedelta(minutes=5)


def _annotation(name: str, *, description: str | None = None):
    """A list column showing, and sorting by, a count get_queryset annotates."""

    @admin.display(description=description or name, ordering=name)
    def column(self, obj) -> int:
        return getattr(obj, name)

    return column


class EmptyRoundsFilter(admin.SimpleListFilter):
    """The list leaves out the digest rounds that found nothing to send
    (MailingQuerySet.without_empty_rounds) unless asked for them."""

    title = "digest rounds with nothing to send"
    parameter_name = "empty_rounds"

    def lookups(self, request, model_admin):
        return [("shown", "Shown"), ("only", "Only these")]

    def choices(self, changelist):
        # Left out is what no parameter means: Django's own first choice, "All",
        # would say otherwise.
        yield {
            "selected": self.value() not in ("shown", "only"),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Left out",
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value}
                ),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "shown":
            return queryset
        if self.value() == "only":
            return queryset.empty_rounds()
        return queryset.without_empty_rounds()


class MailingFilter(admin.SimpleListFilter):
    """A batch's or a ledger row's mailing, chosen from the latest ones (and the
    one chosen, which a mailing's page links to). Django's filter offered every
    mailing ever sent, reading each one's post to name it: a query a mailing on
    every page of the list, thousands after a year of digest rounds."""

    title = "mailing"
    parameter_name = "mailing__id__exact"  # the mailing pages' links
    LATEST = 10

    def lookups(self, request, model_admin):
        named = Mailing.objects.select_related("post", "post_update")
        offered = list(named.without_empty_rounds()[: self.LATEST])
        chosen = self.chosen()
        if chosen is not None and chosen not in {mailing.pk for mailing in offered}:
            offered += named.filter(pk=chosen)
        return [(str(mailing.pk), str(mailing)) for mailing in offered]

    def chosen(self) -> int | None:
        if self.value() is None:
            return None
        mailing_id = row_id_in(self.value())
        if mailing_id is None:  # the list says the filter is wrong, as for any
            raise IncorrectLookupParameters(f"No mailing {self.value()!r}")
        return mailing_id

    def queryset(self, request, queryset):
        chosen = self.chosen()
        return queryset if chosen is None else queryset.filter(mailing_id=chosen)


@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    """Every mailing, of every kind, with its progress and the author's controls."""

    list_display = [
        "__str__",
        "kind",
        "state",
        "progress",
        "planned",
        "sent",
        "failed",
        "uncertain",
        "skipped",
        "rate",
        "eta",
        "created_at",
    ]
    list_filter = ["kind", "status", EmptyRoundsFilter]
    readonly_fields = [
        "kind", "post", "post_update", "include_uncertain", "frequency", "period",
        "digest_posts",
        "state", "progress", "planned", "sent", "failed", "uncertain", "skipped",
        "rate", "eta", "uncertain_batches", "opens",
        "pause_reason", "resume_at", "consecutive_failures", "batch_count",
        "batch_size", "planned_up_to", "created_at", "planned_at", "finished_at",
    ]  # fmt: skip
    # A mailing's page in the order the author reads it, each kind with only its
    # own fields: what it is, how far it went, then the engine's own figures (the
    # model's order put the opens first and a digest's "Post: -" on every round).
    about = {
        Mailing.Kind.POST: ["kind", "post"],
        Mailing.Kind.CORRECTION: ["kind", "post", "post_update", "include_uncertain"],
        Mailing.Kind.DIGEST: ["kind", "frequency", "period", "digest_posts"],
    }
    went = [
        "state", "progress", "planned", "sent", "failed", "uncertain", "skipped",
        "rate", "eta", "uncertain_batches", "opens",
    ]  # fmt: skip
    workings = [
        "pause_reason", "resume_at", "consecutive_failures", "batch_count",
        "batch_size", "planned_up_to", "created_at", "planned_at", "finished_at",
    ]  # fmt: skip
    actions = ["pause", "resume", "cancel"]

    def get_queryset(self, request):
        waiting = [Batch.Status.QUEUED, Batch.Status.SENDING]
        recent = Q(batches__finished_at__gte=timezone.now() - RATE_WINDOW)
        return (
            super()
            .get_queryset(request)
            .select_related("post", "post_update")
            .annotate(
                planned=Coalesce(Sum("batches__size"), 0),
                sent=Coalesce(Sum("batches__sent"), 0),
                failed=Coalesce(Sum("batches__failed"), 0),
                uncertain=Coalesce(Sum("batches__uncertain"), 0),
                waiting=Coalesce(
                    Sum("batches__size", filter=Q(batches__status__in=waiting)), 0
                ),
                # A finished batch's readers with no outcome were never sent:
                # the mailing was cancelled before their batch went, or they left
                # (or erased their data) first. Without them the figures did not
                # add up to those planned, and a cancelled mailing read as sent.
                skipped=Coalesce(
                    Sum(
                        F("batches__size")
                        - F("batches__sent")
                        - F("batches__failed")
                        - F("batches__uncertain"),
                        filter=~Q(batches__status__in=waiting),
                    ),
                    0,
                ),
                recently_sent=Coalesce(Sum("batches__sent", filter=recent), 0),
            )
        )

    @admin.display(description="status", ordering="status")
    def state(self, mailing: Mailing) -> str:
        if _held(mailing):
            reason = mailing.pause_reason
            return f"Paused ({reason})" if reason else "Paused"
        return mailing.get_status_display()

    @admin.display(description="progress")
    def progress(self, mailing: Mailing) -> str:
        if mailing.status == Mailing.Status.DONE and not mailing.planned:
            return "nothing to send"  # not "0 %", as if it had failed to go
        done = mailing.planned - mailing.waiting
        percent = 100 * done // mailing.planned if mailing.planned else 0
        return format_html(
            '<progress value="{}" max="{}" aria-label="{}% handled"></progress> {}%',
            done,
            mailing.planned or 1,
            percent,
            percent,
        )

    planned = _annotation("planned")
    sent = _annotation("sent")
    failed = _annotation("failed")
    uncertain = _annotation("uncertain")
    skipped = _annotation("skipped", description="skipped (never sent)")

    # A minute, not a second: the author's lists of a few dozen went out at
    # "0.0 recipients/s", as if nothing went.
    @admin.display(description="rate (recipients/min)")
    def rate(self, mailing: Mailing) -> str:
        return f"{mailing.recently_sent / (RATE_WINDOW.total_seconds() / 60):,.1f}"

    @admin.display(description="ETA")
    def eta(self, mailing: Mailing) -> str:
        # Only a mailing that is going out has an ETA: a paused one's last five
        # minutes of sending gave it one, and a planning one's first batches,
        # all sent, made it "done".
        if mailing.status == Mailing.Status.CANCELLED:
            # A batch being sent as it was cancelled is its worker's to stop
            # (control.mailing_cancel), within about a second; the readers it
            # has not handed over are skipped as it comes back to the queue.
            if mailing.waiting:
                return "cancelled: the batch being sent stops within a second"
            return "cancelled: nothing more goes"
        if _held(mailing):
            if mailing.resume_at:  # the breaker's pause, lifted by the reaper
                return (
                    f"paused until about {timezone.localtime(mailing.resume_at):%H:%M}"
                )
            return "paused until resumed"
        if not mailing.waiting:
            return (
                "still planning"
                if mailing.status == Mailing.Status.PLANNING
                else "done"
            )
        per_second = mailing.recently_sent / RATE_WINDOW.total_seconds()
        if not per_second:
            return "unknown"
        return str(timedelta(seconds=round(mailing.waiting / per_second)))

    # A mailing's page offers these of its controls. Not cancel, which is for
    # good (but for a correction's): it stays on the list, an action chosen
    # and then confirmed with Go, not one click beside the figures.
    controls = {"pause": "Pause this mailing", "resume": "Resume this mailing"}

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The desk and the post's messages send the author to a paused mailing's
        # page to resume it: it offers the list's controls that apply to the
        # mailing now, to those who may use them, run by the list's actions
        # (their permissions, their checks, their words).
        mailing = self.get_object(request, unquote(object_id))
        controls = [] if mailing is None else self._controls_applying(request, mailing)
        extra_context = {**(extra_context or {}), "controls": controls}
        return super().change_view(request, object_id, form_url, extra_context)

    def response_action(self, request, queryset):
        # Used from a mailing's page, a control answered with the list of every
        # mailing, not the page showing what it did. The page's address is built
        # here from the one mailing acted on, never taken from the request.
        response = super().response_action(request, queryset)
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        mailing_id = row_id_in(selected[0]) if len(selected) == 1 else None
        if (
            request.POST.get("_back_to_its_page")
            and mailing_id is not None
            and isinstance(response, HttpResponseRedirect)
        ):
            return HttpResponseRedirect(
                reverse("admin:newsletter_mailing_change", args=[mailing_id])
            )
        return response

    def _controls_applying(self, request, mailing: Mailing) -> list[tuple[str, str]]:
        if mailing.status not in RUNNING:
            return []
        # A pause the breaker set (resume_at) the author may make theirs.
        held = mailing.paused_at is not None and mailing.resume_at is None
        applying = {
            "pause": not held,
            # Not while its post is off the site: the resume would be refused.
            "resume": mailing.paused_at is not None
            and Mailing.objects.post_on_site().filter(pk=mailing.pk).exists(),
        }
        allowed = self.get_actions(request)
        return [
            (name, label)
            for name, label in self.controls.items()
            if applying[name] and name in allowed
        ]

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # no page adds a mailing
            return super().get_fieldsets(request, obj)
        # As get_readonly_fields names them for this user.
        names = self.get_readonly_fields(request, obj)
        shown = dict(zip(self.readonly_fields, names, strict=True))
        return [
            (None, {"fields": [shown[name] for name in self.about[obj.kind]]}),
            ("How it went", {"fields": [shown[name] for name in self.went]}),
            ("Sending and planning", {"fields": [shown[n] for n in self.workings]}),
        ]

    @admin.display(description="opens")
    def opens(self, mailing: Mailing) -> str:
        if not opens_counted(mailing):
            return OPENS_NOT_COUNTED
        return (
            f"{mailing.opens_people} by people, {mailing.opens_machines} by "
            "machines (mail scanners, privacy proxies)"
        )

    def get_readonly_fields(self, request, obj=None):
        # Uncertain batches are settled on the batch list, and which readers
        # failed and why is in the ledger, for those who may see them
        # (Administrators): others are told how many, not given a link that
        # answers 403.
        linked = {}
        if not self.admin_site._registry[Batch].has_view_permission(request):
            linked["uncertain_batches"] = "uncertain_batch_count"
        if self.admin_site._registry[Delivery].has_view_permission(request):
            linked["failed"] = "failed_readers"
        return [linked.get(name, name) for name in self.readonly_fields]

    @admin.display(description="uncertain batches")
    def uncertain_batches(self, mailing: Mailing) -> str:
        url = reverse("admin:newsletter_batch_changelist")
        return format_html(
            '<a href="{}?mailing__id__exact={}&status__exact=uncertain">{}</a>',
            url,
            mailing.pk,
            self.uncertain_batch_count(mailing),
        )

    @admin.display(description="failed")
    def failed_readers(self, mailing: Mailing) -> str:
        """How many the provider refused, linked to their ledger rows: who they
        are and what the provider said."""
        if not mailing.failed:
            return "0"
        url = reverse("admin:newsletter_delivery_changelist")
        return format_html(
            '<a href="{}?mailing__id__exact={}&status__exact={}">{}: who, and why</a>',
            url,
            mailing.pk,
            Delivery.Status.FAILED,
            mailing.failed,
        )

    @admin.display(description="uncertain batches")
    def uncertain_batch_count(self, mailing: Mailing) -> str:
        count = mailing.batches.filter(status=Batch.Status.UNCERTAIN).count()
        return f"{count} to review"

    @admin.action(description="Pause the selected mailings", permissions=["change"])
    def pause(self, request, queryset) -> None:
        ids = _ids(queryset)
        paused = _all_or_none(ids, lambda pk: delivery.mailing_pause(mailing_id=pk))
        record_in_the_history(request, Mailing.objects.filter(pk__in=paused), "Paused.")
        tell_what_was_done(
            self,
            request,
            done=len(paused),
            said=f"Paused {_mailings(len(paused))}.",
            left=_left_as_they_were(
                Mailing, ids, paused, {ENDED: ~Q(status__in=RUNNING)}, "already paused"
            ),
            not_done="not paused",
            noun=_mailings,
        )

    @admin.action(description="Resume the selected mailings", permissions=["change"])
    def resume(self, request, queryset) -> None:
        ids = _ids(queryset)
        with transaction.atomic():
            # Their posts locked first, in the posts' order: each resume locking
            # its own, in the mailings' order, crossed an editor's publish of
            # the same posts into a deadlock.
            delivery.mailings_posts_lock(mailing_ids=ids)
            resumed = _all_or_none(
                ids, lambda pk: delivery.mailing_resume(mailing_id=pk)
            )
        record_in_the_history(
            request, Mailing.objects.filter(pk__in=resumed), "Resumed."
        )
        tell_what_was_done(
            self,
            request,
            done=len(resumed),
            said=f"Resumed {_mailings(len(resumed))}.",
            left=_left_as_they_were(
                Mailing,
                ids,
                resumed,
                {
                    ENDED: ~Q(status__in=RUNNING),
                    "not paused": Q(paused_at__isnull=True),
                },
                "its post is not on the site. Publish it again first",
            ),
            not_done="not resumed",
            noun=_mailings,
        )
        if resumed:
            tell_if_sent_once_the_queue_is_back(self, request)

    @admin.action(
        description="Cancel the selected mailings (a correction can be sent again)",
        permissions=["change"],
    )
    def cancel(self, request, queryset):
        if not answered_yes(request):
            return asking_first(
                self,
                request,
                queryset,
                action="cancel",
                verb="Cancel",
                what_it_does="A cancelled mailing sends nothing more: the readers "
                "it has not reached yet never get its email, and it cannot be "
                "resumed (pause it instead, to hold it for now). Only a "
                "correction's email can be confirmed again, from its page.",
                noun=_mailings,
            )
        ids = _ids(queryset)
        cancelled = _all_or_none(ids, lambda pk: delivery.mailing_cancel(mailing_id=pk))
        record_in_the_history(
            request, Mailing.objects.filter(pk__in=cancelled), "Cancelled."
        )
        tell_what_was_done(
            self,
            request,
            done=len(cancelled),
            said=f"Cancelled {_mailings(len(cancelled))}.",
            left=_left_as_they_were(Mailing, ids, cancelled, {}, ENDED),
            not_done="not cancelled",
            noun=_mailings,
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The list and its actions (pause, resume, cancel), for those allowed; a
        # mailing's page only shows it: its slot and counts are the engine's.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _held(mailing: Mailing) -> bool:
    """Whether a pause holds the mailing: one paused as its last batch went out is
    done all the same, with nothing left to hold or resume."""
    return mailing.paused_at is not None and mailing.status in RUNNING


def _ids(queryset) -> list[int]:
    return list(queryset.values_list("pk", flat=True))


def _all_or_none(ids: list[int], control: Callable[[int], bool]) -> list[int]:
    """The rows `control` changed, of those selected, in one transaction: a
    control refused partway is a 400 saying nothing was changed (malformed.py),
    and the rows before it are left as they were. Each control rings the task queue
    once committed, so nothing rung goes out for a change undone. In the order
    of their ids: two desks controlling the same rows lock them in one order,
    and neither waits for the other for good."""
    with transaction.atomic():
        return [pk for pk in sorted(ids) if control(pk)]


# Why a control left a mailing, or a batch, as it was.
ENDED = "it had ended (sent or cancelled)"
NOT_UNCERTAIN = {"not uncertain": ~Q(status=Batch.Status.UNCERTAIN)}
# Its readers settled by the provider's events as the author acted.
SETTLED_MEANWHILE = "its readers were settled meanwhile"
# The provider's answer was about an attempt before the batch's latest.
SENT_AGAIN_WHILE_ASKED = "it was sent again while the provider was asked; ask again"


def _mailings(count: int) -> str:
    return counted(count, "mailing", "mailings")


def _batches(count: int) -> str:
    return counted(count, "batch", "batches")


def _left_as_they_were(
    model, selected: list[int], changed: list[int], why: dict[str, Q], otherwise: str
) -> dict[str, int]:
    """How many of the rows selected a control left as they were, by the first
    reason in `why` that holds for them now (`otherwise` if none does). One
    query, however many were selected."""
    left = model.objects.filter(pk__in=selected).exclude(pk__in=changed)
    reason = Case(
        *(When(holds, then=Value(text)) for text, holds in why.items()),
        default=Value(otherwise),
        output_field=CharField(),
    )
    counts = left.annotate(reason=reason).order_by().values_list("reason")
    # A reason that is one constant is not grouped by: the count of nothing left
    # comes back as a row of 0.
    return {text: count for text, count in counts.annotate(Count("pk")) if count}


def tell_what_was_done(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    done: int,
    said: str,
    left: dict[str, int],
    not_done: str,
    noun: Callable[[int], str],
) -> None:
    """What a control did (`said`, with `done` rows), only if it did something,
    and each reason it left some of the selection as it was: "Paused 0
    mailing(s)." read as a success, and hid that nothing was paused, and why."""
    if done:
        modeladmin.message_user(request, said, messages.SUCCESS)
    for reason, count in left.items():
        modeladmin.message_user(
            request, f"{noun(count)} {not_done}: {reason}.", messages.WARNING
        )


def tell_if_sent_once_the_queue_is_back(
    modeladmin: admin.ModelAdmin, request: HttpRequest
) -> None:
    """After a control that rang the task queue: with the broker down, what it
    queued waits in the database and the reaper rings it once the broker is back
    (delivery.mailing_ring); the author is told so, not left to wonder."""
    if not queue_reachable():
        modeladmin.message_user(request, SENT_ONCE_THE_QUEUE_IS_BACK, messages.WARNING)


def tell_if_held_by_a_pause(
    modeladmin: admin.ModelAdmin, request: HttpRequest, batch_ids: list[int]
) -> None:
    """After batches were put back in the queue: those of a paused mailing (the
    author's pause, the breaker's, or their post off the site) go only once it
    is resumed, which "Queued" alone did not say."""
    held = Batch.objects.filter(
        pk__in=batch_ids, mailing__paused_at__isnull=False
    ).count()
    if held:
        waits = "waits for its" if held == 1 else "wait for their"
        modeladmin.message_user(
            request,
            f"{_batches(held)} queued again {waits} paused mailing to be resumed:"
            " nothing goes until then.",
            messages.WARNING,
        )


def _corrections_planned_again(batch_ids: list[int]) -> bool:
    """Whether settling these batches planned a correction again, for their
    readers now known to have had the post (control._corrections_plan_again):
    its emails wait for the task queue too. Read after its ring: with the queue
    down, no worker has planned it since."""
    return any(
        corrections.emails_correcting_posts_in(batch_id=pk)
        .filter(status=Mailing.Status.PLANNING, paused_at__isnull=True)
        .exists()
        for pk in batch_ids
    )


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Where uncertain batches are reviewed: check the provider's activity log for
    these recipients, then either record them as sent or resend them knowingly."""

    list_display = [
        "number", "mailing", "status", "size", "sent", "failed", "uncertain",
        "attempts", "touched_at", "last_error",
    ]  # fmt: skip
    list_filter = ["status", "mailing__kind", MailingFilter]
    list_select_related = ["mailing__post", "mailing__post_update"]
    readonly_fields = [
        "mailing", "number", "status", "size", "sent", "failed", "uncertain",
        "attempts", "touched_at", "finished_at", "last_error", "recipients",
    ]  # fmt: skip
    actions = ["settle", "mark_sent", "resend"]

    @admin.display(description="recipients")
    def recipients(self, batch: Batch) -> str:
        url = reverse("admin:newsletter_delivery_changelist")
        return format_html(
            '<a href="{}?batch__id__exact={}">ledger rows</a>', url, batch.pk
        )

    @admin.action(
        description="Ask the provider; resend only what it did not take",
        permissions=["change"],
    )
    def settle(self, request, queryset) -> None:
        ids = _ids(queryset)
        settled = []
        askable_from = {}  # batches uncertain too recently to ask about: from when
        sent_again = []
        # A batch at a time, each settled in its own transaction, the provider
        # asked outside any (no row stays locked while it answers): those settled
        # before a failure stay settled, and are said so below.
        for asked_before, pk in enumerate(ids):
            left = _batches(len(ids) - asked_before)
            try:
                if delivery.batch_settle_with_provider(batch_id=pk):
                    settled.append(pk)
                continue
            except TooSoonToAsk as exc:
                askable_from[pk] = exc.askable_from
                continue
            except delivery.SentAgainWhileAsked:
                sent_again.append(pk)
                continue
            except (CannotAsk, requests.RequestException) as exc:
                # The rest are not asked: the provider would not answer them
                # either.
                stopped = f"Could not ask the provider about {left}: {exc}"
            except Exception:
                # An answer it could not read, or a bug of ours: a 400 saying
                # nothing was changed (malformed.py), or a 500, hid those settled.
                logger.exception("Settling batch %s with the provider failed", pk)
                stopped = (
                    f"Could not settle {left} with the provider: its answer could "
                    "not be read (the error is in the log)."
                )
            self.message_user(request, stopped, messages.ERROR)
            ids = ids[:asked_before]
            break
        tell_what_was_done(
            self,
            request,
            done=len(settled),
            said=f"Settled {_batches(len(settled))} with the provider.",
            left=_left_as_they_were(
                Batch,
                [pk for pk in ids if pk not in askable_from and pk not in sent_again],
                settled,
                NOT_UNCERTAIN,
                SETTLED_MEANWHILE,
            )
            | ({SENT_AGAIN_WHILE_ASKED: len(sent_again)} if sent_again else {}),
            not_done="not settled",
            noun=_batches,
        )
        if askable_from:
            minutes = int(search_lag().total_seconds() // 60)
            when = timezone.localtime(max(askable_from.values()))
            self.message_user(
                request,
                f"{_batches(len(askable_from))} not settled: uncertain for less"
                f" than {minutes} minutes, and the provider's search may not list"
                f" yet what it took. Ask again after {when:%H:%M:%S}.",
                messages.WARNING,
            )
        # Read after their rings: with the queue down, or their mailing paused,
        # no worker took them since.
        queued = list(
            Batch.objects.filter(
                pk__in=settled, status=Batch.Status.QUEUED
            ).values_list("pk", flat=True)
        )
        tell_if_held_by_a_pause(self, request, queued)
        if queued or _corrections_planned_again(settled):
            tell_if_sent_once_the_queue_is_back(self, request)

    @admin.action(
        description="Record uncertain batches as sent (provider confirms)",
        permissions=["change"],
    )
    def mark_sent(self, request, queryset) -> None:
        ids = _ids(queryset)
        marked = _all_or_none(ids, lambda pk: delivery.batch_mark_sent(batch_id=pk))
        tell_what_was_done(
            self,
            request,
            done=len(marked),
            said=f"Recorded {_batches(len(marked))} as sent.",
            left=_left_as_they_were(
                Batch, ids, marked, NOT_UNCERTAIN, SETTLED_MEANWHILE
            ),
            not_done="not recorded as sent",
            noun=_batches,
        )
        if _corrections_planned_again(marked):
            tell_if_sent_once_the_queue_is_back(self, request)

    @admin.action(
        description="Resend uncertain batches (some may get a second copy)",
        permissions=["change"],
    )
    def resend(self, request, queryset) -> None:
        ids = _ids(queryset)
        queued = _all_or_none(ids, lambda pk: delivery.batch_resend(batch_id=pk))
        tell_what_was_done(
            self,
            request,
            done=len(queued),
            said=f"Queued {_batches(len(queued))} to send again.",
            left=_left_as_they_were(
                Batch,
                ids,
                queued,
                {
                    **NOT_UNCERTAIN,
                    "its mailing was cancelled": Q(
                        mailing__status=Mailing.Status.CANCELLED
                    ),
                },
                SETTLED_MEANWHILE,
            ),
            not_done="not queued again",
            noun=_batches,
        )
        if queued:
            tell_if_held_by_a_pause(self, request, queued)
            tell_if_sent_once_the_queue_is_back(self, request)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The list and its actions, for those allowed; no field is editable.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    # The error is why the provider refused a reader: the answer the author
    # looks for when a mailing's page says some failed.
    list_display = [
        "subscriber", "mailing", "status", "error", "sent_at", "last_event",
        "esp_message_id",
    ]  # fmt: skip
    list_filter = ["status", "mailing__kind", MailingFilter]
    search_fields = ["subscriber__email", "esp_message_id"]
    show_full_result_count = False  # one COUNT a page (docs/performance.md)
    list_select_related = ["subscriber", "mailing__post", "mailing__post_update"]
    readonly_fields = [
        "mailing",
        "batch",
        "subscriber",
        "status",
        "esp_message_id",
        "posts",
        "error",
        "sent_at",
        "last_event",
        "last_event_at",
        "sender_refused",
    ]

    def get_search_results(self, request, queryset, search_term):
        # As the readers' list does: an address typed the reader's way
        # (Reader@Bücher.example) is looked for in its stored form.
        return super().get_search_results(
            request, queryset, addresses_as_stored(search_term)
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # The ledger is what keeps a reader from a second copy and the reports
        # honest: a row deleted here would be planned and sent again. A reader's
        # rows go only with the reader (SubscriberAdmin.get_deleted_objects).
        return False


@admin.register(DigestSettings)
class DigestSettingsAdmin(admin.ModelAdmin):
    """One row: the day and hour of the digests."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        # One row at most, and only for those who may add it: until it exists,
        # "no row yet" alone let any member of the desk set the digests' times.
        return (
            super().has_add_permission(request) and not DigestSettings.objects.exists()
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # Until someone adds the row the digests go at the fields' defaults
        # (DigestSettings.load), which the list, empty, did not say.
        in_force = DigestSettings.load()
        extra_context = {
            **(extra_context or {}),
            "defaults_in_force": None if in_force.pk else in_force,
        }
        return super().changelist_view(request, extra_context)
