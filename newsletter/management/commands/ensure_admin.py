import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' if missing. Its password is ADMIN_PASSWORD, "
        "or a generated one printed once."
    )

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        password = os.environ.get("ADMIN_PASSWORD")
        user = User.objects.filter(username="admin").first()
        if user is not None:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(
                "Admin login: admin (password as before; set ADMIN_PASSWORD to change)"
            )
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        shown = password if generated else "from ADMIN_PASSWORD"
        self.stdout.write(f"Admin login: admin / {shown}")
