"""What is particular to corrections: who was sent a post's earlier text, and which
of them a correction reaches.

A reader was sent the earlier text when the ledger holds a delivery that carried
the post (its announcement, or a digest that held it) and was handed to the
provider before the correction was confirmed, or was being handed over then (a
batch renders the post when it is claimed), and did not bounce or get dropped
(the provider's latest word on it: the reader never had it). A delivery still
queued in a batch not yet claimed then carries the corrected post itself (the
sender renders the post as it is when a batch goes), so its reader needs no
correction. The post's own email
shows its updates (emails.post_email_context) from the moment one is saved: for
an announcement the cutoff is when the correction was last saved. A digest shows
only the post's summary: its readers are told up to the confirmation. A delivery
whose outcome is uncertain is the author's call (Mailing.include_uncertain); left
out, and settled as sent later, its reader is sent the correction then
(control.py).

Everything else (the one Mailing per correction, planning, batches, the claim,
retries, settling, the breaker and the budget) is the delivery engine's.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from posts.models import Post, PostUpdate

from .models import (
    Batch,
    Delivery,
    DeliveryQuerySet,
    Mailing,
    Subscriber,
    SubscriberQuerySet,
)


def sent_earlier(
    post: Post,
    *,
    before: datetime,
    include_uncertain: bool,
    update: PostUpdate | None = None,
) -> DeliveryQuerySet:
    """Deliveries that carried the post to a reader before `before`, and without
    `update`: the post's own email shows it from when it was saved."""
    carried = _carried_before(before, include_uncertain)
    if update is not None and update.saved_at is not None:
        # Saved again after its email was confirmed (its text then read-only),
        # the emails of the post between the two showed it all the same.
        shown_from = min(update.saved_at, before)
        announced = Q(mailing__kind=Mailing.Kind.POST)
        carried = (announced & _carried_before(shown_from, include_uncertain)) | (
            ~announced & carried
        )
    return Delivery.objects.carrying(post).filter(carried)


def _carried_before(before: datetime, include_uncertain: bool) -> Q:
    """Deliveries whose email was rendered, and handed over, before `before`."""
    # A batch renders its email when it is claimed, so a batch claimed before
    # `before` carried the earlier text, though the provider answered after it, or
    # is still answering (its readers still queued in the ledger): they were left
    # with the earlier text and no correction. Of those still being handed over,
    # one the provider refuses gets the corrected post on the retry, after this.
    rendered_before = Q(
        status=Delivery.Status.SENT, batch__claimed_at__lte=before
    ) | _being_handed_over(before)
    handed_over = Q(status=Delivery.Status.SENT, sent_at__lte=before) | rendered_before
    if include_uncertain:
        # Only a batch claimed before then may have carried the earlier text: one
        # claimed since rendered the corrected post, so its reader needs no
        # correction, whether or not the provider took it.
        handed_over |= Q(
            status=Delivery.Status.UNCERTAIN, batch__claimed_at__lte=before
        )
    # An email that bounced or was dropped never showed the reader the earlier
    # text: "we sent you this post" would be news to them.
    return handed_over & ~Delivery.NEVER_ARRIVED


def _being_handed_over(before: datetime) -> Q:
    """Still queued in a batch a worker claimed before `before`, which is handing
    its readers the text it rendered then."""
    return Q(
        status=Delivery.Status.QUEUED,
        batch__status=Batch.Status.SENDING,
        batch__claimed_at__lte=before,
    )


def sent_to_anyone(post: Post) -> bool:
    """Whether any reader may have the post in their inbox: one taken off the site
    since was still received."""
    return sent_earlier(post, before=timezone.now(), include_uncertain=True).exists()


def anyone_to_tell(update: PostUpdate) -> bool:
    """Whether a correction confirmed now would reach anyone: a reader still in
    the audience sent the post without it, or whose copy is uncertain (theirs, if
    the author includes them, or once it is settled as sent)."""
    deliveries = sent_earlier(
        update.post, before=timezone.now(), include_uncertain=True, update=update
    )
    return Subscriber.objects.confirmed().filter(_readers_of(deliveries)).exists()


def _readers_of(deliveries: DeliveryQuerySet) -> Exists:
    return Exists(deliveries.filter(subscriber=OuterRef("pk")))


def audience(mailing: Mailing) -> SubscriberQuerySet:
    """Who gets a correction: the readers sent the post's earlier text (not the
    post showing the correction) who are still in the audience (not unsubscribed,
    paused or suppressed since; an erased reader's ledger rows went with them)."""
    deliveries = sent_earlier(
        mailing.post,
        before=mailing.created_at,
        include_uncertain=mailing.include_uncertain,
        update=mailing.post_update,
    )
    return Subscriber.objects.confirmed().filter(_readers_of(deliveries))


