#!/usr/bin/env bash
# Train the shipped checkpoints on a CUDA machine that has no package registry, in one command,
# and pack what comes back into parts small enough to copy off it.
#
#   bash tools/device_train.sh OUT_DIR
#
# Wheels the machine lacks (pydicom, kornia, open_clip_torch and their needs, for Python 3.12)
# are expected in .whl/ and installed into /tmp/site. Training is tools/train_shipped_checkpoints.sh
# at its GPU sizes (override them as environment variables), stopped after BUDGET_S seconds so
# that the packing still runs. OUT_DIR receives gpu.txt, train.log, speed.md (the `paper`
# preset's embedding and training speed) and results.tgz.part-* (15 MiB each); join those here
# with `cat results.tgz.part-* | tar xzf -`, which restores reid_model/weights/ and runs/device/
# (logs, histories, evaluations; the weights only once).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash tools/device_train.sh OUT_DIR}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
WORKERS=${WORKERS:-14} timeout "${BUDGET_S:-450}" bash tools/train_shipped_checkpoints.sh \
  runs/device > "$OUT/train.log" 2>&1
echo "train_shipped_checkpoints.sh exit status: $? (124: stopped at BUDGET_S)" >> "$OUT/train.log"
for bench in "embed_speed.py --batch 256" "train_speed.py --p 64 --k 4"; do
  timeout 60 python benchmarks/$bench --preset paper --device cuda --append "$OUT/speed.md" \
    >> "$OUT/train.log" 2>&1
done
tar czf /tmp/device-results.tgz --exclude='runs/device/*/epochs' --exclude='runs/device/*/model' \
  reid_model/weights runs/device
split -b 15m /tmp/device-results.tgz "$OUT/results.tgz.part-"
ls -l "$OUT" >> "$OUT/train.log"
