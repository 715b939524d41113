from django.dispatch import Signal

# Sent once per post, inside the transaction that makes it visible to readers
# (see posts.services.announce). Receivers get `post`; whatever they write commits or
# rolls back with the publication itself.
post_published = Signal()

# Sent when what readers see of a post's comments changes (a comment approved,
# hidden or deleted, comments closed), outside of a Post save. Receivers get no
# arguments beyond the sender.
comments_changed = Signal()
