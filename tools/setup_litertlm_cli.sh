#!/usr/bin/env bash
# Opt-in: the `litert-lm` command line (LiteRT-LM 0.18.1, whose `litert-lm serve` is an
# OpenAI-compatible server) in a venv of its own, for tools/bench/serving.py. Every wheel is
# hash-pinned in tools/litertlm_cli.lock; nothing else is downloaded. Idempotent: a finished venv
# is reused. Seconds, not minutes.
#
#   tools/setup_litertlm_cli.sh         # into ~/.cache/litezoo/litert-lm-cli/0.18.1/
#   LITEZOO_CACHE=/some/dir tools/setup_litertlm_cli.sh
set -euo pipefail

VERSION=0.18.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${LITEZOO_CACHE:-$HOME/.cache/litezoo}/litert-lm-cli/$VERSION"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
LOCK="$HERE/tools/litertlm_cli.lock"
STAMP="$ROOT/DONE"

if [[ -x "$ROOT/venv/bin/litert-lm" && -f "$STAMP" ]] && cmp -s "$LOCK" "$STAMP"; then
  echo "litert-lm $VERSION already installed in $ROOT"
  exit 0
fi
rm -rf "$ROOT/venv"
mkdir -p "$ROOT"
"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$LOCK"
"$ROOT/venv/bin/litert-lm" --help >/dev/null
cp "$LOCK" "$STAMP"
echo "installed $ROOT/venv/bin/litert-lm"
