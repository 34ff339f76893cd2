#!/usr/bin/env bash
# Opt-in: builds llama.cpp's llama-bench, llama-quantize, llama-perplexity, llama-tokenize and
# llama-server from source for tools/benchmark's llama.cpp peer, tools/evaluate's llama.cpp rows
# and the serving comparison. The source is the llama-cpp-python sdist from the package registry (it vendors
# llama.cpp), pinned by sha256; nothing prebuilt is downloaded. Idempotent: a finished build is
# reused. About 9 minutes on 2 cores. Needs cmake and a C++ compiler (Debian: cmake g++).
#
#   tools/setup_llamacpp.sh            # builds into ~/.cache/litezoo/llama.cpp/<version>/
#   LITEZOO_CACHE=/some/dir tools/setup_llamacpp.sh
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
ROOT="${LITEZOO_CACHE:-$HOME/.cache/litezoo}/llama.cpp/$VERSION"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
JOBS="${JOBS:-$(nproc)}"

TARGETS="llama-bench llama-quantize llama-perplexity llama-tokenize llama-server"
have_all() { for t in $TARGETS; do [[ -x "$ROOT/bin/$t" ]] || return 1; done; }
if have_all && [[ -f "$ROOT/DONE" ]]; then
  echo "llama.cpp $VERSION already built in $ROOT"
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; install it (Debian: apt-get install -y cmake g++)" >&2; exit 2; }
done

mkdir -p "$ROOT"
cd "$ROOT"
if [[ -f "$ROOT/src/vendor/llama.cpp/CMakeLists.txt" && -d "$ROOT/build" ]]; then
  echo "reusing unpacked source and build tree in $ROOT"
  SRC="$ROOT/src/vendor/llama.cpp"
else
echo "[1/3] fetching llama-cpp-python==$VERSION source (sha256 pinned)"
echo "llama-cpp-python==$VERSION --hash=sha256:$SHA256" > requirement.txt
# --require-hashes makes pip refuse any file whose sha256 differs from the pin.
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
  -r requirement.txt -d download
echo "$SHA256  download/llama_cpp_python-$VERSION.tar.gz" | sha256sum --check --quiet

echo "[2/3] unpacking"
rm -rf src && mkdir src
tar -xzf "download/llama_cpp_python-$VERSION.tar.gz" -C src --strip-components=1
SRC="$ROOT/src/vendor/llama.cpp"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "error: $SRC has no CMakeLists.txt" >&2; exit 2; }
fi

echo "[3/3] building $TARGETS with $JOBS jobs (about 9 minutes on 2 cores)"
cmake -S "$SRC" -B build -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  >cmake.log
cmake --build build --target $TARGETS -j "$JOBS" >build.log
mkdir -p bin
for t in $TARGETS; do cp "build/bin/$t" bin/; done
# The shared libraries the tools link against live beside them.
find build/bin -maxdepth 1 -name '*.so*' -exec cp -P {} bin/ \;
ln -sfn "$SRC" llama.cpp
bin/llama-bench --help >/dev/null
touch DONE
echo "built $ROOT/bin/llama-bench and llama-quantize; converter: $ROOT/llama.cpp/convert_hf_to_gguf.py"
