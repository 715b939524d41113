import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from posts.management.commands.seed_demo import refuse_before_migrate

# Created by the roles migration (newsletter/migrations/0002_roles.py).
ADMINISTRATOR = "Administrator"


class Command(BaseCommand):
    help = (
        "Create the user 'admin', a superuser in the Administrator group, if missing. "
        "Its password is ADMIN_PASSWORD, or a generated one printed once."
    )

    @refuse_before_migrate
    @transaction.atomic
    def handle(self, *args, **options) -> None:
        User = get_user_model()
        # An empty ADMIN_PASSWORD (compose's ${ADMIN_PASSWORD:-}) is no password:
        # it must not set an unusable one while saying it came from the variable.
        password = os.environ.get("ADMIN_PASSWORD") or None
        user = User.objects.filter(username="admin").first()
        if password is not None:
            # create_superuser and set_password skip the validators the desk's
            # password forms apply; the one superuser must pass them too.
            try:
                validate_password(password, user or User(username="admin"))
            except ValidationError as error:
                raise CommandError(
                    "ADMIN_PASSWORD is refused, nothing changed: "
                    + " ".join(error.messages)
                ) from None
        if user is not None:
            # Deactivated, or made an ordinary user, in the desk: the login printed
            # below would fail, and this command is how the site's owner gets in.
            if not (user.is_active and user.is_staff and user.is_superuser):
                user.is_active = user.is_staff = user.is_superuser = True
                user.save(update_fields=["is_active", "is_staff", "is_superuser"])
                self.stdout.write(
                    "The admin was inactive or not a superuser: it is an active "
                    "superuser again."
                )
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
            user.groups.add(Group.objects.get(name=ADMINISTRATOR))
            self.stdout.write(
                "Admin login: admin / from ADMIN_PASSWORD"
                if password
                else "Admin login: admin (password as before; set ADMIN_PASSWORD to "
                "change)"
            )
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        # A superuser as well as an Administrator: only a superuser makes or changes
        # a superuser (admin/users.py), and the site's owner must be able to.
        user = User.objects.create_superuser("admin", "admin@localhost", password)
        user.groups.add(Group.objects.get(name=ADMINISTRATOR))
        shown = password if generated else "from ADMIN_PASSWORD"
        self.stdout.write(f"Admin login: admin / {shown}")