def anyone_left_to_reach(mailing: Mailing) -> bool:
    """Whether a cancelled correction sent again would reach anyone: a reader
    still in its audience it has no row for (the cancel kept them from being
    planned), or one still to be handed it or skipped by the cancel."""
    reached = Delivery.objects.filter(mailing=mailing, subscriber=OuterRef("pk"))
    reached = reached.exclude(status=Delivery.Status.QUEUED).exclude(
        status=Delivery.Status.SKIPPED, error=Delivery.MAILING_CANCELLED
    )
    return audience(mailing).exclude(Exists(reached)).exists()


def readers_still_owed(mailing: Mailing, subscriber_ids: list[int]) -> set[int]:
    """Of these readers of a correction's batch, those the ledger does not say
    never had the post. Planned while a batch of the post was being handed over,
    the correction counted that batch's readers in; the ones it skipped or the
    provider refused never had it, nor those it left queued for its retry, which
    renders the corrected post, nor those whose email of it the provider has
    since reported bounced or dropped. (Not the audience asked again: a retry of
    that batch moves its claimed_at, and would drop the readers it sent before.)"""
    had_it = (
        Q(status__in=[Delivery.Status.SENT, Delivery.Status.UNCERTAIN])
        | _being_handed_over(mailing.created_at)
    ) & ~Delivery.NEVER_ARRIVED
    deliveries = Delivery.objects.carrying(mailing.post).filter(had_it)
    owed = Subscriber.objects.filter(_readers_of(deliveries), pk__in=subscriber_ids)
    return set(owed.values_list("pk", flat=True))


def emails_correcting_posts_in(*, batch_id: int) -> QuerySet[Mailing]:
    """The emails of the corrections to the posts a batch carried: its
    announcement's post, or those its digests held."""
    announced = Mailing.objects.filter(kind=Mailing.Kind.POST, batches=batch_id)
    held = Delivery.posts.through.objects.filter(delivery__batch_id=batch_id)
    return Mailing.objects.filter(
        Q(post__in=announced.values("post")) | Q(post__in=held.values("post")),
        kind=Mailing.Kind.CORRECTION,
    )


@dataclass(frozen=True)
class Reach:
    """What the author is shown before confirming a correction's email."""

    # Readers sent the post who will get the correction.
    readers: int
    # Readers still subscribed whose only copy of the post is uncertain.
    uncertain: int
    # Readers sent the post who will not get it, by why: (reason, count).
    left: list[tuple[str, int]]


_WHY_LEFT = {
    Subscriber.Status.UNSUBSCRIBED: "unsubscribed since",
    Subscriber.Status.BOUNCED: "suppressed: their address bounced",
    Subscriber.Status.COMPLAINED: "suppressed: they marked an email as spam",
    Subscriber.Status.SUPPRESSED: "suppressed by you",
}


def correction_reach(*, update: PostUpdate) -> Reach:
    """Who a correction to the post confirmed now would reach, and who not."""
    post, now = update.post, timezone.now()
    sent = _readers_of(
        sent_earlier(post, before=now, include_uncertain=False, update=update)
    )
    anyhow = _readers_of(
        sent_earlier(post, before=now, include_uncertain=True, update=update)
    )
    audience = Subscriber.objects.confirmed()
    readers = audience.filter(sent).count()
    uncertain = audience.filter(anyhow).exclude(sent).count()
    gone = Subscriber.objects.filter(anyhow).exclude(pk__in=audience.values("pk"))
    left = []
    received = _readers_of(sent_earlier(post, before=now, include_uncertain=True))
    if shown := audience.filter(received).exclude(anyhow).count():
        left.append(("their email of the post went after you saved it, with it", shown))
    never_arrived = _readers_of(
        Delivery.objects.carrying(post).filter(Delivery.NEVER_ARRIVED)
    )
    if bounced := audience.filter(never_arrived).exclude(anyhow).count():
        left.append(
            (
                "their email of the post never arrived (the provider reported it "
                "bounced or dropped)",
                bounced,
            )
        )
    paused = gone.filter(status=Subscriber.Status.ACTIVE).count()
    if paused:
        left.append(("paused their emails", paused))
    by_status = dict(
        gone.exclude(status=Subscriber.Status.ACTIVE)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for status, why in _WHY_LEFT.items():
        if by_status.get(status):
            left.append((why, by_status[status]))
    if erased := _erased(post):
        left.append(("erased their data (of the post's own email)", erased))
    return Reach(readers=readers, uncertain=uncertain, left=left)


def _erased(post: Post) -> int:
    """Readers the announcement was sent to who have since erased their data: their
    ledger rows went with them, but the batches' counters keep the count. (A digest
    batch holds many posts, so a digest's erased readers cannot be told apart.)"""
    announcement = Mailing.objects.filter(kind=Mailing.Kind.POST, post=post)
    counted = announcement.aggregate(n=Sum("batches__sent"))["n"] or 0
    remaining = Delivery.objects.filter(
        mailing__in=announcement, status=Delivery.Status.SENT
    ).count()
    return max(counted - remaining, 0)
