#!/usr/bin/env bash
# Sets up everything (system packages, PostgreSQL, RabbitMQ, the virtualenv) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
exec python -m pytest -q -p no:cacheprovider "$@"
