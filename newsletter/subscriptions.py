"""The reader's side of the newsletter: subscribing, confirming, unsubscribing,
preferences, suppression and the reader's own data.

Suppression is the one gate: every path that would email an address asks the
suppression list first, and every suppression moves the subscriber out of the
audience in the same transaction.
"""

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import (
    DateField,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
)
from django.db.models.functions import Cast, Coalesce, TruncWeek
from django.utils import timezone

from posts import throttle
from posts.comments.services import (
    comments_delete_for_addresses,
    comments_desk_history,
    comments_for_addresses,
)
from posts.validators import AddressPeriod, inbox_of, normalise_email, written_under

from .delivery import taken_email_send
from .delivery.provider import mailgun_unsubscribe_delete
from .emails import (
    build_message,
    confirmation_message,
    render_email,
    site_link,
    welcome_message,
)
from .engagement import READER_EVENTS
from .enqueue import ring_once_committed, ring_once_committed_or_undo, tasks
from .models import (
    Batch,
    Consent,
    Delivery,
    Engagement,
    Event,
    Mailing,
    PreviousAddress,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from .tokens import MAX_AGE, Purpose, make_token

logger = logging.getLogger(__name__)

# What the subscribe form says, stored verbatim with each consent. Change the
# version whenever the wording changes.
CONSENT_VERSION = "2026-11-26"
CONSENT_WORDING = (
    "Email me each new post on probation inspections. I can unsubscribe at any "
    "time with the link in every email. My address is used only for this "
    "newsletter and never shared."
)
CONSENT_SOURCE_FORM = "subscribe form"
# The unticked box the confirmation page and the preference centre offer when
# NEWSLETTER_PER_READER_ENGAGEMENT is on; stored with the consent like the above.
ENGAGEMENT_CONSENT_VERSION = "2026-12-03"
ENGAGEMENT_CONSENT_WORDING = (
    "Let the editor see which links I follow and whether I open emails, to "
    "improve the newsletter."
)
CONSENT_SOURCE_PREFERENCES = "preference centre"
# Added by the author at the desk (a reader who asked in person): sent the form's
# confirmation, as anyone is.
CONSENT_SOURCE_DESK = "the desk"
# The throttle scopes of the emails asking whoever owns an address to confirm it:
# one a day to any inbox, whoever asks, counted per inbox as the subscribe budget
# is (posts.validators.inbox_of: victim+1@, victim+2@, … are all victim@'s).
# A subscribe request's confirmation: the inbox's day is held by the address it
# went to, whose own once a day is its row's (confirmation_sent_at, which its link
# is bound to), so that only that address is sent another when its day comes.
CONFIRMATION_TO = "confirmation-to"
# A change of address's link to the new address: counted, one a day.
CHANGE_OF_ADDRESS_TO = "change-of-address-to"

# What the desk's history calls a reader who erased their data, and an email to them.
ERASED_READER = "an erased reader"
ERASED_READERS_EMAIL = "an email to an erased reader"

# The status a subscriber takes for each reason their address is suppressed.
STATUS_FOR_REASON = {
    Suppression.Reason.UNSUBSCRIBED: Subscriber.Status.UNSUBSCRIBED,
    Suppression.Reason.DELETED: Subscriber.Status.UNSUBSCRIBED,
    Suppression.Reason.SOFT_BOUNCES: Subscriber.Status.BOUNCED,
    Suppression.Reason.HARD_BOUNCE: Subscriber.Status.BOUNCED,
    Suppression.Reason.MANUAL: Subscriber.Status.SUPPRESSED,
    Suppression.Reason.COMPLAINT: Subscriber.Status.COMPLAINED,
}


def is_blocked(email: str) -> bool:
    """True when nothing may be sent to the address, not even a confirmation."""
    return blocked_because(email) is not None


def blocked_because(email: str) -> str | None:
    """Why nothing may be sent to the address (its Suppression.Reason), or None."""
    blocking = Suppression.objects.for_email(email).blocking()
    return blocking.values_list("reason", flat=True).first()


def topics_set(
    *,
    subscriber: Subscriber,
    topics: Iterable[str] = (),
    frequency: str = SubscriberTopic.Frequency.INSTANT,
) -> None:
    """Replace what the subscriber follows: "kind:value" keys, all at one frequency.
    No topics means everything."""
    keys = {tuple(topic.split(":", 1)) for topic in topics} or {
        (SubscriberTopic.Kind.EVERYTHING, "")
    }
    with topics_changing(subscriber=subscriber):
        subscriber.topics.all().delete()
        SubscriberTopic.objects.bulk_create(
            SubscriberTopic(
                subscriber=subscriber, kind=kind, value=value, frequency=frequency
            )
            for kind, value in sorted(keys)
        )


@contextmanager
def topics_changing(*, subscriber: Subscriber) -> Iterator[None]:
    """Around any change to a reader's topic rows (topics_set, the desk's inline):
    a digest reader who comes to follow as published a topic they did not (or
    loses their last row: everything, as published) is owed the posts their
    digest was waiting to hold, as those were announced without them; the next
    round holds them (digests.posts_held). Left with no topic as published,
    they are owed nothing: their digests' lookback holds what waited."""
    with transaction.atomic():
        # One change at a time per reader (a double click on the preference page):
        # a second one running beside it would not see the first's new rows, and
        # would fail to insert them again instead of replacing them.
        locked = (
            Subscriber.objects.select_for_update()
            .filter(pk=subscriber.pk)
            .values_list("pk", flat=True)
            .first()
        )
        if locked is None:
            # Erased meanwhile (another tab): rows written now would name nobody.
            raise Subscriber.DoesNotExist("The reader's data was erased.")
        instant_before, digest_reader = _instant_keys(subscriber)
        yield
        instant_after, _ = _instant_keys(subscriber)
        if not instant_after:
            owed_until = None
        elif digest_reader and not instant_after <= instant_before:
            # A topic now followed as published takes its posts out of every
            # digest: those that waited would reach them in no email.
            owed_until = timezone.now()
        else:
            return  # instant already, or as before: what they were owed stays
        Subscriber.objects.filter(pk=subscriber.pk).update(digest_owed_until=owed_until)


def _instant_keys(subscriber: Subscriber) -> tuple[set[tuple[str, str]], bool]:
    """What the reader follows as published (with no rows, everything:
    SubscriberQuerySet.following), and whether they follow anything in a digest."""
    rows = list(subscriber.topics.values_list("kind", "value", "frequency"))
    if not rows:
        return {(SubscriberTopic.Kind.EVERYTHING, "")}, False
    instant = SubscriberTopic.Frequency.INSTANT
    keys = {(kind, value) for kind, value, frequency in rows if frequency == instant}
    return keys, len(keys) < len(rows)


def subscription_request(
    *,
    email: str,
    name: str = "",
    ip_address: str | None = None,
    topics: Iterable[str] | None = None,
    frequency: str = SubscriberTopic.Frequency.INSTANT,
    page: str = "",
    source: str = CONSENT_SOURCE_FORM,
) -> None:
    """Record a request to subscribe and, where due, queue a confirmation email.

    Whatever the address's state, the caller learns nothing: a reader receiving
    the newsletter is left alone, a bounced or complained address gets nothing and
    leaves no trace, and anyone else gets at most one confirmation a day to
    their inbox, which their plus-addresses share (CONFIRMATION_TO). A
    paused reader is sent one too: nothing else reaches them with their
    preferences link, so without it a reader who kept no email could never
    resume. The request's name and
    topics wait in its own consent until its own link confirms it: topics then
    replace what the reader chose before; None keeps it (everything, for a new
    reader).
    """
    email = normalise_email(email)
    now = timezone.now()
    with transaction.atomic():
        if is_blocked(email):
            return
        # Locked: a request nobody confirmed may give way to a reader moving to
        # the address (email_change_confirm), and this must not write under it.
        subscriber, _ = Subscriber.objects.select_for_update().get_or_create(
            email=email
        )
        if Subscriber.objects.confirmed().filter(pk=subscriber.pk).exists():
            return
        consent = Consent.objects.create(
            subscriber=subscriber,
            ip_address=ip_address,
            wording=CONSENT_WORDING,
            wording_version=CONSENT_VERSION,
            source=source,
            page=page,
            name=name,
            topics=None if topics is None else sorted(topics),
            # No topics keeps what the reader follows, and so how often: the
            # record says so (a weekly reader resubscribing was recorded instant).
            frequency=frequency if topics is not None else subscriber.frequency(),
        )
        resend_after = now - timedelta(
            seconds=settings.NEWSLETTER_CONFIRM_RESEND_AFTER_SECONDS
        )
        due = Subscriber.objects.filter(pk=subscriber.pk).filter(
            Q(confirmation_sent_at__isnull=True)
            | Q(confirmation_sent_at__lt=resend_after)
        )
        # Last, the row locked: only a confirmation that would go takes the inbox.
        if due.exists() and throttle.hold(
            CONFIRMATION_TO,
            inbox_of(email),
            email,
            window_seconds=settings.NEWSLETTER_CONFIRM_RESEND_AFTER_SECONDS,
        ):
            due.update(confirmation_sent_at=now)
            ring_once_committed_or_undo(
                lambda: tasks.send_confirmation.delay(consent.pk),
                lambda: subscription_request_take_back(consent_id=consent.pk),
            )


def subscription_request_take_back(*, consent_id: int) -> None:
    """The request's confirmation could not be queued: the request is taken back,
    as if never made, so that it can be made again at once. Its consent goes, the
    day's confirmation with it, and so does the reader it made (pending, with no
    other request)."""
    with transaction.atomic():
        consent = Consent.objects.filter(pk=consent_id).first()
        if consent is None:
            return
        confirmation_unsent(consent_id=consent_id)
        consent.delete()
        Subscriber.objects.filter(
            pk=consent.subscriber_id,
            status=Subscriber.Status.PENDING,
            confirmed_at__isnull=True,
            consents__isnull=True,
        ).delete()


def subscriber_confirm(
    *,
    subscriber: Subscriber,
    consent_id: int,
    name: str | None = None,
    engagement: bool = False,
    ip_address: str | None = None,
) -> bool:
    """Make a pending, paused or returning subscriber part of the audience, with
    what the confirmed request asked for, and what the reader chose on their
    link's page: their name (None keeps the request's) and per-reader engagement,
    which is asked only there, where the address is proved. The request may be anyone's;
    the consent records the address the link was used from (`ip_address`) too.
    A reader in the audience already (imported, or resumed, since the request)
    gets what it asked for all the same: the link is their latest word.

    This is the fresh double opt-in that lifts the reader's own unsubscribe or
    deletion; a bounce, complaint or the author's suppression is never lifted here.
    A link confirms the consent it was sent for, never a later request's.
    True when it resumed a paused reader, who is told so as Resume tells them.
    """
    engagement = engagement and settings.NEWSLETTER_PER_READER_ENGAGEMENT
    now = timezone.now()
    with transaction.atomic():
        # The address's suppression, then the reader, locked in the order
        # address_suppress takes them: a complaint or bounce coming in meanwhile
        # waits, or is seen below. Checked before locking, a complaint recorded in
        # between was deleted with the reader's unsubscribe, and they were back.
        list(Suppression.objects.for_email(subscriber.email).select_for_update())
        # No key: the ledger's inserts naming the reader need not wait for it.
        Subscriber.objects.select_for_update(no_key=True).filter(
            pk=subscriber.pk
        ).exists()
        if is_blocked(subscriber.email):
            return False
        # Claimed in one UPDATE, so that a double click confirms once.
        claimed = subscriber.consents.filter(
            pk=consent_id, confirmed_at__isnull=True
        ).update(confirmed_at=now, confirmed_ip_address=ip_address)
        if not claimed:
            return False
        consent = subscriber.consents.get(pk=consent_id)
        # A paused reader resumes; anyone else out of the audience (pending, or
        # having left) joins, from now, and is welcomed.
        resumed = subscriber_resume(subscriber=subscriber)
        joined = (
            Subscriber.objects.filter(pk=subscriber.pk)
            .not_receiving()
            .update(
                status=Subscriber.Status.ACTIVE,
                confirmed_at=now,
                unsubscribed_at=None,
                paused_at=None,
                welcome_rung_at=now,
            )
        )
        if resumed or joined:
            # The confirmation reached them: the soft bounces counted before it
            # no longer say their address fails.
            Subscriber.objects.filter(pk=subscriber.pk).update(soft_bounces=0)
            Suppression.objects.for_email(subscriber.email).delete()
        if engagement:
            Subscriber.objects.filter(pk=subscriber.pk).update(engagement_agreed_at=now)
        elif settings.NEWSLETTER_PER_READER_ENGAGEMENT:
            # The box left unticked is the reader's answer now: withdrawing,
            # and what an earlier agreement kept goes with it. Turned off, the
            # page asks nothing, and an agreement stays until they untick it.
            engagement_withdraw(subscriber=subscriber)
        if name is not None:
            consent.name = name
        if engagement:
            consent.engagement = True
            consent.wording += f"\n{ENGAGEMENT_CONSENT_WORDING}"
            consent.wording_version += f"+{ENGAGEMENT_CONSENT_VERSION}"
        consent.save(update_fields=["name", "engagement", "wording", "wording_version"])
        # The name sent from the link's page, emptied too; confirmed without the
        # field, the request's, if it gave one.
        if name is not None or consent.name:
            Subscriber.objects.filter(pk=subscriber.pk).update(name=consent.name)
        if consent.topics is not None:
            topics_set(
                subscriber=subscriber,
                topics=consent.topics,
                frequency=consent.frequency,
            )
        if joined:
            # Owed from now (welcome_rung_at): the broker down, or losing it, the
            # reader is confirmed all the same, and the reaper rings it again.
            ring_once_committed(lambda: tasks.send_welcome.delay(subscriber.pk))
    subscriber.refresh_from_db()
    return bool(resumed)


def engagement_agree(*, subscriber: Subscriber, ip_address: str | None) -> None:
    """The reader ticked the engagement box in their preference centre and used
    the one-time link it sent to their address: recorded as a consent, with its
    wording and version, and the address of whoever used the link. A reader who
    has agreed already agrees once: their consent stays the one they gave."""
    now = timezone.now()
    with transaction.atomic():
        agreed = Subscriber.objects.filter(
            pk=subscriber.pk, engagement_agreed_at=None
        ).update(engagement_agreed_at=now)
        if not agreed:
            subscriber.refresh_from_db()
            return
        Consent.objects.create(
            subscriber=subscriber,
            created_at=now,
            confirmed_at=now,
            ip_address=ip_address,
            confirmed_ip_address=ip_address,
            wording=ENGAGEMENT_CONSENT_WORDING,
            wording_version=ENGAGEMENT_CONSENT_VERSION,
            engagement=True,
            source=CONSENT_SOURCE_PREFERENCES,
        )
    subscriber.refresh_from_db()


def engagement_withdraw(*, subscriber: Subscriber) -> None:
    """The reader withdrew: nothing more is kept, and what was kept is deleted.

    Their opens and clicks the provider reported named them only because they
    agreed: they are kept as the webhook keeps anyone else's, naming nobody, so
    that the provider sending one again is still recognised and not counted twice.
    """
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk).update(engagement_agreed_at=None)
        Engagement.objects.filter(subscriber=subscriber).delete()
        tracking_events_of(
            subscriber=subscriber, addresses=addresses_held(subscriber=subscriber)
        ).filter(event_type__in=READER_EVENTS).update(
            recipient="", message_id="", raw={}
        )
    subscriber.refresh_from_db()


