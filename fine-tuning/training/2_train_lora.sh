#!/usr/bin/env bash
# Stage 2: train the LoRA adapter with Axolotl (QLoRA on Llama-3.1-8B-Instruct).
#
# Usage: fine-tuning/training/2_train_lora.sh [--config FILE] [--gpus N] [--dry-run] [--resume] [-- AXOLOTL_ARGS...]
#
#   --config FILE  the shared YAML (default: fine-tuning/configs/qlora_style_transfer.yaml;
#                  configs/multi_gpu.yaml shards it over several GPUs with FSDP,
#                  configs/llama31_70b.yaml trains Llama 3.1 70B,
#                  configs/cpu_rehearsal.yaml rehearses the whole path on CPU)
#   --gpus N       train on N GPUs, one process each (default: every visible GPU);
#                  with the CPU rehearsal config, N CPU processes. Several processes
#                  start through Axolotl's own launcher: axolotl train CONFIG
#                  --launcher torchrun -- --standalone --nproc_per_node N
#   --dry-run      preflight checks and `axolotl preprocess` only; no training
#   --resume       continue from the newest checkpoint-N in output_dir after an
#                  interruption (with the same number of GPUs)
#   -h, --help     this text
#   anything else  passed to `axolotl train` (its own overrides, e.g. --learning-rate 1e-4)
#
# Reads:  stage 1's JSONL and manifest, the config, the base model.
# Writes: the adapter and checkpoints in the config's output_dir, logs in fine-tuning/logs/.
# Exit:   0 trained (or dry run passed), 2 usage or config error, 3 a preflight check
#         failed (the message says what to fix), 4 preprocessing failed, other: training
#         failed (see the log).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FT="$(dirname "$HERE")"
VENV="${VENV:-$HOME/.venvs/finetune}"
CONFIG="$FT/configs/qlora_style_transfer.yaml"
DRY_RUN=0
RESUME=0
GPUS=()
PASS=()

# --help prints the comment block at the top, whatever its length.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --config) [ $# -ge 2 ] || { echo "error: --config needs a file" >&2; exit 2; }; CONFIG="$2"; shift 2 ;;
    --config=*) CONFIG="${1#--config=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --resume) RESUME=1; shift ;;
    --gpus) [ $# -ge 2 ] || { echo "error: --gpus needs a number" >&2; exit 2; }; GPUS=(--gpus "$2"); shift 2 ;;
    --gpus=*) GPUS=(--gpus "${1#--gpus=}"); shift ;;
    --) shift; PASS+=("$@"); break ;;
    *) PASS+=("$1"); shift ;;
  esac
done

if [ ! -x "$VENV/bin/python" ] || [ ! -x "$VENV/bin/axolotl" ]; then
  echo "preflight failed: no virtual environment with Axolotl at $VENV: run \`make install\` (or set VENV=...)" >&2
  exit 3
fi
# Axolotl starts `accelerate` from PATH. Nothing about this run leaves the machine: the
# preflight's settings export every tracker off (styletune/privacy.py; a tracker you
# turned on yourself in this shell, WANDB_MODE=online, stays on), and each Python
# process Axolotl starts turns unset ones off (startup/sitecustomize.py).
export PATH="$VENV/bin:$PATH"

SETTINGS="$(mktemp)"
trap 'rm -f "$SETTINGS"' EXIT
RESUME_FLAG=()
[ "$RESUME" = 1 ] && RESUME_FLAG=(--resume)
"$VENV/bin/python" "$HERE/train_preflight.py" --config "$CONFIG" \
  --env-out "$SETTINGS" "${RESUME_FLAG[@]}" "${GPUS[@]}"
# shellcheck disable=SC1090
source "$SETTINGS"
[ -n "$LOCAL_MODEL" ] && export HF_HUB_OFFLINE=1
[ -n "$ACCELERATE_USE_CPU" ] && export ACCELERATE_USE_CPU
# On CPU, the threads each process may use (else the launcher gives it one).
[ -n "${OMP_NUM_THREADS:-}" ] && export OMP_NUM_THREADS

mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/train_$(date +%Y%m%d_%H%M%S).log"
echo "log: $LOG"
# Axolotl resolves the config's relative paths against its working directory. Its
# processes start as the stage scripts do (startup/sitecustomize.py: trackers off,
# no hub code, known-harmless warnings hidden); the rehearsal config's plugin
# (styletune.train.axolotl_plugin) comes from the package `make install` installed.
cd "$FT"
export PYTHONPATH="$HERE/startup${PYTHONPATH:+:$PYTHONPATH}"

echo "== axolotl preprocess"
if ! axolotl preprocess "$AXOLOTL_CONFIG" 2>&1 | tee -a "$LOG"; then
  echo "axolotl preprocess failed: read $LOG (the first error above names the cause)" >&2
  exit 4
fi
if [ "$DRY_RUN" = 1 ]; then
  echo "dry run: preflight and preprocess passed; nothing trained."
  exit 0
fi

echo "== axolotl train ($PROCESSES process(es): axolotl train ... ${LAUNCH[*]})"
EXTRA=()
[ -n "$RESUME_FROM" ] && EXTRA=(--resume-from-checkpoint "$RESUME_FROM") && echo "resuming from $RESUME_FROM"
set +e
axolotl train "$AXOLOTL_CONFIG" "${EXTRA[@]}" "${PASS[@]}" "${LAUNCH[@]}" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] || [ ! -f "$OUTPUT_DIR/adapter_model.safetensors" ]; then
  echo "training failed (exit $status): read $LOG; rerun with --resume to continue from the newest checkpoint" >&2
  exit $(( status == 0 ? 1 : status ))
fi
echo
echo "adapter: $OUTPUT_DIR"
echo "log:     $LOG"
echo "next:    merge it into the base model (stage 3, 3_merge_adapter.py --auto; see docs/stages.md)"
