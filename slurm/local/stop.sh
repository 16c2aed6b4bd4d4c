#!/usr/bin/env bash
# Stop what slurm/local/start.sh started -- and nothing else.
#
#   sudo slurm/local/stop.sh               # stop slurmd, slurmctld, slurmdbd, mariadbd, munged (ours only)
#   sudo slurm/local/stop.sh --purge       # ... and delete the state dir (job ids restart at 1)
#        slurm/local/stop.sh --slurm-only  # only the three slurm daemons (used by start.sh)
#
# Only processes whose PID start.sh recorded in $STATE/pids/NAME.pid, and whose command
# name is still NAME, are signalled.  Idempotent: running it again does nothing.
set -euo pipefail

STATE=${PROXBENCH_SLURM_DIR:-/var/lib/proxbench-slurm}
PIDS=$STATE/pids
PURGE=0; SLURM_ONLY=0
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        --slurm-only) SLURM_ONLY=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--purge] [--slurm-only]" >&2; exit 2 ;;
    esac
done
log() { echo "[slurm-local] $*"; }

running() {  # running PID: exists and is not a zombie (this container's PID 1 reaps slowly)
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
stop_one() {  # stop_one NAME [TIMEOUT]
    local name=$1 timeout=${2:-20} f=$PIDS/$1.pid pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if ! running "$pid" || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
        rm -f "$f"   # stale: the process is gone (or the pid was reused by something else)
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$f"
    log "stopped $name (pid $pid)"
}

drop_db() {  # --purge: job ids restart at 1, so old accounting records must go too
    if mariadb-admin --protocol=socket -S /run/mysqld/mysqld.sock -u root ping >/dev/null 2>&1; then
        mariadb --protocol=socket -S /run/mysqld/mysqld.sock -u root \
            -e 'DROP DATABASE IF EXISTS slurm_acct_db' && log "dropped database slurm_acct_db" || true
    else
        log "warning: mariadb not running; database slurm_acct_db kept (old job records will shadow new ids)"
    fi
}
if [ -d "$PIDS" ] || [ "$PURGE" = 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "[slurm-local] ERROR: must run as root; run: sudo $0" >&2; exit 1; }
    # Jobs' processes (slurmstepd and its children) outlive slurmd: cancel the cluster's jobs
    # while slurmctld still answers, then kill any step left over from OUR slurmd.
    if [ -f "$STATE/etc/slurm.conf" ] && [ -s "$PIDS/slurmctld.pid" ]; then
        export SLURM_CONF=$STATE/etc/slurm.conf
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [ -n "${jobs// /}" ]; then
            timeout 10 scancel $jobs 2>/dev/null || true
            log "cancelled jobs: $jobs"
            for ((i = 0; i < 50; i++)); do
                [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    kill_tree() {  # kill_tree PID: SIGKILL PID and all its descendants
        local c
        for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
        kill -KILL "$1" 2>/dev/null || true
    }
    for p in $(pgrep -x slurmstepd || true); do
        case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in
            "$STATE"|"$STATE"/*) kill_tree "$p"; log "killed leftover slurmstepd $p" ;;
        esac
    done
    stop_one slurmd
    stop_one slurmctld
    stop_one slurmdbd
    if [ "$PURGE" = 1 ]; then drop_db; fi
    if [ "$SLURM_ONLY" = 0 ]; then
        stop_one mariadbd 60
        stop_one munged
    fi
fi

if [ "$PURGE" = 1 ] && [ -d "$STATE" ]; then
    if [ -f "$STATE/symlink" ]; then
        link=$(cat "$STATE/symlink")
        [ "$(readlink "$link" 2>/dev/null)" = "$STATE/etc/slurm.conf" ] && rm -f "$link"
    fi
    rm -rf "$STATE"
    log "removed $STATE"
fi
exit 0