def address_suppress(*, email: str, reason: Suppression.Reason) -> None:
    """Put an address on the suppression list and its subscriber out of the audience.

    A stronger reason replaces a weaker one, never the reverse: a complaint stays
    a complaint whatever happens to the address afterwards.
    """
    email = normalise_email(email)
    now = timezone.now()
    with transaction.atomic():
        suppression, created = Suppression.objects.select_for_update().get_or_create(
            address_hash=Suppression.hash_address(email), defaults={"reason": reason}
        )
        if not created and Suppression.strength(reason) > Suppression.strength(
            suppression.reason
        ):
            suppression.reason = reason
            suppression.save(update_fields=["reason", "updated_at"])
        if reason in Suppression.READER_LIFTABLE and (
            not suppression.readers_reason
            or Suppression.strength(reason)
            > Suppression.strength(suppression.readers_reason)
        ):
            suppression.readers_reason = reason
            suppression.save(update_fields=["readers_reason"])
        holders = Subscriber.objects.filter(email=email)
        if reason == Suppression.Reason.DELETED:
            # An erasure puts out the reader erased, not a request nobody
            # confirmed for an address they had left: anyone may have typed it,
            # and its own link confirms it, lifting the erasure as theirs would.
            holders = holders.holding_their_address()
        # Whoever holds the address now, read under the suppression's lock,
        # which a reader moving to it takes first (email_change_confirm).
        holder = holders.values_list("pk", "status").first()
        reader_id, reader_status = holder or (None, None)
        if suppression.reader_id != reader_id:
            suppression.reader_id = reader_id
            suppression.save(update_fields=["reader"])
        if reader_status == Subscriber.Status.ACTIVE:
            # A reader leaves (the desk's growth): not one who never confirmed,
            # nor one out already.
            suppression.reader_left_at = now
            suppression.save(update_fields=["reader_left_at"])
        status = STATUS_FOR_REASON[suppression.reason]
        # A pause is kept under the suppression: a reader who had paused comes
        # back paused when the desk lifts it. (Subscribing again unpauses them.)
        holders.exclude(status=status).update(
            status=status,
            unsubscribed_at=now,
            # Old confirmation links must not bring the reader back: only a new
            # subscribe request, and the confirmation it sends, may.
            confirmation_sent_at=None,
            # Nor a welcome not yet sent, once the desk lifts a suppression.
            welcome_rung_at=None,
        )


