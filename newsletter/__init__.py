"""The newsletter service: settings and wiring, subscribers, sends and deliveries."""

from .celery import app as celery_app

__all__ = ["celery_app"]
