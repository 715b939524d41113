"""A deploy's migrations replayed in a test: the database taken back to one
migration and forward again, over rows stored as the code before them stored them."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_again_after(app: str, migration: str) -> None:
    """Unapply what came after `app`'s `migration`, then apply every migration."""
    executor = MigrationExecutor(connection)
    # Every app's leaves: unapplying a posts migration unapplies the other apps'
    # migrations that depend on it (see test_comments).
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([(app, migration)])
    executor.loader.build_graph()
    executor.migrate(latest)
