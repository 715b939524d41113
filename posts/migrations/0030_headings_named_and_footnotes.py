"""Post bodies rendered again where they now read otherwise: each heading has an
id, for the author's "[Findings](#findings)" to go to, and footnotes ("[^1]") are
notes at the end, not the signs typed. The search entries of those whose words
changed with them (a footnote, no longer "[^1]: …") are written again.

render_markdown and plain_text are called as they are, as the earlier re-render
migrations (0013, 0020, 0023, 0029) call them: a body's HTML and its words are
by definition what the code running makes of the body, so a later renderer run
here makes what that later code wants. The search vector's SQL, which must match
the queries of the code this migration shipped with, is 0028's, frozen there."""

from importlib import import_module

from django.db import migrations

from posts.markdown import plain_text, render_markdown

# posts.search as it was when this migration was written.
invisible = import_module(
    "posts.migrations.0026_search_words_whole_across_invisible_breaks"
)
indexing = import_module(
    "posts.migrations.0028_search_categories_tags_corrections_and_inspection_type"
)
# Posts read at a time, each with its body twice (as written and as rendered).
BATCH_SIZE = 500


def rendered_again(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    posts = Post.objects.using(schema_editor.connection.alias)
    words_changed = []
    stored = posts.only("body", "body_html", "search_text").order_by("id")
    for post in stored.iterator(chunk_size=BATCH_SIZE):
        body_html = render_markdown(post.body)
        if body_html == post.body_html:
            continue
        text = plain_text(body_html)
        posts.filter(pk=post.pk).update(body_html=body_html, search_text=text)
        if text != post.search_text:
            words_changed.append(post.pk)
    if not words_changed:
        return
    rewritten = posts.filter(pk__in=words_changed)
    if schema_editor.connection.vendor == "postgresql":
        rewritten.update(search_vector=indexing.search_vector())
    elif schema_editor.connection.vendor == "sqlite":
        texts = rewritten.values_list(invisible._indexed("search_text"), "pk")
        with schema_editor.connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE posts_search SET body = %s WHERE rowid = %s", list(texts)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0029_web_addresses_written_out_as_links"),
    ]

    # Back, the bodies keep their ids and notes: harmless to the code before.
    operations = [migrations.RunPython(rendered_again, migrations.RunPython.noop)]
