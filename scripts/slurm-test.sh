#!/usr/bin/env bash
# The experiment under a real scheduler: installs Debian's slurm-wlm and munge (as root), starts a
# one-node cluster on this machine (munged, slurmctld, slurmd, talking over 127.0.0.1; all three
# stopped by pid on exit), submits a tiny experiment from `intervene experiment --emit-slurm`
# (two seeds of base-pooled, cm-frozen and cm, CPU only), waits for it, and checks that every job
# completed, that each cm-frozen run started only after its base-pooled run finished, that no
# task polls, and that the table equals the same experiment run without Slurm.
# Usage: bash scripts/slurm-test.sh [path/to/intervene]  (default: the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
binary=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/intervene}
[[ -x $binary ]] || { echo "no intervene binary at $binary: build it with cargo build --release" >&2; exit 1; }
binary=$(realpath "$binary")

missing=()
for tool in sbatch slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing slurm-wlm's parts and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

work=$(mktemp -d /tmp/intervene-slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# munge: the key the package made, a socket of our own so nothing else on the machine is touched.
[[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
mkdir -p "$work/munge" && chown munge: "$work/munge"
runuser -u munge -- munged --socket="$work/munge/socket" --pid-file="$work/munge/pid" \
  --log-file="$work/munge/log" --seed-file="$work/munge/seed"
pids+=("$(cat "$work/munge/pid")")

host=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<EOF
ClusterName=intervene-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/filetxt
JobCompLoc=$work/jobcomp.log
MpiDefault=none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 50); do
  [[ -s $work/slurmctld.pid && -s $work/slurmd.pid ]] && sinfo -h -o %T 2>/dev/null | grep -q idle && break
  sleep 0.2
done
pids+=("$(cat "$work/slurmctld.pid")" "$(cat "$work/slurmd.pid")")
sinfo -h -o %T | grep -q idle || { echo "the one-node cluster did not come up:" >&2; tail -5 "$work"/slurm*.log >&2; exit 1; }
echo "one-node Slurm cluster up in $work ($cpus CPUs)"

# The tiny experiment, two tasks at a time. Without CPU binding (task/none) each task's thread
# pool still spans every core, as the local run's below does, so both add their floating-point
# sums in the same order and the tables can be compared exactly.
flags=(--budget quick --seeds 0,1 --methods base-pooled,cm-frozen,cm --epochs 1 --per-context 200
  --eval-samples 100)
"$binary" experiment "${flags[@]}" --slurm-gpus 0 --slurm-cpus 1 \
  --runs "$work/runs" --results "$work/results" --emit-slurm "$work/jobs"
if grep -E -n '\b(sleep|until|while)\b' "$work/jobs/task.sbatch" "$work/jobs/collect.sbatch"; then
  echo "FAIL: a task polls" >&2; exit 1
fi
started=$(date +%s)
bash "$work/jobs/submit.sh"
# The cm-frozen array waits on base-pooled's, task for task, in Slurm's own queue.
if ! squeue -h -o '%j %E' | grep -q 'aftercorr:'; then
  echo "FAIL: no task waits through an aftercorr dependency:" >&2; squeue -o '%i %j %T %E %r' >&2; exit 1
fi
deadline=$((started + 900))
while squeue -h | grep -q .; do
  (($(date +%s) < deadline)) || { echo "FAIL: jobs still queued after 15 minutes" >&2; squeue >&2; exit 1; }
  sleep 2
done
echo "every job left the queue after $(($(date +%s) - started)) s"

jobs=$(grep -c JobId= "$work/jobcomp.log")
failed=$(grep JobId= "$work/jobcomp.log" | grep -vc 'JobState=COMPLETED' || true)
# 2 base-pooled + 2 cm-frozen + 2 cm array tasks and the collect job.
if ((jobs != 7 || failed != 0)); then
  echo "FAIL: $jobs jobs recorded (7 expected), $failed not completed:" >&2
  cat "$work/jobcomp.log" >&2; cat "$work"/jobs/*.log >&2; exit 1
fi
for seed in 0 1; do
  run=$(ls -d "$work"/runs/quad-dependent/quick-*/seed$seed)
  if ! [[ $run/cm-frozen/config.json -nt $run/base-pooled/metrics.json ]]; then
    echo "FAIL: cm-frozen seed $seed started before its base-pooled run finished" >&2; exit 1
  fi
done

"$binary" experiment "${flags[@]}" --device flex --runs "$work/local-runs" \
  --results "$work/local-results" >/dev/null 2>"$work/local.log"
if ! diff "$work/results/quad-dependent/table.csv" "$work/local-results/quad-dependent/table.csv"; then
  echo "FAIL: the table from Slurm differs from the local run's" >&2; exit 1
fi
echo "PASS: 7 jobs completed, cm-frozen after base-pooled by aftercorr, no polling, table equals the local run's ($(($(date +%s) - started)) s)"
rm -rf "$work"
