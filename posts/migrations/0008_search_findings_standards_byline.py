"""Search now covers the rest of what a post shows beside its text: its inspections'
key findings and the standards rated, and the byline (posts.search.search_facts).
Every post's stored facts are written again, and its search entry with them."""

from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import F, TextField, Value
from django.db.models.functions import Replace

# posts.search.post_search_vector() as it was when this migration was written.
SEARCH_CONFIG = "english_unaccent"
# Posts read at a time, each with its inspections, organisations and ratings.
BATCH_SIZE = 500


def _words(field: str) -> Replace:
    return Replace(F(field), Value("/"), Value(" "), output_field=TextField())


def _facts(post) -> str:
    """posts.search.search_facts as it was when this migration was written."""
    lines = []
    for inspection in post.inspections.all():
        lines.append(inspection.title)
        lines.append(inspection.inspectorate)
        if inspection.area:
            lines.append(f"{inspection.area.name}, {inspection.area.region.name}")
        for organisation in inspection.organisations.all():
            lines.append(organisation.name)
            lines.extend(owner.name for owner in organisation.owners.all())
        lines.extend(rating.standard for rating in inspection.ratings.all())
        lines.extend(line.strip() for line in inspection.key_findings.splitlines())
    if post.author:
        full_name = f"{post.author.first_name} {post.author.last_name}".strip()
        lines.append(full_name or post.author.username)
    return "\n".join(line for line in dict.fromkeys(lines) if line)


def reindex(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    db = schema_editor.connection.alias
    posts = (
        Post.objects.using(db)
        .select_related("author")
        .prefetch_related(
            "inspections__area__region",
            "inspections__organisations__owners",
            "inspections__ratings",
        )
        .order_by("id")
    )
    for post in posts.iterator(chunk_size=BATCH_SIZE):
        facts = _facts(post)
        if facts != post.search_facts:
            Post.objects.using(db).filter(pk=post.pk).update(search_facts=facts)
    if schema_editor.connection.vendor == "postgresql":
        Post.objects.using(db).update(
            search_vector=SearchVector(_words("title"), weight="A", config=SEARCH_CONFIG)
            + SearchVector(_words("search_facts"), weight="B", config=SEARCH_CONFIG)
            + SearchVector(_words("excerpt"), weight="B", config=SEARCH_CONFIG)
            + SearchVector(_words("body"), weight="C", config=SEARCH_CONFIG)
        )
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DELETE FROM posts_search")
        schema_editor.execute(
            "INSERT INTO posts_search (rowid, title, facts, excerpt, body) "
            "SELECT id, title, search_facts, excerpt, search_text FROM posts_post"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0007_search_folds_accents"),
    ]

    # Back, the entries keep the new facts: harmless, and found by more words.
    operations = [migrations.RunPython(reindex, migrations.RunPython.noop)]
