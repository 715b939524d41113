"""Re-index, on PostgreSQL, the posts with a full stop between a letter or digit and
a letter: its parser read "failed.Inspectors" (the full stop's space lost),
"St.Helens" and "www.justice.gov.uk" as a host name, one word, and no search for
either part found the post (posts.search._words now reads a space there)."""

from functools import reduce
from importlib import import_module
from operator import add, or_

from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import Func, Q, TextField, Value
from django.db.models.functions import Replace

# posts.search as it was when this migration was written.
previous = import_module("posts.migrations.0026_search_words_whole_across_invisible_breaks")
SEARCH_CONFIG = "english_unaccent"
FULL_STOP_BEFORE_A_LETTER = r"(?<=\w)\.(?=[[:alpha:]])"


def _words(text) -> Func:
    for char in "/-":
        text = Replace(text, Value(char), Value(" "), output_field=TextField())
    return Func(
        text,
        Value(FULL_STOP_BEFORE_A_LETTER),
        Value(" "),
        Value("g"),
        function="REGEXP_REPLACE",
        output_field=TextField(),
    )


def reindex(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite's FTS5 index already reads a full stop between two words
    Post = apps.get_model("posts", "Post")
    holding_one = reduce(
        or_,
        (
            Q(**{f"{field}__regex": FULL_STOP_BEFORE_A_LETTER})
            for field in previous.INDEXED
        ),
    )
    vector = [
        SearchVector(_words(previous._indexed(field)), weight=weight, config=SEARCH_CONFIG)
        for field, weight in zip(previous.INDEXED, "ABBC", strict=True)
    ]
    Post.objects.using(schema_editor.connection.alias).filter(holding_one).update(
        search_vector=reduce(add, vector)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0026_search_words_whole_across_invisible_breaks"),
    ]

    # Back, the entries keep the words apart: harmless, and found by more words.
    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
