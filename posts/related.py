"""Related posts: the author's curated links first, then computed suggestions.

A suggestion is scored on what two posts share: the organisations inspected, their
owners, the area and region, categories and tags, and a little on the words of their
titles and excerpts. The ranking is deterministic (score, then newer first, then id),
so the same content always gives the same suggestions.
"""

import re
from dataclasses import dataclass, field

from django.db.models import Case, Max, Prefetch, Q, When, prefetch_related_objects

from .models import Inspection, Post, RelatedLink

RELATED_BOX_SIZE = 3
# Only the newest candidates sharing something are scored, so a popular tag on a
# large archive costs a bounded amount of work.
MAX_CANDIDATES = 200

WEIGHT_ORGANISATION = 6
WEIGHT_AREA = 5
WEIGHT_OWNER = 4
WEIGHT_REGION = 2
WEIGHT_TAG = 2
WEIGHT_CATEGORY = 1
WEIGHT_TEXT = 10  # times the Jaccard similarity of the two posts' words

# fmt: off
_STOP_WORDS = frozenset({
    "about", "after", "also", "been", "but", "for", "from", "had", "has", "have",
    "into", "its", "more", "not", "once", "only", "our", "over", "than", "that", "the",
    "their", "them", "there", "they", "this", "was", "were", "what", "when", "which",
    "while", "with", "work", "would",
})
# fmt: on


@dataclass
class Suggestion:
    post: Post
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RelatedPost:
    post: Post
    label: str
    curated: bool


@dataclass(frozen=True)
class _Features:
    organisations: dict[int, str]
    owners: dict[int, str]
    areas: dict[int, str]
    regions: dict[int, str]
    categories: dict[int, str]
    tags: dict[int, str]
    words: frozenset[str]


def _features(post: Post) -> _Features:
    organisations, owners, areas, regions = {}, {}, {}, {}
    for inspection in post.inspections.all():
        if inspection.area:
            areas[inspection.area_id] = inspection.area.name
            regions[inspection.area.region_id] = inspection.area.region.name
        for organisation in inspection.organisations.all():
            organisations[organisation.pk] = organisation.name
            if organisation.kind == organisation.Kind.OWNER:
                owners[organisation.pk] = organisation.name
            owners.update((owner.pk, owner.name) for owner in organisation.owners.all())
    text = f"{post.title} {post.excerpt}".lower()
    return _Features(
        organisations=organisations,
        owners=owners,
        areas=areas,
        regions=regions,
        categories={c.pk: c.name for c in post.categories.all()},
        tags={t.pk: t.name for t in post.tags.all()},
        words=frozenset(
            w for w in re.findall(r"[a-z]{3,}", text) if w not in _STOP_WORDS
        ),
    )


def _what_scoring_reads() -> list:
    return [
        Prefetch(
            "inspections", queryset=Inspection.objects.select_related("area__region")
        ),
        "inspections__organisations__owners",
        "categories",
        "tags",
    ]


def with_features(queryset):
    """Prefetch what scoring reads, in a fixed number of queries."""
    return queryset.prefetch_related(*_what_scoring_reads())


def _score(mine: _Features, theirs: _Features, suggestion: Suggestion) -> None:
    def shared(kind: str, weight: float, a: dict, b: dict) -> None:
        common = sorted(b[key] for key in a.keys() & b.keys())
        if common:
            suggestion.score += weight * len(common)
            suggestion.reasons.append(f"{kind}: {', '.join(common)}")

    shared(
        "organisation", WEIGHT_ORGANISATION, mine.organisations, theirs.organisations
    )
    shared("owner", WEIGHT_OWNER, mine.owners, theirs.owners)
    shared("area", WEIGHT_AREA, mine.areas, theirs.areas)
    if not mine.areas.keys() & theirs.areas.keys():
        shared("region", WEIGHT_REGION, mine.regions, theirs.regions)
    shared("tag", WEIGHT_TAG, mine.tags, theirs.tags)
    shared("category", WEIGHT_CATEGORY, mine.categories, theirs.categories)
    if mine.words and theirs.words:
        overlap = len(mine.words & theirs.words) / len(mine.words | theirs.words)
        suggestion.score += round(WEIGHT_TEXT * overlap, 3)


