#!/usr/bin/env bash
# Sets up everything litezoo needs on a fresh Debian machine; safe to run again (idempotent).
#   - Bazel 4 from Debian (bazel-bootstrap), and bazelisk from npm pointed at that local binary
#   - nginx, chromium and postgresql from Debian, for the remote-cache, Model Explorer and
#     remote-execution tests (integration tier)
#   - .venv, created from the hash-pinned requirements.lock (recreated when the lock changes)
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
log() { echo "setup: $*" >&2; }

# --- Bazel --------------------------------------------------------------------------------------
if ! command -v bazel-4 >/dev/null 2>&1; then
  log "installing Bazel 4 (Debian bazel-bootstrap)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bazel-bootstrap >/dev/null
fi
# nginx (WebDAV) serves as a Bazel remote cache in tests; chromium renders Model Explorer in tests;
# BuildGrid's scheduler keeps its queue in PostgreSQL (tests/remote_execution_test.py).
missing=""
[ -x /usr/sbin/nginx ] || missing="$missing nginx"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
BAZELISK_VERSION=1.28.1
if ! command -v bazelisk >/dev/null 2>&1; then
  # Its own prefix: a global npm install would also claim /usr/bin/bazel, which Debian owns.
  log "installing bazelisk ${BAZELISK_VERSION} (npm); .bazeliskrc points it at /usr/bin/bazel-4"
  $SUDO npm install --silent --prefix /usr/local/lib/bazelisk "@bazel/bazelisk@${BAZELISK_VERSION}"
  $SUDO ln -sfn /usr/local/lib/bazelisk/node_modules/.bin/bazelisk /usr/local/bin/bazelisk
fi

# --- Python venv from the lock file -------------------------------------------------------------
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
lock_sha=$(sha256sum requirements.lock | cut -d' ' -f1)
stamp=.venv/.requirements.lock.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sha" ] && .venv/bin/python -c "import litert_torch" 2>/dev/null; then
  log ".venv matches requirements.lock"
else
  log "creating .venv from requirements.lock (2 to 5 minutes)"
  rm -rf .venv
  "$PYTHON" -m venv .venv
  # Nothing is resolved here: every distribution is pinned by version and sha256.
  .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import litert_torch, torch, pluggy, transformers, tensorflow" 2>/dev/null \
    || { log "the new .venv does not import its packages; see pip's output above"; exit 1; }
  # Written last: an interrupted setup leaves no stamp, and the next run starts over.
  echo "$lock_sha" > "$stamp"
fi
log "ready: Bazel 4 ($(command -v bazel-4)), bazelisk, $(.venv/bin/python --version) in .venv"