class SuppressionLifted(NamedTuple):
    # The reader's own unsubscribe or erasure the address stays suppressed for,
    # or "" when it may be emailed again.
    kept_as: str
    # The status of the reader who holds the address now, or None for nobody.
    reader_status: str | None
    # Whether that reader had paused their newsletter, and still has.
    reader_paused: bool = False
    # The suppression was gone when its lift came to it: nothing was done.
    gone: bool = False
    # The reason lifted (the suppression's before the lift); "" when gone.
    reason: str = ""


def suppression_lift(*, suppression: Suppression) -> SuppressionLifted:
    """The desk lifts a bounce, a complaint or its own suppression: its reader is
    back where they were before it, receiving if they had confirmed (paused if
    they had paused), pending if not. Under it, the reader's own unsubscribe or
    erasure stays: only they lift that, by subscribing again."""
    if suppression.reason in Suppression.READER_LIFTABLE:
        raise ValueError("Only the reader lifts their unsubscribe or erasure.")
    with transaction.atomic():
        # Locked in address_suppress's order: a bounce coming in meanwhile waits.
        locked = Suppression.objects.select_for_update().filter(pk=suppression.pk)
        suppression = locked.first()
        if suppression is None:  # lifted meanwhile, from another page of the desk
            return SuppressionLifted(kept_as="", reader_status=None, gone=True)
        reader = _holder_of(suppression)
        if suppression.readers_reason:
            locked.update(reason=suppression.readers_reason, updated_at=timezone.now())
            status = STATUS_FOR_REASON[suppression.readers_reason]
            changes = {}
        else:
            locked.delete()
            # A confirmation sent before it was cleared: they confirm a new one.
            status = (
                Subscriber.Status.ACTIVE
                if reader is not None and reader.confirmed_at
                else Subscriber.Status.PENDING
            )
            # Counted up to the suppression: the next soft bounce must not
            # suppress them again at once.
            changes = {"unsubscribed_at": None, "soft_bounces": 0}
        if reader is None:
            return SuppressionLifted(
                suppression.readers_reason, None, reason=suppression.reason
            )
        Subscriber.objects.filter(pk=reader.pk).update(status=status, **changes)
    return SuppressionLifted(
        suppression.readers_reason,
        status,
        reader_paused=bool(reader.paused_at),
        reason=suppression.reason,
    )


def _holder_of(suppression: Suppression) -> Subscriber | None:
    """The reader the suppression put out of the audience, if they are still
    out for it at its address (not moved away from it since)."""
    if suppression.reader_id is None:
        return None
    reader = (
        Subscriber.objects.filter(
            pk=suppression.reader_id, status=STATUS_FOR_REASON[suppression.reason]
        )
        .only("pk", "email", "confirmed_at", "paused_at")
        .first()
    )
    if reader and Suppression.hash_address(reader.email) == suppression.address_hash:
        return reader
    return None


def subscriber_unsubscribe(*, subscriber: Subscriber) -> None:
    """Take a subscriber out of every future send. Repeating it changes nothing."""
    address_suppress(email=subscriber.email, reason=Suppression.Reason.UNSUBSCRIBED)
    subscriber.refresh_from_db()


def unsubscribed_themselves(*, subscriber: Subscriber) -> bool:
    """Whether the reader's own unsubscribe keeps them out: not only a bounce, a
    complaint or the desk's suppression, which the desk may lift (and with it
    send again, unless the reader's own is kept under it: suppression_lift)."""
    return (
        subscriber.status == Subscriber.Status.UNSUBSCRIBED
        or Suppression.objects.for_email(subscriber.email)
        .exclude(readers_reason="")
        .exists()
    )


def subscriber_pause(*, subscriber: Subscriber) -> None:
    Subscriber.objects.filter(
        pk=subscriber.pk, status=Subscriber.Status.ACTIVE, paused_at__isnull=True
    ).update(paused_at=timezone.now())
    subscriber.refresh_from_db()


def subscriber_resume(*, subscriber: Subscriber) -> bool:
    """A paused reader receives again, resumed, not joined: dated from when they
    joined (their digest brings what came meanwhile), and not welcomed again (a
    welcome still owed stays owed). By the preference centre's Resume, or by
    confirming a subscribe request: the way back of a reader who kept no email.
    False if they were not paused."""
    resumed = (
        Subscriber.objects.filter(pk=subscriber.pk).paused().update(paused_at=None)
    )
    subscriber.refresh_from_db()
    return bool(resumed)


