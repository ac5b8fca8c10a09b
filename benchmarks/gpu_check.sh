#!/usr/bin/env bash
# GPU checks, under 10 minutes on a machine with a CUDA GPU (the project itself never needs one):
#   1. fine-tuning MiniLM-L6 on Rotten Tomatoes, fp32 and bf16: encoderlab vs the HF Trainer vs a plain loop, MFU;
#   2. 2-GPU DDP (when two GPUs are present): the same run on 1 and on 2 devices, samples/s from summary.json;
#   3. BERT-base MLM pre-training in bf16: non-padding tokens/s and MFU, encoderlab vs the run_mlm-style baseline.
# Each step has its own time limit; a step that fails or times out is reported and the next one runs.
#
#     bash benchmarks/gpu_check.sh            # PYTHON=path/to/python to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch here; nothing to check (the CPU benchmarks are in benchmarks/*.py)."
    exit 0
fi
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(), "torch", torch.__version__)'
failed=0
step() {  # step SECONDS TITLE COMMAND...
    local limit=$1 title=$2
    shift 2
    echo
    echo "== $title (limit ${limit}s)"
    local t0=$SECONDS
    if timeout "$limit" "$@"; then
        echo "-- done in $((SECONDS - t0))s"
    else
        echo "-- FAILED or timed out (exit $?) after $((SECONDS - t0))s"
        failed=1
    fi
}

step 270 "1. fine-tuning on GPU: encoderlab vs HF Trainer vs plain loop (fp32 and bf16)" \
    "$PY" benchmarks/finetune_throughput.py --device cuda --steps 150 --frozen-steps-factor 4 --threads 4 \
    --rounds 1

if [ "$GPUS" -ge 2 ]; then
    OUT=$(mktemp -d)
    ddp() {  # ddp DEVICES
        "$PY" -m encoderlab.cli.train task.max_train_samples=null trainer.max_steps=150 precision=bf16-mixed \
            trainer.devices="$1" trainer.accelerator=gpu save_model=false callbacks.checkpoint=false \
            trainer.enable_progress_bar=false hydra.run.dir="$OUT/d$1" >/dev/null 2>&1
        "$PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); print(f"  {sys.argv[2]} device(s): status {s[\"status\"]}, {s.get(\"train_samples_per_second\")} samples/s per process, train {s.get(\"train_seconds\")}s, val {s.get(\"val\")}")' "$OUT/d$1/summary.json" "$1"
    }
    step 100 "2a. DDP reference: 1 GPU, 150 steps of batch 32, bf16" ddp 1
    step 130 "2b. DDP: 2 GPUs, 150 steps of batch 32 per GPU, bf16" ddp 2
    rm -rf "$OUT"
else
    echo
    echo "== 2. DDP: skipped, one GPU here"
fi

step 150 "3. BERT-base MLM pre-training, bf16: tokens/s and MFU" \
    "$PY" benchmarks/pretrain_throughput.py --size base --device cuda --precision bf16-mixed --steps 40 --rounds 1 \
    --batch-size 64 --max-seq-length 128 --quality-seconds 10

echo
[ "$failed" -eq 0 ] && echo "gpu_check: all steps finished" || echo "gpu_check: some steps failed (see above)"
exit "$failed"
