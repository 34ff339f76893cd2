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
for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; install it (Debian: apt-get install -y cmake g++)" >&2; exit 2; }
done

# GGML_NATIVE builds for what the CPU reports. Some VMs report AMX but fault on its tile
# instructions (SIGILL in ggml's AMX matmul): run one tile instruction first, and build without
# AMX where it faults.
EXTRA_FLAGS=""
if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  probe=$(mktemp -d)
  cat > "$probe/amx.c" <<'C'
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  unsigned char cfg[64];
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) return 1;
  memset(cfg, 0, sizeof cfg);
  cfg[0] = 1; cfg[16] = 64; cfg[48] = 16;  /* palette 1; tile 0: 16 rows of 64 bytes */
  _tile_loadconfig(cfg);
  _tile_zero(0);
  _tile_release();
  return 0;
}
C
  if ! { cc -O1 -mamx-tile "$probe/amx.c" -o "$probe/amx" 2>/dev/null && "$probe/amx"; } 2>/dev/null; then
    echo "this CPU reports AMX but its tile instructions fault here: building llama.cpp without AMX"
    EXTRA_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  fi
  rm -rf "$probe"
fi

have_all() { for t in $TARGETS; do [[ -x "$ROOT/bin/$t" ]] || return 1; done; }
if have_all && [[ -f "$ROOT/DONE" ]] && [[ "$(cat "$ROOT/DONE")" == "$EXTRA_FLAGS" ]]; then
  echo "llama.cpp $VERSION already built in $ROOT"
  exit 0
fi

mkdir -p "$ROOT"
cd "$ROOT"
rm -f DONE
if [[ -f "$ROOT/FLAGS" && "$(cat "$ROOT/FLAGS")" != "$EXTRA_FLAGS" ]]; then
  rm -rf build  # built for other CPU flags
fi
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
echo "$EXTRA_FLAGS" > FLAGS
cmake -S "$SRC" -B build -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DCMAKE_C_FLAGS="$EXTRA_FLAGS" -DCMAKE_CXX_FLAGS="$EXTRA_FLAGS" \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  >cmake.log
cmake --build build --target $TARGETS -j "$JOBS" >build.log
mkdir -p bin
for t in $TARGETS; do cp "build/bin/$t" bin/; done
# The shared libraries the tools link against live beside them.
find build/bin -maxdepth 1 -name '*.so*' -exec cp -P {} bin/ \;
ln -sfn "$SRC" llama.cpp
bin/llama-bench --help >/dev/null
echo "$EXTRA_FLAGS" > DONE
echo "built $ROOT/bin/llama-bench and llama-quantize; converter: $ROOT/llama.cpp/convert_hf_to_gguf.py"
