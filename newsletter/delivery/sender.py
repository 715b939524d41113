"""Sending one batch of any mailing: claim it, render, hand it to the provider,
record outcomes.

For a post, six database statements per batch, whatever its size (the last batch
of a mailing adds two to close it): claim the batch, load the mailing and post, read
the recipients (with all a message needs of them, a digest's posts among it),
before the first call to the provider whether the mailing still goes out and its
post (a digest's: which of its posts) is on the site, record every outcome, close
the batch. A digest adds the read of its posts' order; a correction, which of its
readers the ledger still says had the post. A batch handed over for longer than a
second adds one a second, the mailing and its posts read again (HOLD_READ_SECONDS);
each call of a digest batch that goes without a post taken down, one before it to
say so in the ledger.

Where one API call takes many recipients, each with their own links (Postmark's
/email/batch, each reader's message filled in by our backend, delivery/postmark.py;
Mailgun's recipient-variables), a post's batch is one call; otherwise one message
per recipient over one reused connection. For Postmark one message each, the batch
is still one message to the backend, which posts each reader's own. A digest
differs per reader beyond their links (their posts): with Postmark, one message for
each number of posts and day that our backend fills in; otherwise one message each.
"""

import random
import smtplib
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.db import connections, transaction
from django.db.models import Exists, F, IntegerField, OuterRef, Value
from django.utils import timezone
from urllib3.exceptions import NewConnectionError

from posts.models import Post, Sponsorship

from .. import corrections
from ..digests import DigestEmail, digests_record_left_out
from ..emails import (
    BulkEmail,
    CorrectionEmail,
    PostEmail,
    RenderedEmail,
    json_inner,
)
from ..esp import ANYMAIL_MAILGUN, ANYMAIL_POSTMARK, POSTMARK_BACKEND
from ..logs import redact
from ..models import Batch, Delivery, Mailing
from .ledger import (
    DIGEST_EMPTIED,
    Outcome,
    Recipient,
    batch_recipients,
    batches_cancel,
    close_batch,
    record_outcomes,
)
from .postmark import EmailBackend as PostmarkBackend
from .postmark import NotConnected
from .ratelimit import RateLimited, sending_budget

# Recipients per provider call. Postmark takes at most 500 messages per
# /email/batch; Mailgun at most 1,000 recipients per call. A batch holds its
# recipients' rows and the request body in memory (Postmark: ~40 KB
# per message, so ~20 MB for 500) and is the unit a crash can leave uncertain.
POSTMARK_BATCH_SIZE = 500
MAILGUN_BATCH_SIZE = 1000
# Postmark takes at most 50 MB to a call to /email/batch: 500 readers' copies of a
# long post (over ~90 KB as JSON, its HTML's styles inlined) would pass it, so a
# call then takes as many as fit, each copy counted as its bodies and what a reader
# adds (address, headers, metadata, links).
POSTMARK_BATCH_BYTES = 45_000_000
POSTMARK_READER_BYTES = 2_000
# One message per recipient: a batch is just the unit of claiming and recording.
SINGLE_MESSAGE_BATCH_SIZE = 200
# One message per reader is a round trip per reader: a post's batch goes over up to
# SEND_LANES connections at once, a thread each, so that their round trips overlap.
# A lane has at least LANE_MIN_READERS (fewer are not worth a thread and a connection).
SEND_LANES = 4
LANE_MIN_READERS = 50
# How often, in seconds, a batch being handed over reads whether the author has
# paused or cancelled its mailing, or taken its post off the site: it stops within
# about that long, at one query per batch each time, not one per reader.
HOLD_READ_SECONDS = 1.0
# The longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 600
# A worker renews its claim on a batch as the batch goes out, once this share of
# NEWSLETTER_CLAIM_TIMEOUT_SECONDS has passed since it last did: the rest is left
# for the step in flight (a budget's wait, a provider's call; newsletter/checks.py).
CLAIM_RENEWAL_SHARE = 0.25
# How long a reader an SMTP server keeps deferring is tried before failing them,
# counted from the start of the send: mail servers give up after 4-5 days
# (RFC 5321, 4.5.4.1).
MAX_DEFERRAL = timedelta(days=4)


# Postmark's merge syntax, which our backend fills in where Postmark would not.
POSTMARK_MERGE_FIELD = "{{NAME}}"


