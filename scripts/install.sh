#!/usr/bin/env bash
# The one install step of PulmoGate: uv, at the version uv.lock pins, makes a virtual environment
# hold exactly what uv.lock says; the lock is never re-resolved here.
#   scripts/install.sh VENV --locked|--frozen [uv sync options]
# scripts/setup.sh (and so CI):  scripts/install.sh .venv --locked --all-packages
#   every workspace member editable, with the dev tools; --locked fails when uv.lock no longer
#   matches a pyproject.toml (run `uv lock`, README "Development").
# each image (deploy/docker):    scripts/install.sh /opt/pulmogate --frozen
#                                  --package pulmogate-<service> --no-dev --no-editable
#   --frozen: the build context holds only that service's members, so the lock is taken as is.
# Environment: PYTHON, the interpreter for VENV (default python3); UV_TOOL_VENV, where uv itself
# is installed (default VENV; the images keep it in the build stage only).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: scripts/install.sh VENV --locked|--frozen [uv sync options]"
venv="${1:?$usage}"
shift
case " $* " in
  *" --locked "* | *" --frozen "*) ;;
  *) echo "$usage (install from uv.lock, never a fresh resolution)" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
tool_venv="${UV_TOOL_VENV:-$venv}"

# uv itself, as uv.lock pins it: the version, and every hash of its files (pip checks them).
uv_requirement="$("$python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as lock:
    uv = next(p for p in tomllib.load(lock)["package"] if p["name"] == "uv")
files = [*uv.get("wheels", []), *([uv["sdist"]] if "sdist" in uv else [])]
print("uv==" + uv["version"], *("--hash=" + f["hash"] for f in files))
' "$root/uv.lock")"
uv_version="${uv_requirement%% *}"
uv_version="${uv_version#uv==}"

if [ ! -x "$tool_venv/bin/python" ]; then
  "$python" -m venv "$tool_venv"
fi
installed="$("$tool_venv/bin/uv" --version 2>/dev/null | cut -d' ' -f2 || true)"
if [ "$installed" != "$uv_version" ]; then
  echo "$uv_requirement" | "$tool_venv/bin/python" -m pip install -q \
    --disable-pip-version-check --require-hashes --only-binary uv -r /dev/stdin
fi

# Only this interpreter: uv neither downloads a Python nor picks another one.
export UV_PYTHON_DOWNLOADS=never
UV_PROJECT_ENVIRONMENT="$venv" "$tool_venv/bin/uv" sync \
  --project "$root" --python "$python" --quiet "$@"
