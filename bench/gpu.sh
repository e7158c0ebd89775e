#!/usr/bin/env bash
# The GPU path, measured in one go (not in CI; run it on a machine with an NVIDIA GPU and driver):
#   bash bench/gpu.sh [--slices 300] [--size 512]
# 1. installs the locked workspace into .venv-gpu with onnxruntime-gpu in place of onnxruntime
#    (the same install step as the inference image's gpu target: scripts/install.sh, --extra gpu);
# 2. checks that the CUDA provider is in the build and that every session of the engine runs on
#    it (bench/gpu_check.py; exits non-zero if one fell back to the CPU);
# 3. runs bench/inference.py and bench/e2e.py on CUDA and prints a short table of the figures.
# BENCH_GPU_PROVIDER=cpu runs the same steps on the CPU (a dry run of the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."
slices=300
size=512
while [ $# -gt 0 ]; do
  case "$1" in
    --slices) slices="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *) echo "usage: bash bench/gpu.sh [--slices N] [--size N]" >&2; exit 2 ;;
  esac
done
provider="${BENCH_GPU_PROVIDER:-cuda}"
venv=.venv-gpu
out="bench-out/gpu"
mkdir -p "$out"

if [ "$provider" = cpu ]; then
  bash scripts/install.sh "$venv" --locked --all-packages
else
  bash scripts/install.sh "$venv" --locked --all-packages --extra gpu --no-install-package onnxruntime
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
fi
py="$venv/bin/python"

"$py" bench/gpu_check.py --provider "$provider" | tee "$out/check.txt"
"$py" bench/inference.py --slices "$slices" --size "$size" --provider "$provider" | tee "$out/inference.txt"
PULMOGATE_EXECUTION_PROVIDER="$provider" "$py" bench/e2e.py --slices "$slices" --size "$size" \
  --studies 2 --encodings jpeg | tee "$out/e2e.txt"

gpu="$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || echo "no GPU")"
echo
echo "GPU path: $gpu, provider $provider, $slices x ${size}^2"
echo "figure                          value"
printf '%-31s %s\n' "analysis wall (bench/inference)" "$(awk '/^total /{print $2 " s"}' "$out/inference.txt")"
printf '%-31s %s\n' "peak RSS" "$(awk '/^peak RSS/{print $3 " MiB"}' "$out/inference.txt")"
awk '$1=="jpeg" && $2 ~ /^[0-9]+$/ {printf "%-31s %s s\n", "complete->analysed, study " $2, $4;
  printf "%-31s %s s\n", "complete->delivered, study " $2, $6}' "$out/e2e.txt"
echo "(full outputs in $out/)"