def email_change_request(*, subscriber: Subscriber, new_email: str) -> None:
    """Send a link to the new address; the address changes only when it is used.

    One request a day per reader, and only the latest request's link works; and
    one confirmation a day to any new address's inbox, whoever asks, so that many
    readers (a stranger's throwaway subscriptions) cannot flood one inbox with
    them, through one address or its plus-addresses. The
    reader is told the same whatever happens, so the preference centre does not
    reveal whether another address is subscribed or suppressed.
    """
    new_email = normalise_email(new_email)
    if subscriber.status != Subscriber.Status.ACTIVE:
        return
    now = timezone.now()
    with transaction.atomic():
        # Every request takes the day's turn, whatever becomes of it: if a refused
        # address left the turn free, the next request's email would tell the
        # reader that the first address is subscribed or suppressed. Only a link
        # the provider refused for hours gives it back (email_change_unsent): that
        # tells whoever asked that the address was free, but the reader must be
        # able to try again after an outage.
        took_turn = (
            Subscriber.objects.filter(pk=subscriber.pk)
            .filter(
                Q(email_change_requested_at__isnull=True)
                | Q(email_change_requested_at__lt=now - timedelta(days=1))
            )
            .update(email_change_requested_at=now, email_change_to="")
        )
        if (
            not took_turn
            or new_email == subscriber.email
            or is_blocked(new_email)
            or Subscriber.objects.filter(email=new_email)
            .holding_their_address()
            .exists()
            # Last: only a confirmation that would go takes the address's turn.
            or not throttle.allow(
                CHANGE_OF_ADDRESS_TO,
                inbox_of(new_email),
                limit=1,
                window_seconds=86_400,
            )
        ):
            return
        # Kept in the row for its task, not put in the task's message.
        Subscriber.objects.filter(pk=subscriber.pk).update(email_change_to=new_email)
        ring_once_committed_or_undo(
            lambda: tasks.send_email_change.delay(
                subscriber.pk, requested_at=now.isoformat()
            ),
            lambda: email_change_unsent(subscriber_id=subscriber.pk, requested_at=now),
        )


