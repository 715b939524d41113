from django.db import migrations

from posts.markdown import render_markdown


def tables_boxed(apps, schema_editor):
    # A table of many columns was as wide as its words, and a phone zoomed the
    # whole post out to fit it: each table now scrolls in a box of its own.
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.filter(body_html__contains="<table>").only("body"):
        Post.objects.filter(pk=post.pk).update(body_html=render_markdown(post.body))


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0012_keep_struck_out_words"),
    ]

    operations = [
        migrations.RunPython(tables_boxed, migrations.RunPython.noop),
    ]
