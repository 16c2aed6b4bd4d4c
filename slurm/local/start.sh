#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost (for proxbench's tests).
#
#   sudo slurm/local/start.sh            # idempotent: does nothing when already up
#   PROXBENCH_SLURM_DIR=/some/dir slurm/local/start.sh
#   sudo slurm/local/start.sh --force    # skip the "already up" shortcut (re-checks every daemon)
#
# Installs (when missing) slurm-wlm slurmdbd munge mariadb-server procps, generates
# slurm.conf / slurmdbd.conf / cgroup.conf in the state dir, and starts munged,
# mariadb, slurmdbd, slurmctld and slurmd (each only when not already running).
# PIDs of what THIS script started are recorded in $STATE/pids/ so that
# slurm/local/stop.sh stops exactly those.  See slurm/README.md.
set -euo pipefail

T0=$(date +%s.%N)
STATE=${PROXBENCH_SLURM_DIR:-/var/lib/proxbench-slurm}
PIDS=$STATE/pids
CONF=$STATE/etc/slurm.conf
DBDCONF=$STATE/etc/slurmdbd.conf
CLUSTER=${PROXBENCH_SLURM_CLUSTER:-proxbench}
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=proxbench-slurm
MYSQL_SOCK=/run/mysqld/mysqld.sock
NODE=$(hostname -s)
READY_TIMEOUT=${PROXBENCH_SLURM_TIMEOUT:-60}
export SLURM_CONF=$CONF

log()  { echo "[slurm-local] $*"; }
die()  { echo "[slurm-local] ERROR: $*" >&2; exit 1; }
tail_log() {  # tail_log FILE...: print the end of each log on stderr
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}
fail() {  # fail MESSAGE LOG...
    local msg=$1; shift
    tail_log "$@"
    die "$msg"
}
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds
wait_for() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
# alive NAME: true when $PIDS/NAME.pid names a live process whose command is NAME
alive() {
    local f=$PIDS/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    case "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" in
        ''|Z|X) return 1 ;;   # gone, or a zombie not yet reaped
    esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
record() { mkdir -p "$PIDS"; echo "$2" > "$PIDS/$1.pid"; }

# --------------------------------------------------------------------------- 0. quick path
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
node_idle() {
    local st
    st=$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1) || return 1
    case "$st" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac
}
db_ok() { mariadb-admin --protocol=socket -S "$MYSQL_SOCK" -u root ping 2>/dev/null | grep -q alive; }
if [ -f "$CONF" ] && alive slurmctld && alive slurmd && alive slurmdbd && munge_ok && db_ok && node_idle \
   && [ "${1:-}" != "--force" ]; then
    # everything up; only regenerate the config below if it would change
    QUICK=1
else
    QUICK=0
fi

if [ "$(id -u)" != 0 ]; then
    if [ "$QUICK" = 1 ]; then
        log "already running (node $NODE idle); nothing to do ($(elapsed) s)"; exit 0
    fi
    die "the cluster is not up, and starting it needs root (it installs packages and starts daemons); run: sudo $0"
fi

# --------------------------------------------------------------------------- 1. packages
if [ "$QUICK" = 0 ]; then
    missing=()
    for pkg in slurm-wlm slurmdbd munge mariadb-server procps; do  # procps: pgrep, ps
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        mkdir -p "$STATE"
        command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
        log "installing ${missing[*]} ..."
        export DEBIAN_FRONTEND=noninteractive
        # Keep the packages' maintainer scripts from starting services (there is no systemd,
        # and the slurm ones would fail without a config): we start our own daemons below.
        policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy=1
        fi
        rc=0
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
            >"$STATE/apt.log" 2>&1 || rc=$?
        if [ "$policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
        [ "$rc" = 0 ] || fail "apt-get install ${missing[*]} failed (exit $rc)" "$STATE/apt.log"
    fi
fi

foreign() {  # foreign NAME: a NAME process runs that is not ours
    local p
    for p in $(pgrep -x "$1" || true); do
        [ -s "$PIDS/$1.pid" ] && [ "$(cat "$PIDS/$1.pid")" = "$p" ] && continue
        case "$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)" in ''|Z|X) continue ;; esac
        echo "$p"; return 0
    done
    return 1
}
# Another slurm cluster on this machine would clash on ports (and on the accounting database).
for d in slurmdbd slurmctld slurmd; do
    if other=$(foreign "$d"); then
        die "a $d not started by this script (state dir $STATE) is running (pid $other); stop it first"
    fi
