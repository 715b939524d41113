"""Re-index the posts on PostgreSQL: posts.search.post_search_vector() now reads a
post's body as its page shows it (search_text), not as the author typed it, where
a note in an HTML comment found the post and a sentence quoted across a link did
not."""

from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import F, TextField, Value
from django.db.models.functions import Replace

# posts.search.post_search_vector() as it was when this migration was written.
SEARCH_CONFIG = "english_unaccent"


def _words(field: str) -> Replace:
    slashes = Replace(F(field), Value("/"), Value(" "), output_field=TextField())
    return Replace(slashes, Value("-"), Value(" "), output_field=TextField())


def reindex(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite's FTS5 index already holds search_text
    Post = apps.get_model("posts", "Post")
    Post.objects.using(schema_editor.connection.alias).update(
        search_vector=SearchVector(_words("title"), weight="A", config=SEARCH_CONFIG)
        + SearchVector(_words("search_facts"), weight="B", config=SEARCH_CONFIG)
        + SearchVector(_words("excerpt"), weight="B", config=SEARCH_CONFIG)
        + SearchVector(_words("search_text"), weight="C", config=SEARCH_CONFIG)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0018_ring_body_images_for_their_email_renditions"),
    ]

    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
