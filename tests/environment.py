"""Loaded before Django's settings, as a plugin (pyproject.toml: -p tests.environment).

The suite imports the settings as `make run` does, with DJANGO_DEBUG=1 (the dev
secret key, static files from the source tree, no HTTPS redirect) unless the
environment says otherwise; pytest-django then runs each test with DEBUG off, as
production does. tests/test_production.py starts the production settings for real.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