def email_change_confirm(*, subscriber: Subscriber, new_email: str) -> bool:
    """Move the subscription to a confirmed new address, and remember the address
    it leaves: what was written under it is still the reader's (PreviousAddress).
    A reader the old address's bounces took out of the audience is back in it
    (the new address is just proved, and proved theirs), unless they had
    unsubscribed before the bounce came: they stay unsubscribed. A request for
    the new address that nobody confirmed (anyone can type any address into
    the form) gives way, deleted as the pending purge would delete it. False if
    it cannot be."""
    new_email = normalise_email(new_email)
    try:
        with transaction.atomic():
            # The address's suppression, then the readers, locked in the order
            # subscriber_confirm takes them: a stranger confirming their request
            # for the address meanwhile holds it once they have, or finds it gone.
            list(Suppression.objects.for_email(new_email).select_for_update())
            list(
                Subscriber.objects.select_for_update()
                .filter(Q(pk=subscriber.pk) | Q(email=new_email))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if is_blocked(new_email):
                return False
            try:
                subscriber.refresh_from_db(fields=["email", "status"])
            except Subscriber.DoesNotExist:  # erased meanwhile
                return False
            previous_email, status = subscriber.email, subscriber.status
            if previous_email != new_email:
                holder = Subscriber.objects.filter(email=new_email)
                if holder.holding_their_address().exists():
                    return False
                holder.delete()
                moved = {"email": new_email, "soft_bounces": 0}
                if status == Subscriber.Status.BOUNCED:
                    # The bounce was the old address's, not the reader's choice;
                    # their own unsubscribe under it (an earlier email's bounce
                    # coming late) stands: only they lift it, by subscribing again.
                    if unsubscribed_themselves(subscriber=subscriber):
                        moved["status"] = Subscriber.Status.UNSUBSCRIBED
                    else:
                        moved |= {
                            "status": Subscriber.Status.ACTIVE,
                            "unsubscribed_at": None,
                        }
                Subscriber.objects.filter(pk=subscriber.pk).update(**moved)
                if moved.get("status", status) == Subscriber.Status.ACTIVE:
                    # Proved and chosen, the address is theirs to receive at, as
                    # a confirmed subscribe request makes it: an earlier holder's
                    # unsubscribe or erasure (all is_blocked lets by) is lifted,
                    # or a bounce lifted at the desk left the reader under it.
                    Suppression.objects.for_email(new_email).delete()
                PreviousAddress.objects.create(
                    subscriber_id=subscriber.pk,
                    email=normalise_email(previous_email),
                    moved_at=timezone.now(),
                )
    except IntegrityError:  # another subscriber has the address meanwhile
        return False
    subscriber.refresh_from_db()
    return True


class OneTimeRequest(StrEnum):
    """What a one-time link lets its holder do: the actions a forwarded preferences
    link must not allow on its own."""

    EXPORT = "export"
    DELETE = "delete"
    # Agreeing to per-reader engagement: consent from whoever holds a forwarded
    # link is not the reader's. Withdrawing needs no link.
    ENGAGEMENT = "engagement"
    # Written "change-email:<new address>" in the link.
    CHANGE_EMAIL = "change-email"


def one_time_link_request(
    *, subscriber: Subscriber, request: OneTimeRequest, new_email: str = ""
) -> None:
    """Send the reader's own address a link that does `request` once, within the
    hour; `new_email` only for a change of address.

    Sending it retires the reader's earlier one-time links.
    """
    if request == OneTimeRequest.CHANGE_EMAIL:
        new_email = normalise_email(new_email)
    requested_at = timezone.now()
    with transaction.atomic():
        # The new address kept in the row for the task, not put in its message.
        Subscriber.objects.filter(pk=subscriber.pk).update(
            one_time_link_sent_at=requested_at,
            one_time_link_new_email=new_email
            if request == OneTimeRequest.CHANGE_EMAIL
            else "",
        )
        # Nothing to take back if lost: a fresh link retires it.
        ring_once_committed_or_undo(
            lambda: tasks.send_one_time_link.delay(
                subscriber.pk, request.value, requested_at.isoformat()
            )
        )


def read_one_time_detail(detail: str) -> tuple[OneTimeRequest, str]:
    """The request and, for a change of address, the new address, from a one-time
    link's detail; ValueError if it names no request."""
    request, _, new_email = detail.partition(":")
    return OneTimeRequest(request), new_email


def one_time_link_use(*, subscriber: Subscriber) -> bool:
    """Spend the reader's one-time link; False if it was spent meanwhile."""
    return bool(
        Subscriber.objects.filter(
            pk=subscriber.pk,
            one_time_link_sent_at=subscriber.one_time_link_sent_at,
            one_time_link_sent_at__isnull=False,
        ).update(one_time_link_sent_at=None)
    )


def one_time_link_give_back(*, subscriber: Subscriber) -> None:
    """The link one_time_link_use spent works again, its request not queued;
    unless another was sent since. `subscriber` as read before it was spent."""
    Subscriber.objects.filter(pk=subscriber.pk, one_time_link_sent_at=None).update(
        one_time_link_sent_at=subscriber.one_time_link_sent_at
    )


def addresses_held(*, subscriber: Subscriber) -> list[AddressPeriod]:
    """The reader's addresses, each over the time it was theirs: the current one,
    and those the subscription moved away from, each until the move.

    An address another reader moved away from before it became this one's was
    theirs until then: what was written under it before is theirs, not this
    reader's.
    """
    held = [
        (normalise_email(email), until)
        for email, until in [
            *subscriber.previous_addresses.values_list("email", "moved_at"),
            (subscriber.email, None),
        ]
    ]
    others_left = list(
        PreviousAddress.objects.filter(email__in={email for email, _ in held})
        .exclude(subscriber=subscriber)
        .values_list("email", "moved_at")
    )
    periods = []
    for email, until in held:
        left_before = [
            moved_at
            for other, moved_at in others_left
            if other == email and (until is None or moved_at < until)
        ]
        periods.append(
            AddressPeriod(email, after=max(left_before, default=None), until=until)
        )
    return periods


def tracking_events_of(
    *, subscriber: Subscriber, addresses: list[AddressPeriod]
) -> QuerySet[Event]:
    """The provider's events about the reader: those naming one of their addresses
    while it was theirs, and those about a message sent to an address before they
    moved away from it, which may come in after the move.

    Always by the address the message went to: a Mailgun batch has one message
    id for every reader in it, who may include whoever has the address since.
    """
    about_them = written_under(
        addresses, address_field="recipient", time_field="received_at"
    )
    sent = Delivery.objects.filter(subscriber=subscriber).exclude(esp_message_id="")
    # `addresses` is in the order the reader held them: each from the move away
    # from the one before.
    held_from = None
    for period in addresses:
        if period.until is not None:
            # When it went, or (unanswered) when its mailing began, as the
            # webhook reads it.
            sent_then = sent.alias(
                at=Coalesce("sent_at", "mailing__created_at")
            ).filter(at__lte=period.until)
            if held_from is not None:
                sent_then = sent_then.filter(at__gt=held_from)
            about_them |= Q(
                recipient=normalise_email(period.email),
                received_at__gt=period.until,
                message_id__in=sent_then.values("esp_message_id"),
            )
        held_from = period.until
    # And not those, come in late, about a message sent to an address before
    # the reader who had it then moved away: theirs (above, from their side).
    theirs = Q(pk__in=[])
    for period in addresses:
        if period.after is not None:
            left_it = PreviousAddress.objects.filter(email=period.email).exclude(
                subscriber=subscriber
            )
            sent_before_they_left = (
                Delivery.objects.filter(subscriber__in=left_it.values("subscriber"))
                .exclude(esp_message_id="")
                .annotate(at=Coalesce("sent_at", "mailing__created_at"))
                .filter(
                    Exists(
                        left_it.filter(
                            subscriber=OuterRef("subscriber"),
                            moved_at__gte=OuterRef("at"),
                        )
                    )
                )
            )
            theirs |= Q(
                recipient=period.email,
                message_id__in=sent_before_they_left.values("esp_message_id"),
            )
    return Event.objects.filter(about_them).exclude(theirs)


def subscriber_export(*, subscriber: Subscriber) -> dict:
    """Everything held about the subscriber, for the reader to download; raises
    Subscriber.DoesNotExist if they are erased meanwhile."""
    # As held now, not as the caller read it: the one-time link the download
    # came by is spent since (it said a link was still out), or a change made.
    subscriber = Subscriber.objects.get(pk=subscriber.pk)
    # Every email the reader was sent: a digest's and a correction's rows are
    # theirs as much as an announcement's (only announcements were listed once).
    deliveries = (
        subscriber.deliveries.select_related("mailing__post", "mailing__post_update")
        .prefetch_related("posts")
        .order_by("pk")
    )
    addresses = addresses_held(subscriber=subscriber)
    return {
        "subscriber": {
            "email": subscriber.email,
            "name": subscriber.name,
            "status": subscriber.status,
            "created_at": subscriber.created_at,
            "confirmation_sent_at": subscriber.confirmation_sent_at,
            "confirmed_at": subscriber.confirmed_at,
            "unsubscribed_at": subscriber.unsubscribed_at,
            "paused_at": subscriber.paused_at,
            "soft_bounces": subscriber.soft_bounces,
            "email_change_requested_at": subscriber.email_change_requested_at,
            # Which request's link was sent (its email_change_requested_at).
            "email_change_taken_for": subscriber.email_change_taken_for,
            # Set only while a link to a new address is on its way.
            "email_change_to": subscriber.email_change_to,
            "one_time_link_sent_at": subscriber.one_time_link_sent_at,
            "one_time_link_new_email": subscriber.one_time_link_new_email,
            # When their digests arrive, as they chose it (empty: the site's time).
            "digest_hour": subscriber.digest_hour,
            "digest_weekday": subscriber.digest_weekday,
            "time_zone": subscriber.time_zone,
            "last_daily_round_at": subscriber.last_daily_round_at,
            "last_weekly_round_at": subscriber.last_weekly_round_at,
            "digest_owed_until": subscriber.digest_owed_until,
            # Set only while their welcome is still to be sent.
            "welcome_rung_at": subscriber.welcome_rung_at,
            # Their answer now: a withdrawal is recorded only here.
            "engagement_agreed_at": subscriber.engagement_agreed_at,
        },
        "previous_addresses": [
            {"email": previous.email, "until": previous.moved_at}
            for previous in subscriber.previous_addresses.all()
        ],
        # Addresses we must not email, and why (the provider's bounces and
        # complaints, their own unsubscribe, the desk's).
        "suppressions": _suppressions_of(addresses),
        "topics": [
            {"kind": topic.kind, "value": topic.value, "frequency": topic.frequency}
            for topic in subscriber.topics.all()
        ],
        "consents": [
            _consent_exported(consent)
            for consent in subscriber.consents.order_by("created_at")
        ],
        "deliveries": [
            {
                "email": str(delivery.mailing),
                # The post announced or corrected, or those the digest held; one
                # taken off the site since has no link: it is "Page not found".
                "posts": [
                    {
                        "title": post.title,
                        "url": settings.SITE_URL + post.get_absolute_url()
                        if post.is_published
                        else None,
                        "on_site": post.is_published,
                    }
                    for post in (
                        delivery.posts.all()
                        if delivery.mailing.kind == Mailing.Kind.DIGEST
                        else [delivery.mailing.post]
                    )
                ],
                "status": delivery.status,
                # Why it did not reach them. Not an uncertain row's error: that is
                # the whole call's exception, which may name others in the call.
                "error": delivery.error
                if delivery.status in _READERS_OWN_ERRORS
                else "",
                "sent_at": delivery.sent_at,
                "last_event": delivery.last_event,
                "last_event_at": delivery.last_event_at,
                # Their mail provider refused our sender: not their address.
                "sender_refused": delivery.sender_refused,
            }
            for delivery in deliveries
        ],
        # Opens and clicks, kept only if the reader agreed to it.
        "engagement": [
            {
                "kind": row.kind,
                "mailing": str(row.mailing),
                "link": row.link.url if row.link else "",
                "at": row.at,
                "machine": row.machine,
            }
            for row in subscriber.engagements.select_related(
                "mailing__post", "link"
            ).order_by("at", "pk")
        ],
        # What the provider reported (delivered, bounced, …), kept for
        # NEWSLETTER_KEEP_EVENTS_DAYS; not its payload, which may hold the IP
        # address and browser of whoever opened a forwarded email.
        "tracking_events": [
            {
                "event": event.event_type,
                "address": event.recipient,
                "at": event.timestamp or event.received_at,
            }
            for event in tracking_events_of(
                subscriber=subscriber, addresses=addresses
            ).order_by("received_at", "pk")
        ],
        # Comments under posts written with the reader's addresses.
        "comments": comments_for_addresses(addresses=addresses),
        # What the desk did to the reader, to the emails they were sent and to
        # their comments (Django admin's log, which their erasure keeps without
        # naming them).
        "desk_history": _desk_history_exported(
            _desk_history_of_reader(subscriber=subscriber)
            | _desk_history_of_their_emails(subscriber=subscriber)
            | comments_desk_history(addresses=addresses)
        ),
    }


def _desk_history_of_reader(*, subscriber: Subscriber) -> QuerySet[LogEntry]:
    """The desk's history (Django admin's log) of the reader's row, which names
    them by their address, and their consents and topics."""
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Subscriber),
        object_id=str(subscriber.pk),
    )


