#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm 22.05) on 127.0.0.1, for tests and CI. Run as root; idempotent.
#
#   bash .ci/slurm.sh            # install (if needed), configure, start, wait until a job runs
#
# No systemd here: munged, slurmctld and slurmd are started as plain daemons. No cgroups (proctrack/linuxproc,
# task/none), no accounting (sacct does not work: poll squeue / scontrol show job). One node, named after
# `hostname -s`, NodeAddr=127.0.0.1, CPUs=$(nproc), one partition `debug`. Logs: /var/log/slurm/*.log.
# Prints one line per step; exits non-zero with the reason (and the daemons' last log lines) when it cannot start.
set -euo pipefail

T0=$(date +%s)
step() { echo "[slurm.sh +$(( $(date +%s) - T0 ))s] $*"; }
die() {
    echo "[slurm.sh] ERROR: $*" >&2
    for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
        [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 8 "$f" >&2; }
    done
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root"

NODE=$(hostname -s 2>/dev/null || true)
NODE=${NODE:-localhost}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf

# running <pidfile> <comm>: the daemon of that pid file is alive (not a zombie, not a reused pid).
running() {
    local pid
    [ -f "$1" ] && pid=$(cat "$1") && [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"
}
node_state() { timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true; }
healthy() {
    running /run/slurm/slurmctld.pid slurmctld && running /run/slurm/slurmd.pid slurmd || return 1
    case "$(node_state)" in
        idle|mixed) timeout 30 srun -N1 -n1 -t 1 true >/dev/null 2>&1 ;;
        allocated|completing) return 0 ;;   # busy with jobs (no CPU free for a test job), and answering
        *) return 1 ;;                       # down, drained, or "idle*" (not responding)...
    esac
}

# The configuration this script wants (compared with the installed one below).
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$(( MEM_MB * 8 / 10 ))                    # below what slurmd measures, or the node is drained
NEW=$(mktemp)
cat >"$NEW" <<EOF
# Written by .ci/slurm.sh: a single-node test cluster on 127.0.0.1 (Slurm 22.05, no cgroups, no accounting).
ClusterName=harness-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
# Start batch jobs within ~1 s of sbatch (default: up to 3 s more), and jobs that become eligible later
# (requeued, --begin, dependencies) within ~2 s (default: the next backfill pass, every 30 s).
SchedulerParameters=batch_sched_delay=0,bf_interval=2,sched_interval=10
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
# A requeued job (scontrol requeue: submitit after USR2) may start again after cred_expire+1 s (default 121 s).
AuthInfo=cred_expire=10
# How long finished jobs stay visible to squeue / scontrol show job (there is no sacct): 300 s (the default).
MinJobAge=300
# Seconds between SIGTERM and SIGKILL when a job is cancelled or runs out of time (the default).
KillWait=30
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
trap 'rm -f "$NEW"' EXIT

# 0. Already up with this configuration? Then do nothing.
if command -v sinfo >/dev/null 2>&1 && cmp -s "$NEW" "$CONF" && healthy; then
    step "slurm already running and healthy on node $NODE: nothing to do"
    exit 0
fi

# 1. Packages.
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
        || ! command -v munged >/dev/null 2>&1 || ! command -v srun >/dev/null 2>&1; then
    step "installing slurm-wlm and munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || die "apt-get install failed"
    step "installed $(slurmctld -V 2>/dev/null)"
else
    step "packages present: $(slurmctld -V 2>/dev/null)"
fi

# 2. Munge: key and daemon (munged runs as the `munge` user that owns the key).
install -d -m 0700 -o munge -g munge /etc/munge /var/lib/munge
install -d -m 0755 -o munge -g munge /run/munge
install -d -m 0700 -o munge -g munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    step "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    step "munged already running"
else
    step "starting munged"
    if [ -f /run/munge/munged.pid ] && ! kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        rm -f /run/munge/munged.pid
    fi
    runuser -u munge -- /usr/sbin/munged --force || die "munged failed to start"
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
    munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge)"
fi

# 3. Configuration.
install -d -m 0755 "$CONF_DIR" /var/log/slurm /run/slurm
install -d -m 0700 /var/spool/slurmctld /var/spool/slurmd
CHANGED=0
if ! cmp -s "$NEW" "$CONF"; then
    install -m 0644 "$NEW" "$CONF"
    CHANGED=1
    step "wrote $CONF (node $NODE, CPUs=$CPUS, RealMemory=$REAL_MB)"
else
    step "$CONF unchanged"
fi
# No cgroup.conf is needed: with proctrack/linuxproc and task/none slurmd loads no cgroup plugin.

# 4. Daemons.
stop() {  # stop <pidfile> <name>
    if running "$1" "$2"; then
        step "stopping $2 (pid $(cat "$1"))"
        kill "$(cat "$1")" 2>/dev/null || true
        for _ in $(seq 1 40); do running "$1" "$2" || break; sleep 0.25; done
    fi
    rm -f "$1"
}
if [ "$CHANGED" = 1 ]; then
    stop /run/slurm/slurmd.pid slurmd
    stop /run/slurm/slurmctld.pid slurmctld
fi
FRESH=0   # neither daemon was running: any job slurmctld recovers from its state files is an orphan
running /run/slurm/slurmctld.pid slurmctld || running /run/slurm/slurmd.pid slurmd || FRESH=1
if running /run/slurm/slurmctld.pid slurmctld; then
    step "slurmctld already running (pid $(cat /run/slurm/slurmctld.pid))"
else
    step "starting slurmctld"
    slurmctld -f "$CONF" || die "slurmctld failed to start"
fi
for _ in $(seq 1 40); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
timeout 5 scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer (scontrol ping)"
if [ "$FRESH" = 1 ]; then
    ORPHANS=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ORPHANS// /}" ]; then
        step "cancelling jobs left over from before the daemons stopped: $ORPHANS"
        # shellcheck disable=SC2086
        scancel $ORPHANS 2>/dev/null || true
    fi
fi
if running /run/slurm/slurmd.pid slurmd; then
    step "slurmd already running (pid $(cat /run/slurm/slurmd.pid))"
else
    step "starting slurmd"
    slurmd -f "$CONF" || die "slurmd failed to start"
fi

# 5. Wait for the node, then run a job.
step "waiting for node $NODE to be idle"
STATE=
for i in $(seq 1 120); do
    STATE=$(node_state)
    case "$STATE" in
        idle|mixed|allocated) break ;;
        drain*|down*|inval*|fail*)
            # e.g. left down by an earlier run: ReturnToService=2 brings back only nodes that registered validly.
            if [ $(( i % 10 )) = 0 ]; then scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true; fi ;;
    esac
    sleep 0.5
done
case "$STATE" in idle|mixed|allocated) ;; *)
    die "node $NODE not up after 60 s (state '${STATE:-none}'; $(scontrol show node "$NODE" 2>/dev/null | grep -o 'Reason=.*' || true))" ;;
esac
if [ "$STATE" = allocated ]; then
    step "node $NODE is allocated (all CPUs busy with jobs): not running a test job"
else
    step "node $NODE is $STATE; running srun -N1 true"
    timeout 60 srun -N1 -n1 -t 1 true || die "srun -N1 true failed"
fi
step "slurm is up: partition debug, node $NODE, $CPUS CPUs ($(( $(date +%s) - T0 )) s)"
