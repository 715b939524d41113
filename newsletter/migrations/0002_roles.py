"""The desk's three roles as groups holding exactly their permissions.

Lives in newsletter, not posts, because the roles reach both (posts never depends on
newsletter). Self-contained on purpose: it creates the permissions it hands out, so it
also runs on a fresh database, where Django would create them only after the last
migration (post_migrate).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.models import Q

CONTRIBUTOR = [
    # Their own posts only, and never published ones: posts.admin asks the model.
    "posts.add_post",
    "posts.change_post",
    "posts.delete_post",
    "posts.view_post",
    # What a post is made of, edited on the post's page.
    *(
        f"posts.{action}_{model}"
        for model in ("inspection", "standardrating", "relatedlink", "postimage")
        for action in ("add", "change", "delete", "view")
    ),
    # What a post is filed under and about: chosen, not edited.
    *(
        f"posts.view_{model}"
        for model in ("category", "tag", "region", "area", "organisation")
    ),
]

EDITOR = [
    *CONTRIBUTOR,
    "posts.review_post",
    "posts.publish_post",
    "posts.email_post",
    *(
        f"posts.{action}_{model}"
        for model in ("category", "tag", "region", "area", "organisation", "postupdate")
        for action in ("add", "change", "delete", "view")
    ),
    "posts.view_sponsorship",
    "comments.view_comment",
    "comments.change_comment",
    "comments.delete_comment",
    *(
        f"comments.{action}_postcommentsettings"
        for action in ("add", "change", "delete", "view")
    ),
    # Follows the emails of what they publish, and may pause or cancel one; readers,
    # the ledger and settling uncertain sends are the Administrator's.
    "newsletter.view_mailing",
    "newsletter.change_mailing",
    "newsletter.add_mailing",
    "newsletter.view_digestsettings",
    "newsletter.view_postreport",
]

ROLES = {"Contributor": CONTRIBUTOR, "Editor": EDITOR}


def create_roles(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # Historical app configs have no models module, which create_permissions
        # takes to mean "nothing to do".
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in ROLES.items():
        wanted = Q()
        for permission in permissions:
            app_label, codename = permission.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        found = Permission.objects.using(using).filter(wanted)
        missing = set(permissions) - {
            f"{app_label}.{codename}"
            for app_label, codename in found.values_list(
                "content_type__app_label", "codename"
            )
        }
        if missing:
            raise RuntimeError(f"The {name} role names missing permissions: {missing}")
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(found)
    administrator, _ = Group.objects.using(using).get_or_create(name="Administrator")
    administrator.permissions.set(Permission.objects.using(using).all())


def remove_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    names = [*ROLES, "Administrator"]
    Group.objects.using(schema_editor.connection.alias).filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ('posts', '0001_initial'),
        ('comments', '0001_initial'),
        ('newsletter', '0001_initial'),
        ('posts', '0002_search_index'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
