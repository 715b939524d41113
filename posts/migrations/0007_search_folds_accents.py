"""Fold accents on PostgreSQL, as SQLite's FTS5 index (remove_diacritics) already
does: "mon" finds "Ynys Môn", "Môn" finds "Mon". A text search configuration that
is english with each word unaccented before it is stemmed, and the posts re-indexed
with it (posts.search.CONFIG)."""

from django.contrib.postgres.operations import UnaccentExtension
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import F, TextField, Value
from django.db.models.functions import Replace

# posts.search.post_search_vector() as it was when this migration was written, and
# the configuration it had before, to migrate back to.
SEARCH_CONFIG = "english_unaccent"
PREVIOUS_SEARCH_CONFIG = "english"


def _words(field: str) -> Replace:
    return Replace(F(field), Value("/"), Value(" "), output_field=TextField())


def _reindex(apps, schema_editor, config: str) -> None:
    Post = apps.get_model("posts", "Post")
    Post.objects.using(schema_editor.connection.alias).update(
        search_vector=SearchVector(_words("title"), weight="A", config=config)
        + SearchVector(_words("search_facts"), weight="B", config=config)
        + SearchVector(_words("excerpt"), weight="B", config=config)
        + SearchVector(_words("body"), weight="C", config=config)
    )


def fold_accents(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite's FTS5 index already removes diacritics
    # Only the token types that can hold a non-ASCII letter; ASCII words are stemmed
    # as before.
    schema_editor.execute(
        f"CREATE TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} (COPY = english)"
    )
    schema_editor.execute(
        f"ALTER TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} "
        "ALTER MAPPING FOR hword, hword_part, word WITH unaccent, english_stem"
    )
    _reindex(apps, schema_editor, SEARCH_CONFIG)


def keep_accents(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _reindex(apps, schema_editor, PREVIOUS_SEARCH_CONFIG)
    schema_editor.execute(f"DROP TEXT SEARCH CONFIGURATION {SEARCH_CONFIG}")


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0006_reject_control_characters"),
    ]

    # unaccent is a trusted extension (PostgreSQL 13+): the database's owner may
    # create it. A no-op on SQLite.
    operations = [
        UnaccentExtension(),
        migrations.RunPython(fold_accents, keep_accents),
    ]