def _desk_history_of_their_emails(*, subscriber: Subscriber) -> QuerySet[LogEntry]:
    """The desk's history of the reader's rows in the ledger, each named by its
    str(): "… to <their address>"."""
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Delivery),
        object_id__in=Delivery.objects.filter(subscriber=subscriber).values(
            id_text=Cast("pk", TextField())
        ),
    )


# What an entry of the desk's history did, in the export's words.
_DESK_ACTIONS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


def _desk_history_exported(entries: QuerySet[LogEntry]) -> list[dict]:
    """The desk's history as the reader downloads it: what was done to what,
    when, and by which role. Not by whom: who at the desk did it is that staff
    member's personal data, not the reader's, and the role says what standing
    the change was made with. The role is the member's now (the log keeps the
    member, not their role then)."""
    return [
        {
            "about": entry.object_repr,
            "action": _DESK_ACTIONS.get(entry.action_flag, ""),
            "at": entry.action_time,
            "by": ", ".join(sorted(group.name for group in entry.user.groups.all()))
            or "the desk",
            "change": entry.get_change_message(),
        }
        for entry in entries.prefetch_related("user__groups").order_by(
            "action_time", "pk"
        )
    ]


def _consent_exported(consent: Consent) -> dict:
    """A subscribe request as its reader downloads it. One nobody confirmed may
    be anyone's (whoever typed the address into the form): the address it came
    from, the page they came from, and the name, topics and frequency they chose
    are theirs; the request made in the reader's name, when, and its email are
    the reader's."""
    readers_own = consent.confirmed_at is not None
    return {
        "created_at": consent.created_at,
        "ip_address": consent.ip_address if readers_own else None,
        "wording": consent.wording,
        "wording_version": consent.wording_version,
        "source": consent.source,
        "page": consent.page if readers_own else None,
        "name": consent.name if readers_own else None,
        "topics": consent.topics if readers_own else None,
        "frequency": consent.frequency if readers_own else None,
        # When its confirmation email was sent.
        "confirmation_taken_at": consent.confirmation_taken_at,
        "confirmed_at": consent.confirmed_at,
        "confirmed_ip_address": consent.confirmed_ip_address,
        "engagement": consent.engagement,
    }


# The ledger's errors that concern only the reader's own email.
_READERS_OWN_ERRORS = (Delivery.Status.FAILED, Delivery.Status.SKIPPED)


def _suppressions_of(addresses: list[AddressPeriod]) -> list[dict]:
    """The suppressions of the reader's addresses made while each was theirs: one
    made after they moved away is whoever's address it was then. Kept as a keyed
    hash, so looked up address by address."""
    held = []
    for period in addresses:
        suppressions = Suppression.objects.for_email(period.email)
        if period.after is not None:
            suppressions = suppressions.filter(created_at__gt=period.after)
        if period.until is not None:
            suppressions = suppressions.filter(created_at__lte=period.until)
        held += [
            {
                "address": period.email,
                "reason": suppression.reason,
                "since": suppression.created_at,
                "updated_at": suppression.updated_at,
            }
            for suppression in suppressions
        ]
    return held


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Forget the person, under every address they had; keep only the keyed hash
    of each, which honours their choice: an old list holding an address they
    moved away from must not subscribe it again (imports.py)."""
    with transaction.atomic():
        addresses = _addresses_erased(subscriber=subscriber)
        if addresses is None:
            return  # erased meanwhile (a second click): nothing is left
        tracking_events_of(subscriber=subscriber, addresses=addresses).delete()
        comments_delete_for_addresses(addresses=addresses)
        Engagement.objects.filter(subscriber=subscriber).delete()
        # The desk's history names the reader by their address in every entry
        # about them, their consents and topics too, and their emails: it keeps
        # what the desk did, when and who did it, but no longer to whom.
        _desk_history_of_reader(subscriber=subscriber).update(
            object_repr=ERASED_READER, change_message=""
        )
        _desk_history_of_their_emails(subscriber=subscriber).update(
            object_repr=ERASED_READERS_EMAIL, change_message=""
        )
        # Its previous addresses, consents and ledger rows go with it (CASCADE);
        # the emails it was sent stay counted in their batches, recounted or not.
        # The rows are locked before they are counted: one a worker is writing
        # meanwhile is counted as it wrote it, not as queued and then deleted
        # sent, counted by neither; one it writes after finds the row gone and
        # counts it itself (ledger.record_outcomes).
        list(
            Delivery.objects.select_for_update()
            .filter(subscriber=subscriber)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # A reader has one row a mailing, so one at most a batch: a statement each.
        _joined_week_keep(readers=Subscriber.objects.filter(pk=subscriber.pk))
        for status, counter in [
            (Delivery.Status.SENT, "erased_sent"),
            (Delivery.Status.FAILED, "erased_failed"),
        ]:
            Batch.objects.filter(
                deliveries__subscriber=subscriber, deliveries__status=status
            ).update(**{counter: F(counter) + 1})
        subscriber.delete()


def _joined_week_keep(*, readers: QuerySet[Subscriber]) -> None:
    """Keep the week each of these readers last joined on the suppression they
    left by, before their rows are deleted: the desk counts them leaving by it
    (Suppression.reader_left_at), and joining by their row, soon gone. The week
    as the desk counts it, and no closer."""
    Suppression.objects.filter(reader__in=readers, reader_left_at__isnull=False).update(
        reader_joined_week=Subquery(
            Subscriber.objects.filter(pk=OuterRef("reader")).values(
                week=TruncWeek("confirmed_at", output_field=DateField())
            )
        )
    )


class _MovedMeanwhile(Exception):
    """The reader's addresses changed between their reading and their locks."""


