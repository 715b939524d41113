"""Search now covers the post's categories and tags, its updates and corrections
as they read now, and its inspections' type when not local, all shown on its page
(posts.search.search_facts): the stored facts of the posts with any of them are
written again, and their search entries with them."""

from functools import reduce
from importlib import import_module
from operator import add

from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import Q

# posts.search as it was when this migration was written.
invisible = import_module(
    "posts.migrations.0026_search_words_whole_across_invisible_breaks"
)
full_stops = import_module("posts.migrations.0027_search_words_apart_at_a_full_stop")
SEARCH_CONFIG = "english_unaccent"
TYPE_NAMES = {"thematic": "Thematic", "joint": "Joint"}  # Inspection.Type, not local
# Posts read at a time, each with its inspections, categories, tags and updates.
BATCH_SIZE = 500


def _facts(post) -> str:
    """posts.search.search_facts as it was when this migration was written."""
    lines = []
    for inspection in post.inspections.all():
        lines.append(inspection.title)
        lines.append(inspection.inspectorate)
        if inspection.type in TYPE_NAMES:
            lines.append(f"{TYPE_NAMES[inspection.type]} inspection")
        if inspection.area:
            lines.append(f"{inspection.area.name}, {inspection.area.region.name}")
        for organisation in inspection.organisations.all():
            lines.append(organisation.name)
            lines.extend(owner.name for owner in organisation.owners.all())
        lines.extend(rating.standard for rating in inspection.ratings.all())
        lines.extend(line.strip() for line in inspection.key_findings.splitlines())
    if post.author:
        full_name = f"{post.author.first_name} {post.author.last_name}".strip()
        lines.append(full_name or post.author.username)
    lines.extend(category.name for category in post.categories.all())
    lines.extend(tag.name for tag in post.tags.all())
    for update in post.updates.all():
        lines.extend([update.right, update.note])
    return "\n".join(line for line in dict.fromkeys(lines) if line)


def search_vector():
    """The search vector's expression as posts.search built it when this
    migration was written (a later migration re-indexing posts uses it too)."""
    vector = [
        SearchVector(
            full_stops._words(invisible._indexed(field)),
            weight=weight,
            config=SEARCH_CONFIG,
        )
        for field, weight in zip(invisible.INDEXED, "ABBC", strict=True)
    ]
    return reduce(add, vector)


def reindex(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    posts = (
        Post.objects.using(schema_editor.connection.alias)
        .filter(
            Q(categories__isnull=False)
            | Q(tags__isnull=False)
            | Q(updates__isnull=False)
            | Q(inspections__type__in=TYPE_NAMES)
        )
        .distinct()
    )
    write_facts(schema_editor, posts, _facts)


def write_facts(schema_editor, posts, facts_of) -> None:
    """Write again the stored facts of those of these posts that facts_of reads
    otherwise, and their search entries (a later migration writing the facts
    again uses it too)."""
    stored = posts.model.objects.using(posts.db)
    posts = (
        posts.select_related("author")
        .prefetch_related(
            "inspections__area__region",
            "inspections__organisations__owners",
            "inspections__ratings",
            "categories",
            "tags",
            "updates",
        )
        .order_by("id")
    )
    changed = []
    for post in posts.iterator(chunk_size=BATCH_SIZE):
        facts = facts_of(post)
        if facts != post.search_facts:
            stored.filter(pk=post.pk).update(search_facts=facts)
            changed.append(post.pk)
    rewritten = stored.filter(pk__in=changed)
    if schema_editor.connection.vendor == "postgresql":
        rewritten.update(search_vector=search_vector())
    elif schema_editor.connection.vendor == "sqlite":
        facts = rewritten.values_list(invisible._indexed("search_facts"), "pk")
        with schema_editor.connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE posts_search SET facts = %s WHERE rowid = %s", list(facts)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0027_search_words_apart_at_a_full_stop"),
    ]

    # Back, the entries keep the new facts: harmless, and found by more words.
    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
