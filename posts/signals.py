from django.dispatch import Signal

# Sent once per post, inside the transaction that makes it visible to readers
# (posts.services.posts_announce_due). Receivers get `post`; whatever they write
# commits or rolls back with the publication itself.
post_published = Signal()

# Sent when a published post is taken off the site (back to draft or review), in
# the transaction that does it. Receivers get `post`.
post_unpublished = Signal()

# Sent when a post readers were told of, taken off the site since, is live again:
# published again at the desk, or at its scheduled time (by beat, as nobody saves
# it then), in the transaction that records it. post_published is sent once, but
# every page that shows posts changes, and an email held from its readers while it
# was off the site goes now. Receivers get `post`.
post_republished = Signal()

# Sent when what pages show with posts (a category's or a place's name, a
# sponsorship) is changed by a bulk update (QuerySet.update, bulk_update), which
# sends no post_save (models.ShownWithPostsQuerySet). Receivers get `sender`, the
# model.
shown_with_posts_changed = Signal()

# Sent by `manage.py seed_demo` once the demo posts exist, so that other apps add
# their own part of the demo (newsletter: readers and their history). Receivers get
# `posts`, the demo's own: the author's posts are no part of it.
demo_seeded = Signal()
