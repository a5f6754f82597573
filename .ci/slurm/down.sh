#!/usr/bin/env bash
# Stop the cluster of .ci/slurm/up.sh [SCRATCH_DIR]: slurmctld and slurmd (scontrol shutdown), then munged.
set -uo pipefail
SCRATCH="${1:-/tmp/beniful-slurm}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
alive() {  # pid file -> running (not a zombie) process
  local pid; pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}
if [ -f "$SCRATCH/slurm.conf" ]; then
  SLURM_CONF="$SCRATCH/slurm.conf" scancel --user="$(id -un)" 2>/dev/null || true
  SLURM_CONF="$SCRATCH/slurm.conf" scontrol shutdown 2>/dev/null || true
fi
for f in "$SCRATCH/slurmd.pid" "$SCRATCH/slurmctld.pid"; do
  for _ in $(seq 50); do alive "$f" || break; sleep 0.2; done
  if alive "$f"; then $SUDO kill "$(cat "$f")" 2>/dev/null || true; fi
done
if alive /run/munge/munged.pid; then $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
echo "== SLURM down"
