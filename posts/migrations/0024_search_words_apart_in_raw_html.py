"""A post's stored text (search_text) ran the words of two cells, paragraphs or
lines of the author's raw HTML together ("<td>Kent</td><td>Surrey</td>" read
"KentSurrey"), and no search for either word found the post: it is written again
where it changed, and the posts' search entries with it."""

from importlib import import_module

from django.db import migrations

from posts.markdown import plain_text

# Re-indexes every post on PostgreSQL from its stored columns, as this one needs.
reindex_postgresql = import_module(
    "posts.migrations.0019_search_the_words_pages_show"
).reindex


def search_text_again(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    db = schema_editor.connection.alias
    # Every post: the author's raw HTML had words side by side, and the bodies
    # rendered again before this (0023) changed their text ("(c)" kept as typed).
    changed = []
    posts = Post.objects.using(db)
    for post in posts.only("body_html", "search_text").iterator():
        text = plain_text(post.body_html)
        if text != post.search_text:
            Post.objects.using(db).filter(pk=post.pk).update(search_text=text)
            changed.append((text, post.pk))
    if not changed:
        return
    if schema_editor.connection.vendor == "postgresql":
        reindex_postgresql(apps, schema_editor)
    elif schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE posts_search SET body = %s WHERE rowid = %s", changed
            )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0023_keep_the_authors_words_as_written"),
    ]

    # Back, the text keeps its words apart: harmless, and found by more words.
    operations = [migrations.RunPython(search_text_again, migrations.RunPython.noop)]
