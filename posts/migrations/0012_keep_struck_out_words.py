from django.db import migrations

from posts.markdown import render_markdown


def struck_out_words_render(apps, schema_editor):
    # The sanitiser dropped the <s> Markdown makes of ~~words~~ and kept the
    # words: a rating corrected in place read as the old one and the new.
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.filter(body__contains="~~").only("body").iterator():
        Post.objects.filter(pk=post.pk).update(body_html=render_markdown(post.body))


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0011_remake_renditions_under_whole_names"),
    ]

    operations = [
        migrations.RunPython(struck_out_words_render, migrations.RunPython.noop),
    ]