def suggestions(
    post: Post, *, limit: int = 5, exclude_linked: bool = False
) -> list[Suggestion]:
    """Published posts most like this one, best first; never the post itself."""
    # Its own too: read an inspection at a time, each cost the author's page three
    # queries more.
    prefetch_related_objects([post], *_what_scoring_reads())
    mine = _features(post)
    shares_the_inspected = (
        Q(inspections__organisations__in=list(mine.organisations))
        | Q(inspections__organisations__in=list(mine.owners))
        | Q(inspections__organisations__owners__in=list(mine.owners))
        | Q(inspections__area__in=list(mine.areas))
    )
    shares_something = (
        shares_the_inspected
        | Q(inspections__area__region__in=list(mine.regions))
        | Q(categories__in=list(mine.categories))
        | Q(tags__in=list(mine.tags))
    )
    excluded = Q(pk=post.pk)
    if exclude_linked:
        excluded |= Q(links_in__from_post=post) | Q(links_out__to_post=post)
    candidate_ids = (
        Post.objects.published()
        .filter(shares_something)
        .exclude(excluded)
        .values("pk")
        .distinct()
    )
    candidates = with_features(
        Post.objects.filter(pk__in=candidate_ids)
        # Scoring reads titles and excerpts; the text columns are the heavy part.
        .defer(*Post.TEXT_FIELDS)
        # Those on the same organisations or area first: by date alone, the newest
        # posts sharing only a busy category or region filled the candidates, and
        # the same provider's earlier inspection, the best suggestion, went unscored.
        .order_by(
            Case(
                When(
                    pk__in=Post.objects.filter(shares_the_inspected).values("pk"),
                    then=0,
                ),
                default=1,
            ),
            "-published_at",
            "-id",
        )
    )[:MAX_CANDIDATES]
    scored = []
    for candidate in candidates:
        suggestion = Suggestion(post=candidate)
        _score(mine, _features(candidate), suggestion)
        if suggestion.score > 0:
            scored.append(suggestion)
    scored.sort(key=lambda s: (-s.score, -s.post.published_at.timestamp(), s.post.pk))
    return scored[:limit]


def related_posts(post: Post, *, size: int = RELATED_BOX_SIZE) -> list[RelatedPost]:
    """The post's "Related posts" box: curated links, then suggestions up to size.

    Curated links show in the author's order: those made on this post, then those made
    on other posts to this one with a symmetric type (same area, same theme, see also).
    """
    published = Post.objects.published()
    outgoing = (
        post.links_out.filter(to_post__in=published)
        .select_related("to_post")
        .order_by("order", "id")
    )
    incoming = (
        post.links_in.filter(
            from_post__in=published, type__in=RelatedLink.SYMMETRIC_TYPES
        )
        .select_related("from_post")
        .order_by("order", "id")
    )
    shown: dict[int, RelatedPost] = {}
    for link in outgoing:
        shown.setdefault(
            link.to_post_id, RelatedPost(link.to_post, link.get_type_display(), True)
        )
    for link in incoming:
        shown.setdefault(
            link.from_post_id,
            RelatedPost(link.from_post, link.get_type_display(), True),
        )
    shown.pop(post.pk, None)
    if len(shown) < size:
        for suggestion in suggestions(post, limit=size + len(shown)):
            if len(shown) >= size:
                break
            shown.setdefault(
                suggestion.post.pk,
                RelatedPost(suggestion.post, "You may also like", False),
            )
    return list(shown.values())


def related_link_add(*, from_post: Post, to_post_id: int) -> tuple[RelatedLink, bool]:
    """Link from_post to a published post, after the existing links (idempotent):
    the link, and whether it is new."""
    to_post = Post.objects.published().exclude(pk=from_post.pk).get(pk=to_post_id)
    same_area = (
        from_post.inspections.filter(area__isnull=False)
        .filter(area__inspections__post=to_post)
        .exists()
    )
    next_order = (from_post.links_out.aggregate(last=Max("order"))["last"] or 0) + 1
    return RelatedLink.objects.get_or_create(
        from_post=from_post,
        to_post=to_post,
        defaults={
            "type": RelatedLink.Type.SAME_AREA
            if same_area
            else RelatedLink.Type.SAME_THEME,
            "order": next_order,
        },
    )
