#!/usr/bin/env bash
# Opt-in: installs ExecuTorch for tools/benchmark's `executorch` peer (tools/bench/executorch.py)
# into a venv of its own: the wheel links against libtorch and pins torch 2.13.0, torchao 0.18 and,
# on Linux x86, coremltools and hydra, which the project's .venv must not be asked to carry.
# Everything comes from the package registry by pinned version; the torch pin resolves to the CPU
# build where pip's configuration offers one (the machines here have it on disk), nothing is built.
# Idempotent: a finished install is reused. About 2 minutes; the venv is about 1.5 GB.
#
#   tools/setup_executorch.sh         # installs into ~/.cache/litezoo/executorch/<version>/venv
#   LITEZOO_CACHE=/some/dir tools/setup_executorch.sh
#
# The venv is built under a temporary name beside its place and renamed when it imports: a failed
# or interrupted run leaves nothing half-written where the peer looks. Its console scripts keep the
# temporary path in their first line: use `<version>/venv/bin/python -m ...`, as the peer does.
set -euo pipefail

VERSION=1.5.1
[[ -n "${LITEZOO_CACHE:-}" || -n "${HOME:-}" ]] || {
  echo "error: neither LITEZOO_CACHE nor HOME is set: set one (the install goes under it)" >&2; exit 2; }
PARENT="${LITEZOO_CACHE:-$HOME/.cache/litezoo}/executorch"
ROOT="$PARENT/$VERSION"
PYTHON="${PYTHON:-python3.11}"

# The wheel is cp311 only.
command -v "$PYTHON" >/dev/null 2>&1 || {
  echo "error: $PYTHON not found; ExecuTorch $VERSION ships cp311 wheels only: install Python 3.11 or set PYTHON=" >&2; exit 2; }
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
  echo "error: $PYTHON does not run (a pyenv shim without that version?); ExecuTorch $VERSION ships cp311 wheels only: set PYTHON= to a Python 3.11" >&2; exit 2; }
[[ "$pyver" == 3.11 ]] || {
  echo "error: $PYTHON is Python $pyver; ExecuTorch $VERSION ships cp311 wheels only: set PYTHON= to a Python 3.11" >&2; exit 2; }

check() {  # what the peer imports: the exporter, the runtime with XNNPACK, safetensors
  # torchao's import prints warnings about its CUDA kernels: shown only when the check fails.
  local out
  out=$("$1/venv/bin/python" - 2>&1 <<'PY'
import executorch.examples.models.llama.export_llama_lib  # noqa: F401
import safetensors  # noqa: F401
from executorch.extension.pybindings import portable_lib
assert portable_lib._is_available("XnnpackBackend"), "no XNNPACK backend in the runtime"
PY
) || { echo "$out" | tail -5 >&2; return 1; }
}

if [[ -f "$ROOT/DONE" ]] && check "$ROOT" 2>/dev/null; then
  echo "ExecuTorch $VERSION already installed in $ROOT"
  exit 0
fi

mkdir -p "$PARENT" 2>/dev/null || {
  echo "error: cannot create $PARENT (is LITEZOO_CACHE a file, or read-only?): point LITEZOO_CACHE at a writable directory" >&2; exit 2; }
TMP=$(mktemp -d "$PARENT/.$VERSION.partial.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Every distribution the install resolved to on 2026-12-01 (Python 3.11, Linux x86-64), pinned:
# a later run gets the same set. torch 2.13.0 is the CPU build where pip's configuration finds one
# (find-links here); PyPI's own torch 2.13.0 for Linux pulls the CUDA libraries too.
cat > "$TMP/requirements.txt" <<'PINS'
antlr4-python3-runtime==4.9.3
anyio==4.16.0
attrs==26.1.0
cattrs==26.2.1
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
coremltools==9.0
executorch==1.5.1
expecttest==0.3.0
filelock==4.3.1
flatbuffers==25.12.19
fsspec==2026.9.0
h11==0.16.0
hf-xet==1.8.0
httpcore2==2.16.2
httpx2==2.16.2
huggingface_hub==2.4.0
hydra-core==1.3.8
hypothesis==6.170.17
idna==3.20
Jinja2==3.1.6
joblib==1.6.0
kgb==7.3
MarkupSafe==3.0.4
mpmath==1.3.0
narwhals==2.29.0
networkx==3.6.1
numpy==2.4.6
omegaconf==2.3.1
packaging==26.4
pandas==3.1.1
parameterized==0.9.0
protobuf==7.36.2
py-cpuinfo==9.0.0
pyaml==26.7.0
python-dateutil==4.0.0
pytorch_tokenizers==1.5.0
PyYAML==6.0.4
regex==2026.11.19
requests==2.34.2
ruamel.yaml==0.19.1
safetensors==0.8.0
scikit-learn==1.9.1
scipy==1.17.1
sentencepiece==0.2.3
sortedcontainers==2.4.0
sympy==1.14.0
tabulate==0.10.0
threadpoolctl==3.8.0
tiktoken==0.14.0
tokenizers==0.23.3
torch==2.13.0
torchao==0.18.0
tqdm==4.70.1
truststore==0.10.5
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
PINS

echo "[1/3] creating the venv ($("$PYTHON" --version))"
"$PYTHON" -m venv "$TMP/venv"
echo "[2/3] installing executorch==$VERSION and its pinned dependencies (about 2 minutes)"
"$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$TMP/requirements.txt" "executorch==$VERSION" torch==2.13.0 torchao==0.18.0 \
  safetensors==0.8.0 numpy==2.4.6 2>&1 | grep -v "^WARNING: Location" || true
"$TMP/venv/bin/python" -c "import executorch" 2>/dev/null || {
  echo "error: pip did not install executorch==$VERSION (see its output above)" >&2; exit 1; }
if "$TMP/venv/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is None)"; then
  echo "note: pip installed a CUDA build of torch (no CPU build in its configuration); the peer runs on CPU either way"
fi

echo "[3/3] moving it into place and checking that it imports"
"$TMP/venv/bin/python" -m pip freeze --disable-pip-version-check > "$TMP/freeze.txt"
rm -rf "$ROOT"  # an earlier install without its DONE marker
mv "$TMP" "$ROOT"
trap 'rm -rf "$ROOT"' EXIT  # the check below failing leaves nothing behind either
check "$ROOT" || { echo "error: the ExecuTorch venv in $ROOT does not import (see above)" >&2; exit 1; }
echo "$VERSION" > "$ROOT/DONE"  # written last: the peer runs only on a finished install
trap - EXIT
echo "installed ExecuTorch $VERSION in $ROOT/venv"
