#!/usr/bin/env bash
# Sets up everything (system packages, PostgreSQL, RabbitMQ, the virtualenv) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
# Three workers, one test module each (module fixtures hold a module's database, vhost and
# gateway; every server a test stops or restarts is its own): the suite waits on subprocesses
# and peers as much as it computes, so on two cores three workers keep them busier than two
# (7.5 min against 9 min on one machine, 2026-12-01; one worker takes about 20).
# PULMOGATE_TEST_WORKERS=0 runs everything in this process.
exec python -m pytest -q -p no:cacheprovider -n "${PULMOGATE_TEST_WORKERS:-3}" --dist loadfile "$@"
