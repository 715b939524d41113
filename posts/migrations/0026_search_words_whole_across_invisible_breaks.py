"""A word with a soft hyphen (Word's optional hyphen), a zero-width space, a word
joiner or a byte order mark pasted into it was indexed as two ("rehabil" and
"itation"), and no search for it found the post: the search entries of the posts
holding one are written again without them (posts.search.INVISIBLE_IN_WORDS)."""

from functools import reduce
from operator import or_

from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import F, Q, TextField, Value
from django.db.models.functions import Replace

# posts.search as it was when this migration was written.
SEARCH_CONFIG = "english_unaccent"
INVISIBLE_IN_WORDS = "\u00ad\u200b\u2060\ufeff"
INDEXED = ["title", "search_facts", "excerpt", "search_text"]


def _indexed(field: str) -> Replace:
    text = F(field)
    for char in INVISIBLE_IN_WORDS:
        text = Replace(text, Value(char), output_field=TextField())
    return text


def _words(text: Replace) -> Replace:
    slashes = Replace(text, Value("/"), Value(" "), output_field=TextField())
    return Replace(slashes, Value("-"), Value(" "), output_field=TextField())


def reindex(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    holding_one = reduce(
        or_,
        (
            Q(**{f"{field}__contains": char})
            for field in INDEXED
            for char in INVISIBLE_IN_WORDS
        ),
    )
    posts = Post.objects.using(schema_editor.connection.alias).filter(holding_one)
    if schema_editor.connection.vendor == "postgresql":
        posts.update(
            search_vector=SearchVector(
                _words(_indexed("title")), weight="A", config=SEARCH_CONFIG
            )
            + SearchVector(
                _words(_indexed("search_facts")), weight="B", config=SEARCH_CONFIG
            )
            + SearchVector(_words(_indexed("excerpt")), weight="B", config=SEARCH_CONFIG)
            + SearchVector(
                _words(_indexed("search_text")), weight="C", config=SEARCH_CONFIG
            )
        )
    elif schema_editor.connection.vendor == "sqlite":
        entries = [
            (*entry[1:], entry[0])
            for entry in posts.values_list("id", *map(_indexed, INDEXED))
        ]
        with schema_editor.connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE posts_search SET title = %s, facts = %s, excerpt = %s, "
                "body = %s WHERE rowid = %s",
                entries,
            )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0025_sponsor_logo_beside_its_name"),
    ]

    # Back, the entries keep the words whole: harmless, and found by more words.
    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
