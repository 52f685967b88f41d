#!/usr/bin/env bash
# The GPU check anyone can repeat, on one CUDA GPU: every GPU measurement the
# project quotes, in one run, into one summary.
#
# Usage: fine-tuning/benchmarks/gpu_check.sh [OUT_DIR] [--steps N] [--profiles "liger packing ..."]
#                                            [--only "profiles multi_gpu merge"] [--model DIR] [--cpu]
#                                            [--time-limit SECONDS]
#
#   profiles   the main config's bench (bench_gpu_training.py: 8B-shaped random model,
#              writer-sized data, peak memory at the longest example sequence_len
#              allows) and the speed profiles beside it, main first (--compare; all
#              unmeasured until this runs; --profiles picks some; default: all)
#   multi_gpu  multi_gpu.yaml with one process (FSDP through torchrun), same model
#   merge      the merge tests on CUDA (tests/test_merge.py)
# --only runs some of the three (a lease's command limit may need two calls);
# --model DIR keeps the random model there for the next call (default: OUT_DIR/model,
# deleted at the end); --cpu is a smoke run of the same script on CPU (tiny model,
# rehearsal config, the main profile unless --profiles names others; no multi_gpu:
# FSDP needs CUDA). --time-limit SECONDS stops the check after that long (a lease's
# command limit, less a margin): each step runs under what is left, a step cut short
# keeps the profiles it finished (the bench prints each as it ends), and a step with
# no time left is listed as not run.
# Writes OUT_DIR/summary.md (each step's command, exit status, minutes and figures;
# a second call into the same folder adds to it) and each step's full log beside it.
# Default OUT_DIR: gpu_check_<date>/.
#
# On a GPU machine with its own CUDA torch and no package index, the README's
# "On a GPU machine" says how to carry the wheels it lacks; there, run it as
#   STYLETUNE_PIN_EXCEPTIONS=torch fine-tuning/benchmarks/gpu_check.sh
# (the preflight then prints and records the torch that differs from the pin).
# Exit: 0 every step ran, 1 a step failed (the summary says which), 2 no GPU or a bad argument.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$(dirname "$HERE")")"
OUT="gpu_check_$(date +%Y%m%d_%H%M)"
STEPS=12
PROFILES=""      # default: every profile in bench_gpu_training.py (with --cpu: main alone)
ONLY="profiles multi_gpu merge"
MODEL=""         # default: OUT_DIR/model, deleted at the end; one named is kept
CPU=""
TIME_LIMIT=""    # seconds for the whole check; default: none
GRACE=45         # seconds a step stopped by --time-limit may take to end
value() {  # the option's value, or exit 2
  [ $# -ge 2 ] && [ -n "$2" ] || { echo "$1 needs a value (see --help)" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) value "$@"; STEPS="$2"; shift 2 ;;
    --profiles) value "$@"; PROFILES="$2"; shift 2 ;;
    --only) value "$@"; ONLY="$2"; shift 2 ;;
    --model) value "$@"; MODEL="$2"; shift 2 ;;
    --cpu) CPU=1; shift ;;
    --time-limit) value "$@"; TIME_LIMIT="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
case "$TIME_LIMIT" in ""|*[!0-9]*) [ -z "$TIME_LIMIT" ] || { echo "--time-limit: seconds, a whole number" >&2; exit 2; } ;; esac
DEADLINE=$(( $(date +%s) + ${TIME_LIMIT:-0} ))
for s in $ONLY; do
  case "$s" in profiles|multi_gpu|merge) ;; *) echo "--only: no step '$s' (profiles, multi_gpu, merge)" >&2; exit 2 ;; esac
done
PY="${PYTHON:-python3}"
if [ -z "$CPU" ] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "$PY sees no CUDA GPU (or cannot import torch; PYTHON=... names another): this check needs one" \
       "(a smoke run of the script on CPU: --cpu)" >&2
  exit 2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"   # the steps run from the repository root
SUMMARY="$OUT/summary.md"
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- GPU: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (--cpu smoke run)")')"
  echo "- torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
  # the kernels' compiler and the 4-bit library the image brought (no pin covers them there)
  echo "- triton $("$PY" -c 'import triton; print(triton.__version__)' 2>/dev/null || echo 'not installed')"
  echo "- bitsandbytes $("$PY" -c 'import bitsandbytes as b, bitsandbytes.cextension as c; print(b.__version__, c.lib._lib._name)' 2>/dev/null | tail -1 || echo 'not importable')"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- STYLETUNE_PIN_EXCEPTIONS: ${STYLETUNE_PIN_EXCEPTIONS:-none}"
  echo
} >> "$SUMMARY"   # a second call into the same folder adds its steps
failed=0

