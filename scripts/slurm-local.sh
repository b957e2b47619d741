#!/usr/bin/env bash
# A single-node Slurm on localhost, for running examples/cv-slurm.sh for
# real (tests/cli/workflows.rs). Needs root and Debian's slurm-wlm and munge
# (apt-get install slurm-wlm munge); see ../shared/notes/slurm.md.
#
#   scripts/slurm-local.sh start   # prints the SLURM_CONF to export
#   scripts/slurm-local.sh stop    # stops the daemons this script started
#
# The configuration and state live in $GENOCNN_SLURM_DIR (default
# /tmp/genocnn-slurm); /etc/slurm/slurm.conf is linked to it only where
# there is none, and unlinked on stop. Daemons are stopped by the process
# IDs this script recorded, so an existing munged is left alone.
#
# Exit status: 0 started (or stopped); 3 Slurm cannot run here, with the
# reason on stderr (callers skip, quoting it); 1 anything else.
set -euo pipefail
DIR=${GENOCNN_SLURM_DIR:-/tmp/genocnn-slurm}
cannot() { echo "slurm-local: $*" >&2; exit 3; }

stop() {
    # The default configuration path, if this script made it a link.
    if [ -f "$DIR/etc-link" ] && [ -L /etc/slurm/slurm.conf ] &&
        [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
    rm -f "$DIR/etc-link"
    for name in slurmd slurmctld munged; do
        f="$DIR/$name.started"
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2> /dev/null; then
            kill "$pid" 2> /dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2> /dev/null || true
        fi
        rm -f "$f"
    done
}

start() {
    [ "$(id -u)" = 0 ] || cannot "the daemons need root (running as $(id -un))"
    for b in slurmctld slurmd munged sbatch sinfo; do
        command -v "$b" > /dev/null || [ -x "/usr/sbin/$b" ] ||
            cannot "$b is not installed (apt-get install slurm-wlm munge)"
    done
    stop
    mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log"
    # munge: the system's, started only if none is running.
    if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
        id munge > /dev/null 2>&1 || cannot "there is no munge user (is munge installed?)"
        if [ ! -s /etc/munge/munge.key ]; then
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2> /dev/null
        fi
        mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
        chown -R munge: /etc/munge /var/lib/munge /var/log/munge /run/munge
        chmod 400 /etc/munge/munge.key
        su -s /bin/sh munge -c /usr/sbin/munged ||
            cannot "munged would not start (see /var/log/munge/munged.log)"
        pgrep -u munge -n munged > "$DIR/munged.started" || true
        for _ in $(seq 30); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
        munge -n | unmunge > /dev/null 2>&1 || cannot "munge does not answer"
    fi
    host=$(hostname -s)
    mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=genocnn-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 10 minutes: Snakemake's Slurm
# executor reads their state there when there is no accounting (sacct).
MinJobAge=600
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$DIR/slurm.conf"
    # Job steps (srun inside a job, as Snakemake's Slurm executor runs) read
    # the default path, not SLURM_CONF: link it there when nothing is.
    if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm
        ln -s "$SLURM_CONF" /etc/slurm/slurm.conf && touch "$DIR/etc-link"
    fi
    /usr/sbin/slurmctld -f "$SLURM_CONF" || cannot "slurmctld would not start (see $DIR/log/slurmctld.log)"
    /usr/sbin/slurmd -f "$SLURM_CONF" || cannot "slurmd would not start (see $DIR/log/slurmd.log)"
    for _ in $(seq 50); do
        [ -s "$DIR/slurmctld.pid" ] && [ -s "$DIR/slurmd.pid" ] && break
        sleep 0.1
    done
    cp "$DIR/slurmctld.pid" "$DIR/slurmctld.started" 2> /dev/null || true
    cp "$DIR/slurmd.pid" "$DIR/slurmd.started" 2> /dev/null || true
    for _ in $(seq 100); do
        if sinfo -h -o %t 2> /dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "$SLURM_CONF"
            return 0
        fi
        sleep 0.2
    done
    state=$(sinfo -h -o %t 2> /dev/null || true)
    stop
    cannot "the node did not come up (sinfo: '${state}'; see $DIR/log)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: scripts/slurm-local.sh start|stop" >&2; exit 1 ;;
esac
