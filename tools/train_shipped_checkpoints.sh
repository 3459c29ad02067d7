#!/usr/bin/env bash
# Train the four shipped checkpoints into reid_model/weights/ and evaluate the re-identifiers on a
# freshly generated phantom test split (another seed: patients never seen in training).
#
#   bash tools/train_shipped_checkpoints.sh [RUNS_DIR]
#
# Sizes are environment variables so a CPU smoke run can shrink them (defaults: the shipped
# checkpoints, trained on one CUDA GPU with 16 CPU cores rendering phantoms).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
PATIENTS=${PATIENTS:-400}          # per dataset; 60% of them form the training split
AUX_PATIENTS=${AUX_PATIENTS:-150}  # MFM and diagnosis models need fewer
DIAG_DATASETS=${DIAG_DATASETS:-all}  # e.g. cxr_site_a,cxr_site_b,fundus: no volumes (CPU runs)
VISITS=${VISITS:-4}
EVAL_PATIENTS=${EVAL_PATIENTS:-1000}  # 20% test split: 200 test patients per dataset
EPOCHS=${EPOCHS:-}                 # empty: the preset's epochs
AUX_EPOCHS=${AUX_EPOCHS:-}
WORKERS=${WORKERS:-6}
PRESET=${PRESET:-demo}
DEID=${DEID:-python -m deid}
MODELS=${MODELS:-"phantom-mfm phantom-diagnosis attacker-demo mami-demo"}
mkdir -p "$RUNS"
echo "PATIENTS=$PATIENTS AUX_PATIENTS=$AUX_PATIENTS VISITS=$VISITS EVAL_PATIENTS=$EVAL_PATIENTS \
DIAG_DATASETS=$DIAG_DATASETS EPOCHS=$EPOCHS AUX_EPOCHS=$AUX_EPOCHS WORKERS=$WORKERS PRESET=$PRESET \
MODELS='$MODELS'" \
  > "$RUNS/settings.txt"
want() { [[ " $MODELS " == *" $1 "* ]]; }
epochs() { [ -n "$1" ] && echo "--epochs $1"; true; }
timed() {  # timed NAME CMD...: run CMD, log to RUNS/NAME.log, wall seconds to RUNS/NAME.seconds
  local name=$1 start=$SECONDS; shift
  "$@" > "$RUNS/$name.log" 2>&1
  echo $((SECONDS - start)) > "$RUNS/$name.seconds"
}

ship() {  # ship NAME: copy the final checkpoint of RUNS/NAME into the package
  rm -rf "reid_model/weights/$1"
  cp -r "$RUNS/$1/model" "reid_model/weights/$1"
}

# 1. The frozen phantom MFM (MaMI aligns with it) and the independent diagnosis model, in parallel
#    with the independent attacker (no MFM): none of them depends on another.
pids=()
want phantom-mfm && { timed phantom-mfm $DEID train --task mfm --preset "$PRESET" \
  --data "phantom:all:$AUX_PATIENTS:$VISITS:0" --out "$RUNS/phantom-mfm" --workers "$WORKERS" \
  $(epochs "$AUX_EPOCHS") --quiet & mfm=$!; }
want phantom-diagnosis && { timed phantom-diagnosis $DEID train --task diagnosis --preset "$PRESET" \
  --data "phantom:$DIAG_DATASETS:$AUX_PATIENTS:$VISITS:3" --out "$RUNS/phantom-diagnosis" --workers 2 \
  $(epochs "$AUX_EPOCHS") --quiet & pids+=("$!:phantom-diagnosis"); }
want attacker-demo && { timed attacker-demo $DEID train --preset attacker --data "phantom:all:$PATIENTS:$VISITS:1" \
  --seed 1 --out "$RUNS/attacker-demo" --workers "$WORKERS" $(epochs "$EPOCHS") --quiet &
  pids+=("$!:attacker-demo"); }

want phantom-mfm && { wait $mfm; ship phantom-mfm; }
# 2. MaMI with difference alignment to the phantom MFM just shipped.
want mami-demo && {
  timed mami-demo $DEID train --preset "$PRESET" --data "phantom:all:$PATIENTS:$VISITS:0" \
    --seed 0 --out "$RUNS/mami-demo" --workers "$WORKERS" $(epochs "$EPOCHS") --quiet
  ship mami-demo; }
for job in "${pids[@]}"; do wait "${job%%:*}"; ship "${job#*:}"; done

# 3. Fresh test split (seed 7: new patients) for both re-identifiers.
for name in mami-demo attacker-demo; do
  want $name || continue
  $DEID evaluate --checkpoint "reid_model/weights/$name" \
    --data "phantom:all:$EVAL_PATIENTS:3:7" --workers "$WORKERS" \
    --json "$RUNS/$name.eval.json" | tee "$RUNS/$name.eval.txt"
done

# 4. Model cards: data, preset, seed, the command above, hardware, time and metrics.
for name in $MODELS; do
  python tools/write_model_card.py "$name" "$RUNS" > "reid_model/weights/$name/MODEL_CARD.md"
done
