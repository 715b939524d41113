from django.db import migrations

from posts.comments.forms import percent_encoded_url


def percent_encode_websites(apps, schema_editor):
    # Stored as typed before, a website's < > " { | made its link invalid HTML on
    # the post page; the forms now store it encoded.
    Comment = apps.get_model("comments", "Comment")
    max_length = Comment._meta.get_field("website").max_length
    changed = []
    for comment in Comment.objects.exclude(website="").only("website").iterator():
        website = percent_encoded_url(comment.website)
        if website != comment.website:
            # Dropped if it no longer fits, not cut: cut, it would lead elsewhere.
            comment.website = website if len(website) <= max_length else ""
            changed.append(comment)
    Comment.objects.bulk_update(changed, ["website"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("comments", "0002_comment_marked_spam_at"),
    ]

    operations = [
        migrations.RunPython(percent_encode_websites, migrations.RunPython.noop),
    ]