def _addresses_erased(*, subscriber: Subscriber) -> list[AddressPeriod] | None:
    """The reader's addresses, each suppressed as erased, then the reader's row
    locked to the end of the erasure; None if they are erased meanwhile.

    Taken in the order address_suppress and email_change_confirm take them (an
    address's suppression, then its reader), so the addresses are read before
    their locks: read again under the reader's lock, which a move to a new
    address waits for, they are the addresses the erasure forgets. A move
    committed in between (the reader confirming it in another tab) added one:
    its locks let go (a savepoint's rollback), the erasure starts again from the
    new addresses, rather than take the new address's suppression under the
    reader's lock, out of that order. Read once, the erasure left the new
    address unhashed, free for an old list to subscribe again.
    """
    while True:
        try:
            with transaction.atomic():
                addresses = _addresses_now(subscriber=subscriber)
                if addresses is None:
                    return None
                emails = {period.email for period in addresses}
                # An address another reader has since is theirs: its hash is not
                # ours to add. Not one a request nobody confirmed names: left
                # out, the address was free for an old list to subscribe again
                # (imports.py).
                emails -= set(
                    Subscriber.objects.filter(email__in=emails)
                    .exclude(pk=subscriber.pk)
                    .holding_their_address()
                    .values_list("email", flat=True)
                )
                for email in sorted(emails):
                    address_suppress(email=email, reason=Suppression.Reason.DELETED)
                # Then the reader's own row, held to the end, before anything
                # naming them is deleted: a row naming them that another
                # transaction commits meanwhile (a mailing's page that planned
                # them, checked at its commit) waits for the erasure and fails
                # then. Let through, it named them in a row the erasure had
                # already deleted, and the erasure failed instead.
                Subscriber.objects.select_for_update().filter(pk=subscriber.pk).exists()
                if _addresses_now(subscriber=subscriber) == addresses:
                    return addresses
                raise _MovedMeanwhile
        except _MovedMeanwhile:
            continue


def _addresses_now(*, subscriber: Subscriber) -> list[AddressPeriod] | None:
    """addresses_held from the reader's row as it is now, not as the caller read
    it (their page opened before a move); None if it is gone."""
    try:
        subscriber.refresh_from_db(fields=["email"])
    except Subscriber.DoesNotExist:
        return None
    return addresses_held(subscriber=subscriber)


def commenter_addresses(*, email: str) -> list[AddressPeriod]:
    """The address over the time it has been its present owner's, for their
    comments' data, whether or not they subscribe: since the last reader who
    moved away from it left (what was written before is that reader's).

    A reader of the newsletter gets the same comments here as in their own
    export, for this address.
    """
    email = normalise_email(email)
    others_left = (
        PreviousAddress.objects.filter(email=email)
        .exclude(subscriber__email=email)
        .aggregate(last=Max("moved_at"))["last"]
    )
    return [AddressPeriod(email, after=others_left)]


def commenter_export(*, email: str) -> dict:
    """The comments written under the address while it was its owner's, and what
    the desk did to them, as the reader's export lists them."""
    addresses = commenter_addresses(email=email)
    return {
        "comments": comments_for_addresses(addresses=addresses),
        "desk_history": _desk_history_exported(
            comments_desk_history(addresses=addresses)
        ),
    }


def commenter_delete(*, email: str) -> int:
    """Erase the comments written under the address while it was its owner's, as
    a reader's erasure does theirs. Returns how many were deleted."""
    return comments_delete_for_addresses(addresses=commenter_addresses(email=email))


def pending_purge_expired() -> int:
    """Delete subscriptions never confirmed whose latest confirmation has expired,
    and every request never confirmed as old: a request for a known reader's
    address (one who left, or asked twice) holds the asker's IP address and the
    name they typed, may be a stranger's, and is of no use once nobody can
    confirm it. Forget the new addresses whose links never went. Returns how
    many readers were deleted."""
    now = timezone.now()
    _new_addresses_forget_unsent(now=now)
    cutoff = now - timedelta(seconds=settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS)
    expired = Subscriber.objects.filter(status=Subscriber.Status.PENDING).filter(
        Q(confirmation_sent_at__lt=cutoff)
        | Q(confirmation_sent_at__isnull=True, created_at__lt=cutoff)
    )
    with transaction.atomic():
        # Locked before they are deleted, and deleted only if still expired under
        # the lock: a reader asking again meanwhile (subscription_request holds
        # their row) is skipped, not waited for, and a request committed since
        # the read has taken its reader out of it. Deleted as read, the request
        # went with its reader after the asker was told to check their inbox.
        # A reader skipped today is purged tomorrow if nobody confirms.
        locked = expired.select_for_update(skip_locked=True).values_list(
            "pk", flat=True
        )
        # Readers, not delete()'s total, which counts their consents and topics too.
        purged = Subscriber.objects.filter(pk__in=list(locked))
        # A reader who had left and asked to come back, never confirmed.
        _joined_week_keep(readers=purged)
        _, deleted_by_model = purged.delete()
        Consent.objects.filter(
            confirmed_at__isnull=True, created_at__lt=cutoff
        ).delete()
    return deleted_by_model.get(Subscriber._meta.label, 0)


# A new address (a change of address) whose link is still unsent this long after
# it was asked for is forgotten: its task gave up long before (about six hours),
# or its message was lost with the queue, and nothing rings it again.
NEW_ADDRESS_FORGOTTEN_AFTER_HOURS = 24


def _new_addresses_forget_unsent(*, now: datetime) -> None:
    """A sent link carries its address, which its row then no longer keeps: left
    are those never sent, of no use to anyone."""
    asked_before = now - timedelta(hours=NEW_ADDRESS_FORGOTTEN_AFTER_HOURS)
    Subscriber.objects.exclude(email_change_to="").exclude(
        email_change_requested_at__gte=asked_before
    ).update(email_change_to="")
    Subscriber.objects.exclude(one_time_link_new_email="").exclude(
        one_time_link_sent_at__gte=asked_before
    ).update(one_time_link_new_email="")


def confirmation_send(*, consent_id: int) -> None:
    """Send the request its confirmation, once: taken (Consent.confirmation_taken_at)
    before the provider is asked, given back only when it clearly refused it."""
    consent = Consent.objects.select_related("subscriber").filter(pk=consent_id).first()
    if consent is None:
        return
    subscriber = consent.subscriber
    # Confirmed or resumed meanwhile, or suppressed: nothing to confirm.
    receiving = not Subscriber.objects.not_receiving().filter(pk=subscriber.pk).exists()
    if receiving or is_blocked(subscriber.email):
        return
    message = confirmation_message(subscriber, consent_id=consent.pk)
    now = timezone.now()
    untaken = Consent.objects.filter(pk=consent.pk, confirmation_taken_at=None)
    if not untaken.update(confirmation_taken_at=now):
        return  # sent, or possibly sent, by an earlier run of its task
    if Suppression.objects.for_email(subscriber.email).exists():
        # Their own unsubscribe (no other lets a request through, is_blocked),
        # which Mailgun keeps too: it would drop the email they asked for.
        mailgun_unsubscribe_delete(email=subscriber.email)
    taken_email_send(
        message,
        give_back=lambda: Consent.objects.filter(
            pk=consent.pk, confirmation_taken_at=now
        ).update(confirmation_taken_at=None),
    )


def confirmation_unsent(*, consent_id: int) -> None:
    """The provider refused this request's confirmation email until its task gave
    up: the reader got nothing, and must not wait a day for the once-a-day limit
    (NEWSLETTER_CONFIRM_RESEND_AFTER_SECONDS, which counts emails sent) before the
    form sends another, nor their inbox's other addresses (a tag mistyped). Unless
    a later request's email was sent since."""
    consent = Consent.objects.select_related("subscriber").filter(pk=consent_id).first()
    if consent is None:
        return
    freed = Subscriber.objects.filter(
        pk=consent.subscriber_id, confirmation_sent_at__lte=consent.created_at
    ).update(confirmation_sent_at=None)
    if freed:
        email = consent.subscriber.email
        throttle.let_go(CONFIRMATION_TO, inbox_of(email), email)


