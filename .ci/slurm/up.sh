#!/usr/bin/env bash
# Stand up a real single-node SLURM cluster on localhost (Debian/Ubuntu: slurmctld, slurmd,
# slurm-client, munge; about 10 s once installed). Usage: .ci/slurm/up.sh [SCRATCH_DIR]
# Writes $SCRATCH/env (source it: SLURM_CONF, and PATH with the sacct stand-in of .ci/slurm/bin,
# since this cluster has no accounting database). Stop it with .ci/slurm/down.sh [SCRATCH_DIR].
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SCRATCH="${1:-/tmp/beniful-slurm}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || [ ! -x /usr/sbin/munged ]; then
  echo "== apt-get install slurmctld slurmd slurm-client munge"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

mkdir -p "$SCRATCH"/{state,spool,log}
# munge: the package made /etc/munge/munge.key; no systemd here, so start munged ourselves
$SUDO mkdir -p /run/munge
$SUDO chown munge:munge /run/munge
$SUDO chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  $SUDO runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# one node, the machine's own CPU shape (slurmd -C); no accounting; finished jobs stay listed an hour
SHAPE="$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ RealMemory=[0-9]*//')"
CONF="$SCRATCH/slurm.conf"
cat > "$CONF" <<CONF
ClusterName=beniful-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
NodeName=localhost NodeAddr=127.0.0.1 $SHAPE State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$CONF"
$SUDO env SLURM_CONF="$CONF" slurmctld -f "$CONF"
$SUDO env SLURM_CONF="$CONF" slurmd -f "$CONF" -N localhost
for _ in $(seq 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 0.2
done
sinfo
cat > "$SCRATCH/env" <<ENV
export SLURM_CONF="$CONF"
export PATH="$HERE/bin:\$PATH"
ENV
echo "== SLURM up: source $SCRATCH/env"
