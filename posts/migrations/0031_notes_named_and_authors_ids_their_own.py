"""Post bodies rendered again where they now read otherwise: the notes at the end
are a list named "Notes" for screen readers, and an id in the author's own HTML
that a heading or a note has (or that the author wrote before) is dropped, and an
author's anchor (<a id="kent">, no link) has no rel, which HTML allows on links alone.

As 0030, whose step this is: the body as the code running renders it, and the
search entries of those whose words changed with it written again, by the search
vector's SQL frozen there."""

from importlib import import_module

from django.db import migrations

headings_named_and_footnotes = import_module(
    "posts.migrations.0030_headings_named_and_footnotes"
)


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0030_headings_named_and_footnotes"),
    ]

    # Back, the bodies keep their named notes: harmless to the code before.
    operations = [
        migrations.RunPython(
            headings_named_and_footnotes.rendered_again, migrations.RunPython.noop
        )
    ]
