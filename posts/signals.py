from django.dispatch import Signal

# Sent once per post, inside the transaction that makes it visible to readers
# (see posts.services.announce). Receivers get `post`; whatever they write commits or
# rolls back with the publication itself.
post_published = Signal()

# Sent at the end of `manage.py seed_demo`, inside its transaction: newsletter
# gives the demo posts their readers and emails (posts knows nothing of email).
demo_loaded = Signal()
