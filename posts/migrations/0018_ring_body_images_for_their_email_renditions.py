from datetime import timedelta

from django.db import migrations
from django.utils import timezone


def body_images_ring(apps, schema_editor):
    # Emails show a body image as a JPEG or PNG the email's column wide, made with
    # its renditions (posts.images.email_image): those uploaded before have none,
    # and go as uploaded until made. Rung as lost, beat rings them again a few at a
    # time (RENDITIONS_RUNG_PER_RUN), the broker up or not at the deploy, and
    # forgets at once those that need none. Featured images are in no email.
    PostImage = apps.get_model("posts", "PostImage")
    ImageToResize = apps.get_model("posts", "ImageToResize")
    long_ago = timezone.now() - timedelta(days=1)
    names = PostImage.objects.exclude(image="").values_list("image", flat=True)
    ImageToResize.objects.bulk_create(
        [ImageToResize(name=name, rung_at=long_ago) for name in names.distinct()],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0017_inspections_not_yet_reported_last"),
    ]

    operations = [
        migrations.RunPython(body_images_ring, migrations.RunPython.noop),
    ]
