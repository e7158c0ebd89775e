#!/usr/bin/env bash
# Installs the system packages PulmoGate's tests use (real DICOM peers, fonts) and makes sure
# PostgreSQL and RabbitMQ are running. Debian/Ubuntu, as root (or with sudo).
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(dcmtk orthanc dicom3tools fonts-dejavu-core postgresql-client chromium)  # chromium: Playwright browser tests
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's orthanc package starts a system instance on 4242/8042; the tests start their own.
if pgrep -x Orthanc >/dev/null && [ -x /etc/init.d/orthanc ]; then $SUDO /etc/init.d/orthanc stop >/dev/null 2>&1 || true; fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  command -v rabbitmq-server >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
  $SUDO rabbitmq-server -detached
  for _ in $(seq 60); do (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
fi
echo "system dependencies ready"
