from django.dispatch import Signal

# Sent when what readers see of a post's comments changes (a comment approved,
# edited, hidden or deleted, comments closed), outside of a Post save. Receivers
# get no arguments beyond the sender.
comments_changed = Signal()

# Sent once a new comment held for moderation is committed (comment_post, after
# its transaction; a caller's own outer transaction may still be open). Receivers
# get `comment`; the email service offers its commenter the link that proves the
# address (this app sends no email itself).
comment_held = Signal()