step() {  # name, then the command
  local name="$1"; shift
  local log="$OUT/$name.log" start end status left limit=()
  start=$(date +%s)
  if [ -n "$TIME_LIMIT" ]; then
    # what is left, less the grace a stopped step may take: torchrun gives its workers
    # (in sessions of their own, out of timeout's reach) 30 s to end before it kills them
    left=$(( DEADLINE - start - GRACE ))
    if [ "$left" -le 30 ]; then
      failed=1
      printf '## %s\n\nnot run: the --time-limit of %s s was spent\n\n' "$name" "$TIME_LIMIT" >> "$SUMMARY"
      echo "== $name: not run, no time left"
      return
    fi
    limit=(timeout --kill-after="$GRACE" "$left")   # the step's process group; torchrun ends its own
  fi
  echo "== $name: $*"
  (cd "$ROOT" && ${limit[@]+"${limit[@]}"} "$@") > "$log" 2>&1   # (an empty array under set -u: bash 4.3)
  status=$?
  case "$status" in 124|137) [ -z "$TIME_LIMIT" ] ||
    echo "(stopped by --time-limit: the figures above are the profiles it finished)" >> "$log" ;; esac
  end=$(date +%s)
  [ "$status" -eq 0 ] || failed=1
  {
    echo "## $name"
    echo
    echo "\`$*\` - exit $status, $(( (end - start + 30) / 60 )) min (log: \`$name.log\`)"
    echo
    echo '```'
    # the figures the steps print: bench lines, pytest's result line
    # (a profile's own lines only: a failed run's log tail is printed in the log too)
    grep -E '^(\[[a-z0-9-]+\] (tokens/s|peak GPU|longest example|loss|full run|FAILED)|data:|device:|[0-9]+ (passed|failed)|=+ .*(passed|failed))' "$log"
    [ "$status" -eq 0 ] || tail -15 "$log"
    echo '```'
    echo
  } >> "$SUMMARY"
}

# One random 8B-shaped model (~16 GB written), built by the first bench and reused by
# the next; the main config is the comparison's first profile, so it is built once too.
KEEP_MODEL=1
[ -n "$MODEL" ] || { MODEL="$OUT/model"; KEEP_MODEL=""; }
parent="$(mkdir -p "$(dirname "$MODEL")" && cd "$(dirname "$MODEL")" && pwd)" ||
  { echo "--model $MODEL: cannot make its folder" >&2; exit 2; }
MODEL="$parent/$(basename "$MODEL")"
BENCH=(env HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" fine-tuning/benchmarks/bench_gpu_training.py --steps "$STEPS"
       --model "$MODEL" ${CPU:+--shape tiny --cpu})
# Liger's and torch.compile's kernels need CUDA: on CPU the main profile alone, unless named
[ -n "$PROFILES" ] || { [ -n "$CPU" ] && PROFILES="main" || PROFILES="all"; }
if [ "$PROFILES" != all ]; then   # main first, once
  rest=""; for p in $PROFILES; do [ "$p" = main ] || rest="$rest $p"; done
  PROFILES="main$rest"
fi
runs() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# shellcheck disable=SC2086
runs profiles && step main_and_profiles "${BENCH[@]}" --compare $PROFILES
if runs multi_gpu && [ -n "$CPU" ]; then
  printf '## multi_gpu_one_process\n\nnot run: --cpu (FSDP needs CUDA)\n\n' >> "$SUMMARY"
elif runs multi_gpu; then
  step multi_gpu_one_process "${BENCH[@]}" --config configs/multi_gpu.yaml --gpus 1
fi
# only a model the bench built where this script chose (it refuses a folder holding anything else)
[ -z "$KEEP_MODEL" ] && [ -f "$MODEL/config.json" ] && rm -rf "$MODEL"
if runs merge; then
  step "merge_tests_$([ -n "$CPU" ] && echo cpu || echo cuda)" env HF_HUB_OFFLINE=1 "$PY" -m pytest tests/test_merge.py -q
fi
echo "summary: $SUMMARY"
exit $failed
