#!/usr/bin/env bash
# Creates .venv with every workspace member (editable) and the dev tools, exactly as uv.lock pins
# them. The same install step (scripts/install.sh) CI and the container images use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh .venv --locked --all-packages
echo "PulmoGate installed in $(pwd)/.venv"