done

# --------------------------------------------------------------------------- 2. config
mkdir -p "$STATE"/etc "$STATE"/log "$STATE"/ctld "$STATE"/spool "$PIDS"
chmod 755 "$STATE"

realmem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
[ -n "$realmem" ] || realmem=$(awk '/MemTotal/{printf "%d", $2/1024}' /proc/meminfo)
ncpu=$(nproc)

new_conf=$(cat <<EOF
# Generated by proxbench slurm/local/start.sh -- single-node test cluster. Do not edit:
# it is rewritten on every start.  See slurm/README.md for why each setting is here.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# cred_expire also controls how long a requeued job waits before it may start again
# (default 120 s); keep it short so requeue/preemption tests run in seconds.
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
# scheduling: fast enough for tests
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=1,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=30
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
# accounting through slurmdbd: submitit reads job states with sacct
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$realmem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
new_dbd=$(cat <<EOF
# Generated by proxbench slurm/local/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/pids/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
)
new_cgroup=$(cat <<EOF
# Generated by proxbench slurm/local/start.sh: no cgroups are used (proctrack/linuxproc, task/none)
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
)
conf_changed=0
write_if_changed() {  # write_if_changed FILE MODE CONTENT
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$3" ]; then
        printf '%s\n' "$3" > "$1.tmp" && chmod "$2" "$1.tmp" && mv "$1.tmp" "$1"
        conf_changed=1
    fi
}
write_if_changed "$CONF" 644 "$new_conf"
write_if_changed "$DBDCONF" 600 "$new_dbd"   # slurmdbd refuses a world-readable conf
write_if_changed "$STATE/etc/cgroup.conf" 644 "$new_cgroup"
if [ "$QUICK" = 1 ] && [ "$conf_changed" = 0 ]; then
    log "already running (node $NODE idle); nothing to do ($(elapsed) s)"
    log "SLURM_CONF=$CONF"
    exit 0
fi

# Let clients (sbatch, sacct, submitit) find the config without SLURM_CONF.
if [ ! -e /etc/slurm/slurm.conf ] || [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ]; then
    mkdir -p /etc/slurm
    ln -sfn "$CONF" /etc/slurm/slurm.conf
    echo /etc/slurm/slurm.conf > "$STATE/symlink"
else
    log "note: /etc/slurm/slurm.conf exists and is not ours; clients need SLURM_CONF=$CONF"
fi

if [ "$QUICK" = 1 ]; then   # config changed while running: restart the slurm daemons
    log "configuration changed; restarting slurm daemons"
    PROXBENCH_SLURM_DIR=$STATE "$(dirname "$0")/stop.sh" --slurm-only
fi

# --------------------------------------------------------------------------- 3. munge
if munge_ok; then
    log "munged already running"
else
    [ -s /etc/munge/munge.key ] || {
        log "creating munge key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        fi
    }
    chown munge:munge /etc/munge /etc/munge/munge.key; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge; chmod 711 /var/lib/munge; chmod 700 /var/log/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force >/dev/null 2>&1 \
        || fail "munged failed to start" /var/log/munge/munged.log
    wait_for 10 munge_ok || fail "munged does not answer" /var/log/munge/munged.log
    record munged "$(cat /run/munge/munged.pid)"
    log "started munged (pid $(cat "$PIDS/munged.pid"))"
fi

# --------------------------------------------------------------------------- 4. mariadb
sql() { mariadb --protocol=socket -S "$MYSQL_SOCK" -u root -N -B -e "$1"; }
if db_ok; then
    log "mariadb already running"
else
    if [ ! -d /var/lib/mysql/mysql ]; then
        log "initialising /var/lib/mysql"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/log/mariadb-install.log" 2>&1 \
            || fail "mariadb-install-db failed" "$STATE/log/mariadb-install.log"
    fi
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    : > "$STATE/log/mariadb.log"; chown mysql:mysql "$STATE/log/mariadb.log"
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket="$MYSQL_SOCK" \
        --bind-address=127.0.0.1 --port=3306 --pid-file=/run/mysqld/mysqld.pid \
        --log-error="$STATE/log/mariadb.log" \
        --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 &
    record mariadbd $!
    wait_for 30 db_ok || fail "mariadb did not come up" "$STATE/log/mariadb.log"
    log "started mariadbd (pid $(cat "$PIDS/mariadbd.pid"))"
fi
# A fresh controller state restarts job ids at 1; accounting records of an earlier cluster
# would then shadow the new jobs in sacct (and in submitit), so start the database afresh too.
if [ ! -e "$STATE/ctld/job_state" ] && ! alive slurmdbd && [ -n "$(sql "SHOW DATABASES LIKE '$DB_NAME'")" ]; then
    sql "DROP DATABASE $DB_NAME" || die "could not drop stale database $DB_NAME"
    log "dropped stale accounting database $DB_NAME (fresh controller state)"
fi
if [ "$(sql "SELECT COUNT(*) FROM mysql.user WHERE user='$DB_USER' AND host='localhost'")" = 0 ] \
   || [ -z "$(sql "SHOW DATABASES LIKE '$DB_NAME'")" ]; then
    sql "CREATE DATABASE IF NOT EXISTS $DB_NAME;
         CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
         ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
         FLUSH PRIVILEGES;" || die "could not create database $DB_NAME / user $DB_USER"
    log "created database $DB_NAME and user $DB_USER"
fi

# --------------------------------------------------------------------------- 5. slurm daemons
start_daemon() {  # start_daemon NAME LOG CMD...
    local name=$1 logf=$2; shift 2
    if alive "$name"; then log "$name already running"; return 0; fi
    rm -f "$PIDS/$name.pid"
    "$@" >>"$STATE/log/$name.stdout" 2>&1 || fail "$name failed to start" "$logf" "$STATE/log/$name.stdout"
    wait_for 10 test -s "$PIDS/$name.pid" || fail "$name wrote no pid file" "$logf" "$STATE/log/$name.stdout"
    wait_for 5 alive "$name" || fail "$name died at start" "$logf" "$STATE/log/$name.stdout"
    log "started $name (pid $(cat "$PIDS/$name.pid"))"
}

dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
start_daemon slurmdbd "$STATE/log/slurmdbd.log" /usr/sbin/slurmdbd
wait_for 60 dbd_ok || fail "slurmdbd does not answer sacctmgr" "$STATE/log/slurmdbd.log"
if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster $CLUSTER failed" "$STATE/log/slurmdbd.log"
    log "registered cluster $CLUSTER in slurmdbd"
fi

start_daemon slurmctld "$STATE/log/slurmctld.log" /usr/sbin/slurmctld -f "$CONF"
wait_for 30 scontrol ping || fail "slurmctld does not answer scontrol ping" "$STATE/log/slurmctld.log"
start_daemon slurmd "$STATE/log/slurmd.log" /usr/sbin/slurmd -f "$CONF"

# --------------------------------------------------------------------------- 6. wait for the node
node_ready() {  # idle; a responding node left DOWN/DRAINED by an earlier run is resumed
    node_idle && return 0
    case "$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1)" in
        *'*') ;;   # not responding yet: slurmd has not registered
        down|drain|drng|fail)
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    return 1
}
if ! wait_for "$READY_TIMEOUT" node_ready; then
    st=$(sinfo -h -N -n "$NODE" -o '%t %E' 2>&1 || true)
    fail "node $NODE not idle after ${READY_TIMEOUT}s (sinfo: ${st:-nothing})" \
        "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"
fi
log "cluster $CLUSTER up: node $NODE idle, partition debug; start-up took $(elapsed) s"
log "SLURM_CONF=$CONF"
