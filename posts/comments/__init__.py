"""Readers' comments under posts: an app of its own, which imports the publication
(posts) and is never imported by it; newsletter sends its emails."""
