# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Where the site writes (newsletter/settings.py): make run's webhook secret too.
VAR_DIR ?= var

.PHONY: install run test lint load

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Web server, Celery worker and beat on the embedded defaults (or on the services
# named by DATABASE_URL / REDIS_URL), until Ctrl-C stops all three; so does any of
# them stopping (runserver on a port in use; polled, as macOS's bash 3 has no
# `wait -n`). The trap stops them once, and waits for them: `kill 0` signalled the
# shell itself too, whose trap ran again, thousands of times. Each of the three
# runs in a process group of its own (`set -m`): Ctrl-C, or a TERM to make's group,
# reaches the shell alone, which stops each one's main process (the worker's pool
# processes, signalled too, died holding the pool's lock, and the worker hung for
# good after "Warm shutdown").
run: export SITE_URL ?= http://127.0.0.1:$(PORT)
run: export DJANGO_DEBUG ?= 1
# The tracking webhook answers only with a secret: a development one is made once
# under VAR_DIR and kept, unless ANYMAIL_WEBHOOK_SECRET is set already (read in the
# recipe, once the file is made: read by make, it was missing on a first run).
run: install $(VAR_DIR)/webhook-secret
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py seed_demo
	@export ANYMAIL_WEBHOOK_SECRET="$${ANYMAIL_WEBHOOK_SECRET-$$(cat $(VAR_DIR)/webhook-secret)}"; \
	webhook=$$($(PY) manage.py shell --no-imports -c "from django.urls import reverse; \
	from newsletter.webhooks import tracking_provider; \
	print(reverse('tracking_webhook', kwargs={'esp': tracking_provider()}))" \
	2>/dev/null) && webhook="http://$$ANYMAIL_WEBHOOK_SECRET@127.0.0.1:$(PORT)$$webhook" \
	|| webhook="off (the admin's Events page says why)"; \
	stop() { trap '' INT TERM HUP; trap - EXIT; kill $$(jobs -p) 2>/dev/null; wait; }; \
	trap 'stop; echo "make run: stopped the web server, the worker and beat."; exit 0' \
	INT TERM HUP; \
	trap stop EXIT; \
	set -m; \
	$(VENV)/bin/celery -A newsletter worker --loglevel=$${LOG_LEVEL:-INFO} --concurrency=2 & worker=$$!; \
	$(VENV)/bin/celery -A newsletter beat --loglevel=$${LOG_LEVEL:-INFO} & beat=$$!; \
	$(PY) manage.py runserver --noreload 127.0.0.1:$(PORT) & site=$$!; \
	set +m; \
	sleep 2; \
	echo; \
	echo "  Site:   http://127.0.0.1:$(PORT)/"; \
	echo "  Admin:  http://127.0.0.1:$(PORT)/admin/  (login printed above)"; \
	echo "  Outbox: http://127.0.0.1:$(PORT)/outbox/  (every email the site sends)"; \
	echo "  Tracking webhook: $$webhook"; \
	echo "  Ctrl-C stops the web server, the worker and beat."; \
	echo; \
	while kill -0 $$worker && kill -0 $$beat && kill -0 $$site; do sleep 1; done 2>/dev/null; \
	echo "make run: one of the three stopped, so the others stop too." >&2; \
	exit 1

$(VAR_DIR)/webhook-secret:
	mkdir -p $(VAR_DIR)
	umask 077; $(PYTHON) -c "import secrets; print('dev:' + secrets.token_urlsafe(24))" > $@

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

# Load figures (benchmarks/load.py): gunicorn on the PostgreSQL and Redis named by
# DATABASE_URL and REDIS_URL, driven by wrk for a few seconds per page.
load: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m benchmarks.load

# Delivery engine figures, on PostgreSQL + Redis with real workers (see
# docs/performance.md): a post's send in batch and one-message modes and a daily
# digest round, each against a bare client replaying its requests. BENCH_DATABASE_URL
# / BENCH_REDIS_URL name the services; the database must be one named *bench* (it is
# emptied). `make bench ARGS=--full` for 1,000,000. `make chaos`: a post's send and a
# digest round through killed workers, a Redis restart and ESP faults.
.PHONY: bench chaos
bench: install
	$(PY) -m benchmarks.fanout $(ARGS)

chaos: install
	$(PY) -m benchmarks.chaos $(ARGS)

# Search figures (benchmarks/search.py): 10,000 posts on the PostgreSQL database
# BENCH_DATABASE_URL names (one named *bench*: it is emptied), searched through the view.
.PHONY: search-bench
search-bench: install
	$(PY) -m benchmarks.search $(ARGS)
