from itertools import chain

from django.db import migrations

from posts.tasks import make_renditions


def renditions_queue(apps, schema_editor):
    # Renditions were named without the original's extension, so photo.jpg and
    # photo.png shared theirs; they are named after the whole name now. Pages show
    # the originals until a worker has made them. The old files stay: post bodies
    # written before link to them.
    Post = apps.get_model("posts", "Post")
    PostImage = apps.get_model("posts", "PostImage")
    featured = Post.objects.exclude(featured_image="").values_list(
        "featured_image", flat=True
    )
    in_bodies = PostImage.objects.exclude(image="").values_list("image", flat=True)
    for name in chain(featured.iterator(), in_bodies.iterator()):
        make_renditions.delay(name)


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0010_search_words_across_hyphens"),
    ]

    operations = [
        migrations.RunPython(renditions_queue, migrations.RunPython.noop),
    ]
