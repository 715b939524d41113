from django.db import migrations

from posts.markdown import render_markdown


def rendered_again(apps, schema_editor):
    # The typographer made "(c)" ©, "+-" ±, ".." an ellipsis and more in any
    # post's text, and a "#" heading was bare text: every body is rendered again.
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.only("body").iterator():
        Post.objects.filter(pk=post.pk).update(body_html=render_markdown(post.body))


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0022_uploads_under_a_random_folder"),
    ]

    operations = [
        migrations.RunPython(rendered_again, migrations.RunPython.noop),
    ]
