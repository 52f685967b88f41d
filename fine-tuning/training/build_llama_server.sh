#!/usr/bin/env bash
# Build llama.cpp's llama-server and llama-quantize (and keep its GGUF converter beside
# them) from the llama.cpp source that PyPI's llama-cpp-python sdist vendors. Used by
# stage 5's --gguf and --backend llamacpp (the k-quants, q6_K ... q2_K, are the
# converter's 16-bit GGUF put through llama-quantize), and by the real-server tests
# (make test).
#
#   fine-tuning/training/build_llama_server.sh DEST
#
# DEST (make uses $VENV/llama.cpp) receives:
#   DEST/bin/llama-server           the server, built for this machine's CPU
#   DEST/bin/llama-quantize         llama.cpp's quantiser (bf16 GGUF -> q4_K_M etc.)
#   DEST/src/convert_hf_to_gguf.py  the converter, with gguf-py beside it
#   DEST/VERSION                    the sdist it came from, and the build (no AMX kernels)
# The build takes 6-7 minutes on 2 cores (measured); it happens once per DEST. A DEST
# built before llama-quantize was added keeps its server: only the missing tool is built,
# which still compiles llama.cpp's libraries, most of the work (11 minutes measured on 2
# cores busy with other jobs).
# PyPI is the only place it reads from; nothing else is downloaded, at build or run time.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"   # pinned: its llama.cpp is the one tested
# What DEST/VERSION records: the sdist and how it was built, so a DEST built another
# way (an earlier script, with AMX) is rebuilt, not kept.
BUILD="$VERSION native-without-amx"
# ggml's AMX matrix kernels (compiled in by -march=native on a Xeon with AMX) crash
# llama-server with SIGSEGV on the first forward pass in these machines' VMs
# (ggml_backend_amx_mul_mat, measured 2026-12-04 on a Sapphire Rapids VM); the
# AVX-512 kernels serve the same models. Explicit -mno-amx-* win over -march=native.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
DEST="${1:?usage: build_llama_server.sh DEST}"
PY="${PY:-python3}"
JOBS="${JOBS:-$(nproc)}"

TOOLS=(llama-server llama-quantize)
# The tools this DEST lacks: all of them when it holds another version (or nothing).
MISSING=()
if [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$BUILD" ]; then
  for tool in "${TOOLS[@]}"; do
    [ -x "$DEST/bin/$tool" ] || MISSING+=("$tool")
  done
  KEEP=1
else
  MISSING=("${TOOLS[@]}")
  KEEP=0
fi
if [ "${#MISSING[@]}" -eq 0 ]; then
  echo "${TOOLS[*]} $VERSION already built in $DEST"
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to build llama-server (Debian: apt-get install cmake g++)" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

if [ "${MISSING[*]}" = llama-quantize ]; then
  TAKES="most of a full build: it needs llama.cpp's libraries too; 11 min measured on 2 busy cores"
else
  TAKES="6-7 min on 2 cores, once"
fi
echo "building ${MISSING[*]} from llama-cpp-python $VERSION's llama.cpp ($TAKES)"
# No curl: the server never fetches a model; static: the binary needs nothing beside it.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
  -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >"$WORK/cmake.log" \
  || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target "${MISSING[@]}" -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log" >&2; exit 1; }

# Install atomically: a half-copied DEST is never taken for a finished one.
STAGE="$DEST.partial"
rm -rf "$STAGE"
if [ "$KEEP" = 1 ]; then
  cp -a "$DEST" "$STAGE"          # same version: its tools stay, the missing ones join them
  rm -rf "$STAGE/src"
fi
mkdir -p "$STAGE/bin" "$STAGE/src"
for tool in "${MISSING[@]}"; do
  cp "$WORK/build/bin/$tool" "$STAGE/bin/"
done
# The converter script imports its `conversion` package and the `gguf` package beside it.
cp "$SRC/convert_hf_to_gguf.py" "$STAGE/src/"
cp -r "$SRC/conversion" "$SRC/gguf-py" "$STAGE/src/"
echo "$BUILD" > "$STAGE/VERSION"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "built ${MISSING[*]/#/$DEST/bin/}"
