from django.db import migrations
from django.db.models import Q

from posts.markdown import render_markdown


def rendered_again(apps, schema_editor):
    # An address written out in a sentence ("The report: https://…") was bare
    # text: only the bodies that may hold one are rendered again.
    Post = apps.get_model("posts", "Post")
    written_out = Q(body__icontains="http") | Q(body__icontains="www.")
    for post in Post.objects.filter(written_out).only("body").iterator():
        Post.objects.filter(pk=post.pk).update(body_html=render_markdown(post.body))


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0028_search_categories_tags_corrections_and_inspection_type"),
    ]

    operations = [
        migrations.RunPython(rendered_again, migrations.RunPython.noop),
    ]
