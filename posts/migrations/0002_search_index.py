"""The full-text index, per database: a GIN index over the stored tsvector on
PostgreSQL, an FTS5 table on SQLite over the posts' plain text (posts.search keeps
either current)."""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations

# posts.search.post_search_vector() as it was when this migration was written.
SEARCH_CONFIG = "english"
SEARCH_INDEX = GinIndex(fields=["search_vector"], name="post_search_idx")


def create_search_index(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    if schema_editor.connection.vendor == "postgresql":
        # Kept in the row (compressed) rather than in the TOAST table: ranking reads
        # the vector of every candidate, and a TOAST fetch each doubled that cost.
        schema_editor.execute(
            "ALTER TABLE posts_post ALTER COLUMN search_vector SET STORAGE MAIN"
        )
        schema_editor.add_index(Post, SEARCH_INDEX)
        Post.objects.using(schema_editor.connection.alias).update(
            search_vector=SearchVector("title", weight="A", config=SEARCH_CONFIG)
            + SearchVector("search_facts", weight="B", config=SEARCH_CONFIG)
            + SearchVector("excerpt", weight="B", config=SEARCH_CONFIG)
            + SearchVector("body", weight="C", config=SEARCH_CONFIG)
        )
    elif schema_editor.connection.vendor == "sqlite":
        # rowid is the post id; posts.search.index_post keeps the rows current.
        schema_editor.execute(
            "CREATE VIRTUAL TABLE posts_search USING fts5("
            "title, facts, excerpt, body, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        schema_editor.execute(
            "INSERT INTO posts_search (rowid, title, facts, excerpt, body) "
            "SELECT id, title, search_facts, excerpt, search_text FROM posts_post"
        )


def drop_search_index(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(Post, SEARCH_INDEX)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE posts_search")


class Migration(migrations.Migration):
    dependencies = [
        ('posts', '0001_initial'),
    ]

    operations = [migrations.RunPython(create_search_index, drop_search_index)]
