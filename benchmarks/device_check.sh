#!/usr/bin/env bash
# The prepared device check (issue 31): on a lent GPU machine, inside its 15-minute budget,
#   1. `repro bench --device cuda` at the layer shapes of the targets (E8 / E64, every router,
#      auto / grouped_mm / bmm), CSV + PNG under $OUT/bench (about 3-5 min);
#   2. a gpu-scale smoke of the positive control: moe-vs-dense, arms dense and top2-e8, seed 0,
#      the gpu preset's model and recipe cut to 300 steps (about 2-4 min on an H100).
# The device image has torch, lightning, tokenizers, scipy, pyarrow but no mlflow / optuna /
# datasets and no network: step 2 needs them carried as wheels (benchmarks/device_wheels.sh
# fills .device-wheels/ here; carry it), and it trains on the shipped corpus unless the hub
# dataset (WikiText-103, the gpu preset's) is already in that machine's HF cache.
# Usage there (the device tool runs it in the repository root):
#   bash benchmarks/device_check.sh            # OUT defaults to ./device-out
set -u
OUT=${OUT:-./device-out}
mkdir -p "$OUT/bench"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "[device_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/device_check.log"; }

log "host $(hostname); $(nvidia-smi -L 2>/dev/null | head -1)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$OUT/device_check.log"

if [ -d .device-wheels ]; then
  log "installing carried wheels (.device-wheels)"
  $PY -m pip install -q --no-index --find-links .device-wheels mlflow-skinny sqlalchemy alembic \
      optuna optuna-integration datasets 2>&1 | tail -3 | tee -a "$OUT/device_check.log"
fi

log "1/2 repro bench --device cuda"
timeout 330 $PY -c "import sys; from repro.cli import main; sys.exit(main(sys.argv[1:]))" \
  bench --device cuda --dtype bfloat16 --experts 8,64 --backends auto,grouped_mm,bmm --reps 5 \
  --no-train --out "$OUT/bench" 2>&1 | tail -40 | tee -a "$OUT/device_check.log"
log "bench exit ${PIPESTATUS[0]}"

log "2/2 gpu-scale smoke of the positive control"
if ! $PY -c "import mlflow" 2>/dev/null; then
  log "skipped: mlflow is not installed here (carry .device-wheels, see benchmarks/device_wheels.sh)"
  exit 0
fi
DATA=()
if ! HF_HUB_OFFLINE=1 $PY -c "import datasets; datasets.load_dataset('Salesforce/wikitext', 'wikitext-103-raw-v1', revision='b08601e04326c79dfdd32d625aee71d232d685c3')" >/dev/null 2>&1; then
  log "the gpu preset's WikiText-103 is not in this machine's HF cache (no network): shipped corpus"
  DATA=(data.source=shakespeare data.hf_revision=none)
fi
export REPRO_HOME="$OUT/home" HF_HUB_OFFLINE=1
timeout 420 $PY -c "import sys; from repro.cli import main; sys.exit(main(sys.argv[1:]))" \
  run moe-vs-dense --scale gpu --arm dense,top2-e8 --seeds 0 --no-progress \
  --set train.max_steps=300 train.eval_every=100 train.warmup_steps=30 "${DATA[@]}" \
  2>&1 | tail -20 | tee -a "$OUT/device_check.log"
log "smoke exit ${PIPESTATUS[0]}"
cp "$OUT"/home/runs/mlflow.db "$OUT/mlflow.db" 2>/dev/null || true