# A welcome still unsent this long after the reader confirmed is given up: it
# says what to expect from now on, and by then the newsletter itself may have
# come. Longer than the provider's outages a one-reader email rides out.
WELCOME_GIVEN_UP_AFTER_HOURS = 24
# Welcomes rung again per run of the reaper, at most: one small message on the
# queue each, and one provider call each in a worker.
WELCOMES_RUNG_PER_RUN = 100


def welcome_send(*, subscriber_id: int) -> None:
    """Send the reader their welcome if they are owed it and still receiving.

    Taken (welcome_rung_at cleared, in one UPDATE) before the provider is asked:
    a second ring, or a worker dying after the provider took it, sends no second
    welcome. Given back only when the provider clearly refused it
    (welcome_retry_wait); otherwise a welcome lost on the way is lost for good.
    """
    given_up = timezone.now() - timedelta(hours=WELCOME_GIVEN_UP_AFTER_HOURS)
    taken = (
        Subscriber.objects.confirmed()
        .filter(
            pk=subscriber_id,
            welcome_rung_at__isnull=False,
            confirmed_at__gte=given_up,
        )
        .update(welcome_rung_at=None)
    )
    subscriber = taken and Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber:
        welcome_message(subscriber).send()


def welcome_retry_wait(*, subscriber_id: int, countdown: float) -> None:
    """The provider clearly refused the welcome: owed again, dated from when its
    retry is due, `countdown` seconds on, so that the reaper rings it again only
    if that retry is lost too (as delivery.batch_retry_wait dates a batch)."""
    Subscriber.objects.confirmed().filter(
        pk=subscriber_id, welcome_rung_at__isnull=True
    ).update(welcome_rung_at=timezone.now() + timedelta(seconds=countdown))


def welcomes_reap() -> dict[str, int]:
    """Run by beat with the mailings' reaper: rings again, a few a run, the
    welcomes still owed a doorbell timeout after their ring (the broker down when
    the reader confirmed, or restarted since), to readers still receiving, and
    gives up those still owed WELCOME_GIVEN_UP_AFTER_HOURS after the reader
    confirmed."""
    now = timezone.now()
    owed = Subscriber.objects.filter(welcome_rung_at__isnull=False)
    given_up = owed.filter(
        confirmed_at__lt=now - timedelta(hours=WELCOME_GIVEN_UP_AFTER_HOURS)
    ).update(welcome_rung_at=None)
    cutoff = now - timedelta(seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS)
    lost = (
        owed.confirmed()
        .filter(welcome_rung_at__lt=cutoff)
        .order_by("welcome_rung_at")
        .values_list("pk", flat=True)
    )
    rung = 0
    for subscriber_id in lost[:WELCOMES_RUNG_PER_RUN]:
        # Checked again as it is dated: one a worker took meanwhile stays taken.
        if Subscriber.objects.filter(
            pk=subscriber_id, welcome_rung_at__lt=cutoff
        ).update(welcome_rung_at=now):
            tasks.send_welcome.delay(subscriber_id)
            rung += 1
    return {"welcomes_rung": rung, "welcomes_given_up": given_up}


def email_change_send(*, subscriber_id: int, requested_at: datetime) -> None:
    """Send the link of the change of address asked for at `requested_at`, to
    the address the request keeps (Subscriber.email_change_to), once, and only
    while it is the reader's latest request: taken
    (Subscriber.email_change_taken_for) before the provider is asked, given back
    only when it clearly refused it. Run after a later request, it would send this
    one's address a link bound to that request, which works."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        logger.info(
            "The change-of-address link of subscriber %s was not sent: they are erased",
            subscriber_id,
        )
        return
    new_email = subscriber.email_change_to
    if not new_email or is_blocked(new_email):
        return  # on its way or sent, or forgotten, or an address not to email
    token = make_token(subscriber, Purpose.CHANGE_EMAIL, detail=new_email)
    email = render_email(
        "change-email",
        {
            "subscriber": subscriber,
            "new_email": new_email,
            "confirm_url": site_link("newsletter:change_email", token=token),
            "max_age_days": settings.NEWSLETTER_CHANGE_EMAIL_MAX_AGE_SECONDS // 86400,
        },
    )
    untaken = Subscriber.objects.filter(
        pk=subscriber_id, email_change_requested_at=requested_at
    ).exclude(email_change_taken_for=requested_at)
    # Once handed to the provider the address is the link's to carry: the row
    # keeps it again only for a retry.
    if not untaken.update(email_change_taken_for=requested_at, email_change_to=""):
        return  # a later request's, or sent (possibly) by an earlier run of its task
    if Suppression.objects.for_email(new_email).exists():
        # Its own unsubscribe here (is_blocked lets no other by), which Mailgun
        # keeps too: it would drop the link the reader asked for.
        mailgun_unsubscribe_delete(email=new_email)
    taken_email_send(
        build_message(email, to=new_email),
        give_back=lambda: Subscriber.objects.filter(
            pk=subscriber_id, email_change_taken_for=requested_at
        ).update(email_change_taken_for=None, email_change_to=new_email),
    )


def email_change_unsent(*, subscriber_id: int, requested_at: datetime) -> None:
    """The provider refused the link to the new address until its task gave up:
    the reader got nothing, and must not wait a day for the day's turn, and the
    new address's, before asking again. Unless a later request took the turn."""
    requesting = Subscriber.objects.filter(
        pk=subscriber_id, email_change_requested_at__lte=requested_at
    )
    new_email = requesting.values_list("email_change_to", flat=True).first()
    freed = requesting.update(email_change_requested_at=None, email_change_to="")
    if freed and new_email:
        throttle.give_back(CHANGE_OF_ADDRESS_TO, inbox_of(new_email))


def one_time_link_send(
    *, subscriber_id: int, detail: str, requested_at: datetime
) -> None:
    """Send the one-time link asked for at `requested_at`, only while it is the
    reader's latest request, and not yet used. Run after a later request (a retry,
    a backlog), it would send a link for this one's action bound to that request,
    which works: the reader asking to delete their data could be sent a working
    link to download it. The link is made from the reader as read here, so a
    request made while it goes retires it."""
    asked = Subscriber.objects.filter(
        pk=subscriber_id, one_time_link_sent_at=requested_at
    )
    subscriber = asked.first()
    if subscriber is None:
        logger.info(
            "The one-time link of subscriber %s was not sent: they are erased, or "
            "asked for another since",
            subscriber_id,
        )
        return
    if is_blocked(subscriber.email):
        return
    request, new_email = OneTimeRequest(detail), ""
    detail = request.value
    if request == OneTimeRequest.CHANGE_EMAIL:
        # Kept in the row for this task (one_time_link_request); the link's
        # detail carries it, as read_one_time_detail reads it.
        new_email = subscriber.one_time_link_new_email
        if not new_email:
            return  # sent already, or forgotten since
        detail = f"{request.value}:{new_email}"
    token = make_token(subscriber, Purpose.ONE_TIME, detail=detail)
    email = render_email(
        "one-time-link",
        {
            "request": request.value,
            "new_email": new_email,
            "link": site_link("newsletter:one_time", token=token),
            "engagement_wording": ENGAGEMENT_CONSENT_WORDING,
            "max_age_minutes": MAX_AGE[Purpose.ONE_TIME] // 60,
        },
    )
    build_message(email, to=subscriber.email).send()
    if request == OneTimeRequest.CHANGE_EMAIL:
        # Sent, the link carries the address: the row keeps it no longer.
        asked.update(one_time_link_new_email="")