@dataclass(frozen=True)
class Channel:
    """How the configured email backend takes a batch."""

    esp: str
    batch_size: int
    # The email backend for mailings: the configured one, or our faster subclass
    # of it.
    backend: str
    # Where the provider (or our backend for it) fills per-recipient fields in
    # bodies: its merge syntax, NAME standing for the field. None: one message
    # per reader, each rendered with their own links.
    merge_field: str | None = None
    # Each reader's message is a request of its own (one message per reader).
    per_reader: bool = False
    # Our backend fills in each reader's merge data (POSTMARK_MERGE_FIELD) for a
    # call's readers, in one /email/batch: a batch's messages may differ by reader
    # (their links, a digest's posts) beyond what Postmark itself would fill in.
    fills_merge_fields: bool = False

    @property
    def batched(self) -> bool:
        return self.merge_field is not None

    @property
    def batches_messages(self) -> bool:
        """Whether one call takes many readers' own messages (our Postmark
        backend's send_messages, in one /email/batch). Not in one-message mode:
        there each is a request of its own, sent alone, so that an error names
        the one reader it concerns."""
        return self.backend == POSTMARK_BACKEND and self.batched and not self.per_reader

    def connection(self):
        """A connection to the mailing backend; ours for Postmark is told whether
        each reader's message is a request of its own, and puts every message on
        the broadcast stream: without one Postmark sends bulk mail on the
        transactional stream, which its terms forbid and whose reputation the
        readers' confirmations and one-time links depend on."""
        if self.backend == POSTMARK_BACKEND:
            return mail.get_connection(
                self.backend,
                per_reader=self.per_reader,
                message_stream=settings.NEWSLETTER_POSTMARK_BROADCAST_STREAM,
            )
        return mail.get_connection(self.backend)


def channel() -> Channel:
    backend = settings.EMAIL_BACKEND
    if backend == ANYMAIL_POSTMARK:
        backend = POSTMARK_BACKEND
        if settings.NEWSLETTER_DELIVERY_MODE == "single":
            # Our backend fills in each reader's fields and posts their own
            # message: anymail builds the payload once per batch, not per reader.
            return Channel(
                "postmark",
                SINGLE_MESSAGE_BATCH_SIZE,
                backend,
                merge_field=POSTMARK_MERGE_FIELD,
                per_reader=True,
            )
        if settings.ANYMAIL.get("POSTMARK_USE_BULK_API"):
            # Postmark's bulk API takes the content once and fills each
            # recipient's TemplateModel into it: fully personal, and a payload of
            # one message instead of 500 copies (but it must be enabled by
            # Postmark, and answers "accepted" without per-recipient ids).
            return Channel(
                "postmark",
                POSTMARK_BATCH_SIZE,
                backend,
                merge_field=POSTMARK_MERGE_FIELD,
            )
        # Without a stored template Postmark cannot vary a batch's bodies: our
        # backend fills each reader's links (a digest's posts too) into their own
        # message, and posts the call's readers together to /email/batch.
        return Channel(
            "postmark",
            POSTMARK_BATCH_SIZE,
            backend,
            merge_field=POSTMARK_MERGE_FIELD,
            fills_merge_fields=True,
        )
    if backend == ANYMAIL_MAILGUN and settings.NEWSLETTER_DELIVERY_MODE != "single":
        # Mailgun substitutes recipient-variables in bodies too: fully personal.
        return Channel(
            "mailgun", MAILGUN_BATCH_SIZE, backend, merge_field="%recipient.NAME%"
        )
    return Channel(
        backend.rsplit(".", 2)[-2], SINGLE_MESSAGE_BATCH_SIZE, backend, per_reader=True
    )


class RetryLater(Exception):
    """The batch went back to the queue; retry its task after `countdown` seconds
    (None: the task's own exponential backoff)."""

    def __init__(self, message: str, countdown: float | None = None) -> None:
        super().__init__(message)
        self.countdown = countdown


class ReaderDeferred(RetryLater):
    """The provider will take a reader later (an SMTP server's 4xx for their
    address): the others went on, and the reader waits for the retry. Not the
    provider's failure, so it does not count towards the circuit breaker."""


class ProviderUnavailable(RetryLater):
    """The provider did not take the message now (an error answer, no connection)."""


class BatchHeld(RetryLater):
    """The author stopped the batch as it went: the readers not yet handed over
    wait in the queue, for the mailing to go again."""


class PostTakenDown(BatchHeld):
    """The author took the post off the site as its batch went: the readers not
    yet handed it wait, as its mailing's pause leaves them, for the author to
    publish it again and resume (receivers.hold_emails_of_unpublished_post)."""

    def __init__(self) -> None:
        super().__init__("the post was taken off the site as its batch went")


class MailingHeld(BatchHeld):
    """The author paused or cancelled the mailing as its batch went: the readers
    not yet handed over wait in the queue, for the resume to send them (or the
    cancel to skip them)."""

    def __init__(self) -> None:
        super().__init__("the mailing was paused or cancelled as its batch went")


