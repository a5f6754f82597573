#!/usr/bin/env bash
# CI step: the smoke grid on one data set (cifar10) as real SLURM jobs on a single-node cluster on
# localhost, compared with the CSVs `make smoke` wrote earlier in the same CI run; about 5 min on 2 cores.
#   1. .ci/slurm/up.sh (slurmctld, slurmd, munge); stopped again on exit (trap, .ci/slurm/down.sh)
#   2. the slurm executor's own test against it (arrays, dependencies, a failure)
#   3. phases 0-1 (benchmarks, models) with a fresh cache; one model job is cancelled (scancel) in its
#      second epoch, so that phase reports one failure
#   4. make reproduce EXECUTOR=slurm PROFILE=smoke DATASET=cifar10: the rerun retries the killed model,
#      which resumes from its epoch checkpoint, then runs every notebook
#   5. the CSVs equal .cache/smoke/results/smoke/cifar10's (timings left out), and the killed model resumed
# Thread counts as in `make smoke`: everything on 1 torch thread. make smoke trains the models inside
# table1 and its prefetch kernel, both at BENIFUL_NUM_THREADS=1; a model trained on 2 threads sums its
# gradients in another order and ends elsewhere (the smoke models are near chance, so every table moves).
# Overrides: PY (python of the venv), REFERENCE, SMOKE_DATA, MAKE_ARGS (extra make arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
REFERENCE="${REFERENCE:-$PWD/.cache/smoke/results/smoke/cifar10}"
SMOKE_DATA="${SMOKE_DATA:-$PWD/.cache/smoke/data}"
MAKE_ARGS="${MAKE_ARGS:-}"
SCRATCH="$(mktemp -d /tmp/beniful-slurm.XXXXXX)"
trap '.ci/slurm/down.sh "$SCRATCH"' EXIT
T0=$(date +%s)

.ci/slurm/up.sh "$SCRATCH"
# shellcheck disable=SC1091
source "$SCRATCH/env"

echo "== slurm executor test"
BENIFUL_TEST_SLURM=1 "$PY" -m pytest -q tests/test_executors.py

[ -f "$SMOKE_DATA/cifar-10-batches-py/test_batch" ] || "$PY" tests/support/smoke_data.py "$SMOKE_DATA"
cat > "$SCRATCH/grid.toml" <<TOML
# the CI's settings: 30 min per job, 1 CPU (= 1 torch thread) per job, the models too (as in make smoke);
# one model job at a time, so that the first epoch checkpoint to appear is the running job's
time_min = 30
cpus_per_task = 1
[models]
cpus_per_task = 1
array_parallelism = 1
TOML
export BENIFUL_CACHE="$SCRATCH/cache" BENIFUL_RESULTS="$SCRATCH/results" BENIFUL_DATA="$SMOKE_DATA"
GRID=(--profile smoke --dataset cifar10 --config "$SCRATCH/grid.toml" --log-dir "$SCRATCH/grid"
      --runs-root "$SCRATCH/runs" --poll 2)

echo "== phases 0-1 on SLURM, one model job cancelled mid-training"
"$PY" -m beniful.grid --executor slurm "${GRID[@]}" --benchmarks --phases benchmarks,models &
GRID_PID=$!
KILLED=""
for _ in $(seq 3000); do  # 10 min at most
  JOB="$(squeue -h -t R -n beniful-models -o %i | head -1)"
  if [ -n "$JOB" ] && compgen -G "$BENIFUL_CACHE/checkpoint/*.safetensors" >/dev/null; then
    scancel "$JOB"; KILLED="$JOB"; echo "== cancelled job $JOB after its first epoch's checkpoint"; break
  fi
  kill -0 "$GRID_PID" 2>/dev/null || break
  sleep 0.2
done
if wait "$GRID_PID"; then RC=0; else RC=$?; fi
[ -n "$KILLED" ] || { echo "no model job was running with a checkpoint: nothing was cancelled" >&2; exit 1; }
[ "$RC" = 1 ] || { echo "the grid should report the cancelled job as failed (exit 1), got $RC" >&2; exit 1; }

echo "== make reproduce EXECUTOR=slurm PROFILE=smoke DATASET=cifar10 (retries the cancelled model)"
# shellcheck disable=SC2086
make --no-print-directory reproduce EXECUTOR=slurm PROFILE=smoke DATASET=cifar10 BENIFUL_CACHE="$BENIFUL_CACHE" \
  GRID_CONFIG="$SCRATCH/grid.toml" \
  GRID_OPTS="--benchmarks --no-book --log-dir $SCRATCH/grid --runs-root $SCRATCH/runs --poll 2" $MAKE_ARGS

echo "== every job, as SLURM lists them"
squeue --states=all -r -o '%.10i %.16j %.10T %.8M %R'
"$PY" - "$BENIFUL_CACHE" <<'PYCHECK'
import json, sys
from pathlib import Path
metas = [json.loads(p.read_text()) for p in Path(sys.argv[1], "model").glob("*.json")]
resumed = [m for m in metas if m.get("resumed_from_epoch", 0) > 0]
names = [(m["config"]["attack"] or {"name": "clean"})["name"] for m in resumed]
print(f"{len(metas)} models; resumed from an epoch checkpoint: {names} (epoch {[m['resumed_from_epoch'] for m in resumed]})")
assert len(resumed) == 1, "the cancelled model should have resumed from its epoch checkpoint"
PYCHECK
echo "== the tables against make smoke's ($REFERENCE)"
"$PY" .ci/compare_results.py "$REFERENCE" "$BENIFUL_RESULTS/smoke/cifar10"
echo "== SLURM smoke grid passed in $(( $(date +%s) - T0 )) s"
