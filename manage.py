#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")
    # manage.py is the developer's entry point, so it runs in debug unless told
    # otherwise; the served site (gunicorn, celery) starts with debug off, and the
    # image pins DJANGO_DEBUG=0 for any manage.py run inside it.
    os.environ.setdefault("DJANGO_DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