def batch_send(*, batch_id: int) -> None:
    """Send one batch. Raises RetryLater when it went back to the queue."""
    now = timezone.now()
    running = Mailing.objects.going_out().filter(pk=OuterRef("mailing_id"))
    claimed = (
        Batch.objects.filter(pk=batch_id, status=Batch.Status.QUEUED)
        .filter(Exists(running))
        .update(
            status=Batch.Status.SENDING,
            touched_at=now,
            claimed_at=now,
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        # Done already, another worker has it, or its mailing is paused; or
        # cancelled while this batch was being sent, and it came back to the queue.
        batch_cancel_if_mailing_cancelled(batch_id, now)
        return
    batch = (
        Batch.objects.select_related("mailing__post", "mailing__post_update__post")
        # Read along for a post's kept email (_rendered): no statement of its own.
        .annotate(sponsorships_changed=Sponsorship.objects.last_change())
        .get(pk=batch_id)
    )
    if batch.mailing.kind == Mailing.Kind.DIGEST:
        recipients, skipped = batch_recipients(
            batch_id, digest_of=batch.mailing.frequency
        )
    else:
        recipients, skipped = batch_recipients(
            batch_id, announcing=_rendered(batch).announcing
        )
        if batch.mailing.kind == Mailing.Kind.CORRECTION:
            recipients = _still_owed(batch.mailing, recipients, skipped)
    outcomes, trouble = _hand_over(batch, recipients)
    for delivery_id, why in skipped.items():
        outcomes[delivery_id] = Outcome(Delivery.Status.SKIPPED, error=why)
    now = timezone.now()
    record_outcomes(outcomes, now, batch_id=batch_id)
    closed = close_batch(
        batch_id,
        from_status=Batch.Status.SENDING,
        attempt=batch.attempts,
        now=now,
        # The batch's, not a reader's: it stays after their erasure.
        error=redact(str(trouble)) if trouble else "",
        # A retry holding a reader whose answer was lost, or one lost in this
        # attempt: the provider's event may settle them as the batch closes.
        uncertain_readers=batch.uncertain > 0
        or any(o.status == Delivery.Status.UNCERTAIN for o in outcomes.values()),
    )
    if closed is None:
        # The reaper took this claim for a dead one's and made its readers
        # UNCERTAIN; the answers just recorded replaced that, so the batch is
        # counted again from the ledger (unless the author has settled it since,
        # or put it back in the queue, and another worker may be sending it: its
        # close counts it): else the desk lists as uncertain readers the
        # provider answered for.
        closed = close_batch(
            batch_id,
            from_status=Batch.Status.UNCERTAIN,
            now=now,
            uncertain_readers=True,
        )
        if closed is not None and not closed[1]:
            close_mailing_if_finished(batch.mailing_id)
        return
    status, queued = closed
    # The provider refusing, or leaving the outcome unknown, counts towards the
    # breaker; a spent sending budget (ours) or a deferred reader (theirs) does not.
    provider_failed = trouble is not None and (
        isinstance(trouble, ProviderUnavailable) or not isinstance(trouble, RetryLater)
    )
    if provider_failed:
        _count_failure(batch.mailing, now)
    elif batch.mailing.consecutive_failures:
        Mailing.objects.filter(pk=batch.mailing_id).update(consecutive_failures=0)
    if status == Batch.Status.QUEUED:
        if batch_cancel_if_mailing_cancelled(batch_id, now):
            return
        if isinstance(trouble, BatchHeld) and _holding(batch.mailing_id).held:
            # Held still: resuming rings for it. Resumed already (the post back
            # on the site), that ring found it still being sent: its retry sends it.
            return
        raise trouble if isinstance(trouble, RetryLater) else RetryLater(str(trouble))
    # With none queued, this may be the last batch: ask, after this batch's close
    # is committed, whether the mailing is done. Of batches finishing side by side,
    # the one that asks last sees them all done (close_batch's own statement could
    # not see a sibling's uncommitted close, and left the mailing to the reaper).
    if not queued:
        close_mailing_if_finished(batch.mailing_id)


class Holding(NamedTuple):
    # What holds the mailing's batches now: its post off the site (first: the
    # take-down pauses the mailing too), or the author's pause or cancel; None
    # while it goes out.
    held: BatchHeld | None
    # Which of a digest batch's posts its readers can read now: a digest goes
    # without a post taken down, unheld.
    posts_on_site: set[int]


def _holding(mailing_id: int, digest_posts: Collection[int] = ()) -> Holding:
    """What holds the mailing's batches now, and which of `digest_posts` are on
    the site. In one statement."""
    going_out = Mailing.objects.going_out().filter(pk=OuterRef("pk"))
    # The mailing's row (no post id), absent once its post is off the site; then
    # a row for each of the digest's posts on the site. Unordered: a compound
    # statement's parts take no ORDER BY (SQLite).
    rows = (
        Mailing.objects.post_on_site()
        .filter(pk=mailing_id)
        .order_by()
        .values_list(Exists(going_out), Value(None, output_field=IntegerField()))
    )
    if digest_posts:
        on_site = Post.objects.published().filter(pk__in=digest_posts).order_by()
        rows = rows.union(on_site.values_list(Value(True), "pk"), all=True)
    goes, posts_on_site = None, set()
    for going, post_id in rows:
        if post_id is None:
            goes = going
        else:
            posts_on_site.add(post_id)
    if goes is None:
        return Holding(PostTakenDown(), posts_on_site)
    return Holding(None if goes else MailingHeld(), posts_on_site)


def _still_owed(
    mailing: Mailing, recipients: list[Recipient], skipped: dict[int, str]
) -> list[Recipient]:
    """A correction's recipients who, as the ledger reads now, were sent the
    post's earlier text; the others are added to `skipped`."""
    owed = corrections.readers_still_owed(mailing, [r.pk for r in recipients])
    for r in recipients:
        if r.pk not in owed:
            skipped[r.delivery_id] = (
                "never had the earlier text: skipped, failed or still to go"
            )
    return [r for r in recipients if r.pk in owed]


def batch_retry_wait(*, batch_id: int, countdown: float) -> None:
    """Date a batch back in the queue from when its retry is due, `countdown`
    seconds on (a provider's Retry-After, the backoff): the reaper rings again for
    a queued batch only once its doorbell is NEWSLETTER_DOORBELL_TIMEOUT_SECONDS
    late, and counted from its return it rang for a batch still waiting for its
    retry, and sent it before the provider's Retry-After."""
    Batch.objects.filter(pk=batch_id, status=Batch.Status.QUEUED).update(
        touched_at=timezone.now() + timedelta(seconds=countdown)
    )


def batch_cancel_if_mailing_cancelled(batch_id: int, now: datetime) -> bool:
    """Cancel the batch if it waits in the queue of a cancelled mailing: the
    author cancelled while it was being sent (mailing_cancel leaves a batch in
    flight to its worker), and no worker will claim it again. Its worker does so
    as it puts it back; the reaper, for one whose worker missed the cancel."""
    batch = Batch.objects.filter(pk=batch_id, mailing__status=Mailing.Status.CANCELLED)
    with transaction.atomic():
        return bool(batches_cancel(batch, now=now))


class ClaimLost(Exception):
    """The reaper took the batch's claim for a dead worker's: its readers not yet
    handed over are uncertain, the author's to settle, and must not go out now."""


class Claim:
    """A worker's claim on its batch, renewed as the batch makes progress. The
    reaper takes a claim untouched for NEWSLETTER_CLAIM_TIMEOUT_SECONDS for a dead
    worker's, and a live batch can take longer than that in all (a slow provider's
    round trip times its readers, a shared budget's waits): what must stay under the
    timeout is the time between two steps, not the whole batch."""

    def __init__(self, batch_id: int, claimed_at: datetime, attempt: int) -> None:
        self.batch_id = batch_id
        self.renewed_at = claimed_at
        # Which claim on the batch is this worker's (Batch.attempts, counted by
        # each claim): once the reaper has taken it, the author may put the batch
        # back in the queue and another worker claim it, and that batch being
        # sent is not this claim.
        self.attempt = attempt
        self.lost = False
        self._lock = threading.Lock()  # a post's lanes share the claim

    def renew(self) -> bool:
        """Renew the claim if it is due; False once the reaper has taken it."""
        with self._lock:
            if self.lost:
                return False
            now = timezone.now()
            due = settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS * CLAIM_RENEWAL_SHARE
            if (now - self.renewed_at).total_seconds() < due:
                return True
            # The reaper re-checks touched_at before taking a claim, so a renewal
            # that lands first keeps the batch; one that lands after finds it gone.
            renewed = Batch.objects.filter(
                pk=self.batch_id, status=Batch.Status.SENDING, attempts=self.attempt
            ).update(touched_at=now)
            if renewed:
                self.renewed_at = now
            else:
                self.lost = True
            return bool(renewed)

    def hold(self) -> None:
        """Renew the claim if it is due; raise ClaimLost once it is taken."""
        if not self.renew():
            raise ClaimLost("the reaper took the claim")


class HandOverStopped(Exception):
    """A lane stops before its next reader (HandOver.check)."""


class HandOver:
    """Whether a batch's lanes go on to their next reader: not once the author
    has paused or cancelled its mailing, or taken its post off the site, nor once
    another lane has met an error; and which of a digest batch's posts are still
    on the site, for the digests that go next. The mailing is read (_holding)
    before the first call, then at most every HOLD_READ_SECONDS, by the worker's
    own thread (read_if_due): in the lanes' threads each would open a database
    connection of its own."""

    def __init__(self, mailing_id: int, digest_posts: frozenset[int]) -> None:
        self.mailing_id = mailing_id
        self._digest_posts = digest_posts
        # Not the claim's read of the mailing going out: a pause or cancel landing
        # between the claim and the first call would let the first second go.
        self.read_at: datetime | None = None
        # What stopped the batch, for its worker; None when another lane's
        # error did, which that lane reports.
        self.held: BatchHeld | None = None
        self.posts_on_site: set[int] = set(digest_posts)
        self._stopped = threading.Event()

    def read_if_due(self) -> None:
        now = timezone.now()
        if (
            self.read_at is not None
            and (now - self.read_at).total_seconds() < HOLD_READ_SECONDS
        ):
            return
        self.read_at = now
        holding = _holding(self.mailing_id, self._digest_posts)
        self.held, self.posts_on_site = holding.held, holding.posts_on_site
        if self.held is not None:
            self._stopped.set()

    def stop(self) -> None:
        """Another lane met an error: the others go no further."""
        self._stopped.set()

    def check(self) -> None:
        if self._stopped.is_set():
            raise HandOverStopped()


# A message and the readers it goes to.
Letter = tuple[EmailMessage, list[Recipient]]
# A lane's outcomes, the error that stopped it, and a reader deferred on the way.
Lane = tuple[dict[int, Outcome], Exception | None, ReaderDeferred | None]


def _hand_over(
    batch: Batch, recipients: list[Recipient]
) -> tuple[dict[int, Outcome], Exception | None]:
    """Give the recipients to the provider. Returns the outcome of each one
    attempted (the others stay QUEUED) and the error that stopped it, if any.

    Where each reader's message is a request of its own, a post's readers are
    split into lanes sent side by side, each over its own connection; a lane that
    meets an error, or the author pausing or cancelling the mailing or taking its
    post off the site, stops them all before their next reader. A digest's frames
    are rendered as its readers need them, reading the database (and writing
    which posts they go without, after a take-down): one lane."""
    how = channel()
    claim = Claim(batch.pk, batch.touched_at, batch.attempts)
    digest_posts = frozenset(pk for r in recipients for pk in r.posts)
    hand_over = HandOver(batch.mailing_id, digest_posts)
    lanes = 1
    if how.per_reader and batch.mailing.kind != Mailing.Kind.DIGEST:
        lanes = max(1, min(SEND_LANES, len(recipients) // LANE_MIN_READERS))
    compose, size = _composer(batch, recipients, how, hand_over)
    # A call never asks the sending budget for more than it can ever grant:
    # a larger one would be refused at every attempt, and the batch never sent.
    largest = sending_budget(how.esp).largest_reservation()
    if largest is not None:
        size = min(size, largest)
    hand_over.read_if_due()  # before the first call, and before any lane starts
    if hand_over.held is not None:
        return {}, hand_over.held
    if lanes == 1:
        outcomes, stopped_by, deferred = _send_lane(
            batch,
            recipients,
            how,
            compose,
            size,
            claim=claim,
            hand_over=hand_over,
            reads_mailing=True,
        )
        return outcomes, stopped_by or deferred

    def send_lane(readers: list[Recipient]) -> Lane:
        try:
            lane = _send_lane(
                batch, readers, how, compose, size, claim=claim, hand_over=hand_over
            )
        except BaseException:
            hand_over.stop()
            raise
        finally:
            connections.close_all()  # this thread's, should anything have opened one
        if lane[1] is not None:
            hand_over.stop()
        return lane

    per_lane = -(-len(recipients) // lanes)
    with ThreadPoolExecutor(lanes, thread_name_prefix=f"batch-{batch.pk}") as pool:
        going = [pool.submit(send_lane, r) for r in _chunks(recipients, per_lane)]
        # This thread reads the mailing for the lanes while they go.
        while wait(going, timeout=HOLD_READ_SECONDS).not_done:
            hand_over.read_if_due()
        results = [lane.result() for lane in going]
    outcomes: dict[int, Outcome] = {}
    for lane_outcomes, _, _ in results:
        outcomes.update(lane_outcomes)  # the lanes' readers are disjoint
    stopped = [stopped_by for _, stopped_by, _ in results if stopped_by is not None]
    # Of several errors: the provider's refusal first (its Retry-After), then an
    # answer lost (both count towards the breaker), then our own budget's wait.
    stopped.sort(
        key=lambda exc: (
            not isinstance(exc, ProviderUnavailable),
            isinstance(exc, RetryLater),
        )
    )
    deferred = next((d for _, _, d in results if d is not None), None)
    return outcomes, (stopped[0] if stopped else deferred)


def _send_lane(
    batch: Batch,
    recipients: list[Recipient],
    how: Channel,
    compose: Callable[[list[Recipient], object], list[Letter]],
    size: int,
    *,
    claim: Claim,
    hand_over: HandOver,
    reads_mailing: bool = False,
) -> Lane:
    """Send the recipients, `size` a chunk, over one connection, until an error
    (or `hand_over` stops: the author paused or cancelled, or took the post off
    the site, another lane met an error), renewing the batch's claim on the way;
    the rest stay QUEUED (UNCERTAIN if the reaper took the claim).
    `reads_mailing`: this lane runs in the worker's own thread, and reads the
    mailing for itself."""
    mailing = batch.mailing
    outcomes: dict[int, Outcome] = {}
    deferred: ReaderDeferred | None = None

    def go_on() -> None:
        """Before each call, and each reader where our backend posts a call's
        readers one by one (one-message mode, minutes for a batch)."""
        if reads_mailing:
            hand_over.read_if_due()
        hand_over.check()
        claim.hold()

    with how.connection() as connection:
        if isinstance(connection, PostmarkBackend):
            connection.before_each_reader = go_on
        for chunk in _chunks(recipients, size):
            try:
                hand_over.check()  # not waiting for the budget first
                take_from_budget(len(chunk), esp=how.esp)
                go_on()
            except HandOverStopped:
                return outcomes, hand_over.held, deferred
            except (RetryLater, ClaimLost) as exc:
                return outcomes, exc, deferred
            letters = compose(chunk, connection)
            # A reader the chunk's messages leave out has nothing to be sent: a
            # digest whose posts were all taken off the site as it went.
            composed = {r.delivery_id for _, readers in letters for r in readers}
            outcomes.update(
                (r.delivery_id, Outcome(Delivery.Status.SKIPPED, error=DIGEST_EMPTIED))
                for r in chunk
                if r.delivery_id not in composed
            )
            if not letters:
                continue
            for message, readers in letters:
                # The metadata lets webhooks and the settling of uncertain
                # batches find the ledger rows.
                message.metadata = {"batch": str(batch.pk)}
                if len(readers) == 1:
                    message.metadata["delivery"] = str(readers[0].delivery_id)
                else:
                    message.merge_metadata = {
                        r.email: {"delivery": str(r.delivery_id)} for r in readers
                    }
            try:
                if len(letters) == 1:
                    letters[0][0].send()
                else:  # several messages in one call (delivery/postmark.py)
                    connection.send_messages([message for message, _ in letters])
            except AnymailRecipientsRefused:
                pass  # every recipient refused: anymail_status says how, as below
            except (HandOverStopped, ClaimLost) as exc:
                # Before a reader's request (our backend's before_each_reader):
                # those answered before it went, the others were not handed over.
                for message, readers in letters:
                    answered = _answered(message, readers)
                    outcomes.update((r.delivery_id, o) for r, o in answered.items())
                if isinstance(exc, HandOverStopped):
                    return outcomes, hand_over.held, deferred
                return outcomes, exc, deferred
            except smtplib.SMTPRecipientsRefused as exc:
                # An SMTP server refused a reader's address (one reader per
                # message here): the others go out either way.
                outcome = smtp_refusal(exc, since=mailing.created_at)
                if outcome.status == Delivery.Status.QUEUED:
                    deferred = deferred or ReaderDeferred(outcome.error)
                else:
                    outcomes.update({r.delivery_id: outcome for r in chunk})
                continue
            except Exception as exc:
                # A backend that posts each reader's own message (our Postmark
                # one) reports the readers it got through before the error, and
                # the one the error concerns as "unknown": the others were not sent.
                answered = {}
                for message, readers in letters:
                    answered.update(_answered(message, readers))
                outcomes.update(
                    (r.delivery_id, outcome)
                    for r, outcome in answered.items()
                    if outcome.status != Delivery.Status.UNCERTAIN
                )
                if provider_refused(exc):
                    unavailable = ProviderUnavailable(str(exc), retry_after(exc))
                    return outcomes, unavailable, deferred
                # The whole call's error, on each reader's row: it may name
                # the others in the call, who are not theirs to see or erase.
                for r in answered or chunk:
                    outcomes.setdefault(
                        r.delivery_id,
                        Outcome(Delivery.Status.UNCERTAIN, error=redact(repr(exc))),
                    )
                return outcomes, exc, deferred
            for message, readers in letters:
                outcomes.update(_accepted(message, readers))
    return outcomes, None, deferred


def _composer(
    batch: Batch, recipients: list[Recipient], how: Channel, hand_over: HandOver
) -> tuple[Callable[[list[Recipient], object], list[Letter]], int]:
    """How the kind turns a chunk of readers into messages for a connection, and
    the chunk size.

    A post or a correction is rendered once (here, before any lane starts) and
    personalised per reader, one message for a chunk where the provider fills in
    each reader's fields. A digest is assembled from parts rendered once per batch
    (each reader holds their own posts): one message for each number of posts and day,
    each reader's parts as merge data, where our Postmark backend fills it in;
    otherwise one message per reader, a chunk of them to a call where our backend
    takes them together."""
    mailing = batch.mailing
    if mailing.kind == Mailing.Kind.DIGEST:
        digest = DigestEmail(mailing, recipients, batch_id=batch.pk)

        def compose_digests(chunk: list[Recipient], connection) -> list[Letter]:
            # As last read, before this call or within the second: a post taken
            # off the site since is in none of them, and a reader left with
            # nothing gets no message.
            chunk, left_out = digest.holding_posts_on_site(
                chunk, hand_over.posts_on_site
            )
            if left_out:
                # A take-down left these rows to the worker: written before the
                # call, not after the batch, so that a worker killed once the
                # provider took it leaves them saying what went.
                digests_record_left_out(left_out=left_out)
            if how.fills_merge_fields:
                return digest.for_many(
                    chunk, merge_field=POSTMARK_MERGE_FIELD, connection=connection
                )
            return [(digest.for_reader(r, connection=connection), [r]) for r in chunk]

        return compose_digests, how.batch_size if how.batches_messages else 1
    post_email = _rendered(batch).email.for_batch(batch.pk)

    def compose(chunk: list[Recipient], connection) -> list[Letter]:
        # Whether the post (or a correction's post) is still on the site is
        # HandOver's to read, once a second: here it would be once a reader.
        if not how.batched:
            return [(post_email.for_subscriber(chunk[0], connection=connection), chunk)]
        message = post_email.for_many(
            chunk,
            merge_field=how.merge_field,
            connection=connection,
        )
        return [(message, chunk)]

    if not how.batched:
        return compose, 1
    return compose, _readers_per_call(how, post_email.rendered)


def _readers_per_call(how: Channel, email: RenderedEmail) -> int:
    """A post's readers to a call: the provider's batch size, or as many as fit in
    Postmark's /email/batch where each reader's copy goes whole."""
    if not how.fills_merge_fields:
        return how.batch_size
    copy = len(json_inner(email.text)) + len(json_inner(email.html))
    return max(
        1, min(how.batch_size, POSTMARK_BATCH_BYTES // (copy + POSTMARK_READER_BYTES))
    )


def take_from_budget(messages: int, *, esp: str | None = None) -> None:
    """Wait for `messages` tokens of the sending budget all workers share (the
    configured provider's, unless `esp` names it). Raises RetryLater when the
    wait would be too long, or the budget cannot be reached."""
    try:
        sending_budget(esp or channel().esp).acquire(messages)
    except RateLimited as exc:
        raise RetryLater(str(exc), countdown=exc.wait) from exc
    except Exception as exc:  # the shared budget is unreachable
        raise RetryLater(f"rate limiter unavailable: {exc!r}") from exc


class Rendered(NamedTuple):
    email: BulkEmail
    # A post's announcement: what the post is about (Post.topic_keys()), one of
    # which its readers must still follow as published when their batch goes.
    # None for a correction, whose readers are those sent the post.
    announcing: frozenset[tuple[str, str]] | None


_last_rendered: tuple[tuple, Rendered] | None = None


def _rendered(batch: Batch) -> Rendered:
    """The batch's mailing's email, rendered once per worker process rather than
    per batch, and again once the post is edited: the batches sent after a
    correction carry the corrected post (and its readers need no correction
    email); or once a sponsorship changes (read with the batch), so that they
    name its sponsors as they now are."""
    global _last_rendered
    mailing = batch.mailing
    # Ids alone may be reused (tests, restores).
    key = (
        mailing.pk,
        mailing.created_at,
        mailing.post.updated_at,
        batch.sponsorships_changed,
    )
    if _last_rendered is None or _last_rendered[0] != key:
        if mailing.kind == Mailing.Kind.CORRECTION:
            rendered = Rendered(
                CorrectionEmail(mailing.post_update, mailing_id=mailing.pk), None
            )
        else:
            rendered = Rendered(
                PostEmail(mailing.post, mailing_id=mailing.pk),
                frozenset(mailing.post.topic_keys()),
            )
        _last_rendered = (key, rendered)
    return _last_rendered[1]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# anymail's per-recipient statuses: https://anymail.dev/en/stable/sending/anymail_additions/#anymail.message.AnymailStatus
_ACCEPTED = {"sent", "queued"}
_REFUSED = {"rejected", "invalid", "failed", "bounced"}


def _accepted(message, chunk: Sequence[Recipient]) -> dict[int, Outcome]:
    status = getattr(message, "anymail_status", None)
    if status is None or not status.recipients:  # not an anymail backend
        return {r.delivery_id: Outcome(Delivery.Status.SENT) for r in chunk}
    answered = _answered(message, chunk)
    return {
        r.delivery_id: answered.get(
            r,
            # the provider answered but said nothing about this one
            Outcome(Delivery.Status.UNCERTAIN, error="provider gave no status"),
        )
        for r in chunk
    }


def _answered(message, chunk: Sequence[Recipient]) -> dict[Recipient, Outcome]:
    """The outcome for each reader anymail has a status for."""
    status = getattr(message, "anymail_status", None)
    answers = status.recipients if status is not None else {}
    outcomes = {}
    for r in chunk:
        answer = answers.get(r.email)
        if answer is None:
            continue
        if answer.status in _ACCEPTED:
            outcomes[r] = Outcome(
                Delivery.Status.SENT, esp_message_id=answer.message_id or ""
            )
        elif answer.status in _REFUSED:
            outcomes[r] = Outcome(
                Delivery.Status.FAILED, error=f"provider: {answer.status}"
            )
        else:  # the provider said nothing clear about this one
            outcomes[r] = Outcome(
                Delivery.Status.UNCERTAIN, error="provider gave no status"
            )
    return outcomes


def smtp_refusal(exc: smtplib.SMTPRecipientsRefused, *, since: datetime) -> Outcome:
    """What an SMTP server's refusal of a reader's address means for the ledger:
    refused for good (5xx), FAILED; for now (4xx), still QUEUED for the retry,
    until MAX_DEFERRAL after `since` (when the sending began), then FAILED."""
    replies = exc.recipients.values()
    reply = "; ".join(
        f"{code} {text.decode(errors='replace')}" for code, text in replies
    )
    if all(code >= 500 for code, _ in replies):
        return Outcome(Delivery.Status.FAILED, error=f"provider: rejected ({reply})")
    if timezone.now() - since > MAX_DEFERRAL:
        return Outcome(
            Delivery.Status.FAILED,
            error=f"provider: deferred for over {MAX_DEFERRAL.days} days ({reply})",
        )
    return Outcome(
        Delivery.Status.QUEUED, error=f"deferred by the SMTP server ({reply})"
    )


def provider_refused(exc: BaseException) -> bool:
    """True when an error proves the provider did not accept the message.

    An HTTP error answer, an SMTP server's error reply, or a connection that was
    never made, means nothing was accepted and a retry is safe. A connection that
    broke after the request went out, or a timeout waiting for the answer, might
    hide an accepted message.
    """
    if isinstance(exc, AnymailAPIError):
        if exc.status_code is not None:
            return True
        if exc.__cause__ is not None:  # the error it wraps
            return provider_refused(exc.__cause__)
    if isinstance(exc, requests.ConnectTimeout):  # no connection was made
        return True
    if isinstance(exc, requests.ConnectionError):
        # requests raises ConnectionError both for a refused connection and for one
        # dropped mid-answer; only the first proves nothing was sent.
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, NewConnectionError)
    return isinstance(
        exc,
        NotConnected
        | ConnectionRefusedError
        | socket.gaierror
        # A reply refusing the connection, the sender, the login or the message.
        | smtplib.SMTPResponseException,
    )


def taken_email_send(message: EmailMessage, *, give_back: Callable[[], object]) -> None:
    """Send an email to one reader, taken (claimed, in its own commit) before the
    provider is asked: the queue running its task again, a worker killed once it
    had handed the email over, finds it taken and sends no second copy. The claim
    is given back, for the task's retry, only when the provider clearly refused
    it; possibly taken, a second copy is worse than none."""
    try:
        message.send()
    except Exception as exc:
        if provider_refused(exc):
            give_back()
        raise


def retry_after(exc: BaseException) -> float | None:
    """The provider's Retry-After (seconds), on a 429 that carries one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to backoff
    if seconds is None:
        return None
    # Capped well below the broker's visibility timeout (6 hours), past which
    # Redis would hand the waiting task to a second worker.
    return min(seconds, MAX_RETRY_AFTER) + random.uniform(0, 1)


def _count_failure(mailing: Mailing, now: datetime) -> None:
    """One more failed attempt in a row; the Kth pauses the mailing for a cool-down."""
    failures = F("consecutive_failures") + 1
    Mailing.objects.filter(pk=mailing.pk).update(consecutive_failures=failures)
    Mailing.objects.filter(
        pk=mailing.pk,
        paused_at__isnull=True,
        consecutive_failures__gte=settings.NEWSLETTER_BREAKER_FAILURES,
    ).update(
        paused_at=now,
        resume_at=now + timedelta(seconds=settings.NEWSLETTER_BREAKER_COOLDOWN_SECONDS),
        pause_reason=(
            f"Paused after {settings.NEWSLETTER_BREAKER_FAILURES} failed attempts"
            " in a row; resumes by itself after the cool-down."
        ),
    )


def close_mailing_if_finished(mailing_id: int) -> None:
    """Mark a fully planned mailing done once none of its batches is waiting.

    Called by the planner, by the last batch, by the reaper and after the author
    settles an uncertain batch; whichever comes last closes it. The mailing's row
    is locked before its batches are read: the planner adding batches, or the
    author putting an uncertain batch back in the queue, holds that lock until
    committed, and this then waits and sees their batches. (One UPDATE checking
    the batches in its own snapshot closed a mailing whose batch was being put
    back meanwhile, and that batch's readers never got it.) Locked whatever its
    status: the planner's last step turns it from planning to sending, and a last
    batch finishing meanwhile, looking for a sending mailing, found none to wait
    for while the planner had not seen that batch done, and the mailing stayed
    open until the reaper came.
    """
    sending = Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.SENDING)
    unfinished = Batch.objects.filter(
        mailing_id=mailing_id, status__in=[Batch.Status.QUEUED, Batch.Status.SENDING]
    )
    with transaction.atomic():
        # The UPDATE reads after the lock, in a snapshot of its own.
        Mailing.objects.select_for_update().filter(pk=mailing_id).exists()
        sending.exclude(Exists(unfinished)).update(
            status=Mailing.Status.DONE, finished_at=timezone.now()
        )
