from django.db import migrations
from django.db.models import Q

from posts.markdown import render_markdown


def rendered_again(apps, schema_editor):
    # A table's alignment (|--:|) was dropped, and raw HTML kept values that made
    # the page invalid (width="50%", start="abc"): tables are Markdown's "|", raw
    # HTML its "<".
    Post = apps.get_model("posts", "Post")
    posts = Post.objects.filter(Q(body__contains="|") | Q(body__contains="<"))
    for post in posts.only("body").iterator():
        Post.objects.filter(pk=post.pk).update(body_html=render_markdown(post.body))


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0019_search_the_words_pages_show"),
    ]

    operations = [
        migrations.RunPython(rendered_again, migrations.RunPython.noop),
    ]
