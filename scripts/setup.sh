#!/usr/bin/env bash
# Creates .venv and installs every workspace member (editable) plus the dev tools.
# The same steps the container images and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q \
  -e libs/common \
  -e libs/tools \
  -e services/receiver \
  -e services/router \
  -e services/inference \
  -e services/sender \
  -e services/api \
  -e ".[dev]"
echo "PulmoGate installed in $(pwd)/.venv"
