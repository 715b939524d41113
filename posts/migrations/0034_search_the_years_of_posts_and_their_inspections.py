"""Search finds a post by the years of its inspections' fieldwork and reports and
of its publication ("Durham 2019"), words at the end of its stored facts
(posts.search.search_facts): the facts of every post with one are written again,
and their search entries with them."""

from importlib import import_module

from django.db import migrations
from django.db.models import Q
from django.utils import timezone

# posts.search as it was when this migration was written: 0028's facts, then the
# years.
indexing = import_module(
    "posts.migrations.0028_search_categories_tags_corrections_and_inspection_type"
)


def _facts(post) -> str:
    """posts.search.search_facts as it was when this migration was written."""
    days = [timezone.localdate(post.published_at)] if post.published_at else []
    for inspection in post.inspections.all():
        days += [inspection.fieldwork_start, inspection.fieldwork_end]
        days.append(inspection.published_on)
    lines = indexing._facts(post).split("\n")
    lines.extend(str(year) for year in sorted({day.year for day in days if day}))
    return "\n".join(line for line in dict.fromkeys(lines) if line)


def reindex(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    dated = (
        Q(published_at__isnull=False)
        | Q(inspections__fieldwork_start__isnull=False)
        | Q(inspections__fieldwork_end__isnull=False)
        | Q(inspections__published_on__isnull=False)
    )
    posts = (
        Post.objects.using(schema_editor.connection.alias)
        .filter(pk__in=Post.objects.filter(dated).values("pk"))
        # Not read here, and the bulk of a post's row.
        .defer("body", "body_html", "search_text", "search_vector")
    )
    indexing.write_facts(schema_editor, posts, _facts)


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0033_category_saved_at"),
    ]

    # Back, the entries keep their years: harmless, and found by more words.
    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
