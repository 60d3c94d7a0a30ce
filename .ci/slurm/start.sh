#!/usr/bin/env bash
# Start a real single-node SLURM cluster (Debian 12, Slurm 22.05) with one fake GPU, job
# accounting through slurmdbd + MariaDB, cluster "scisr", partition "main", account "lab".
#
#   .ci/slurm/start.sh STATEDIR      (root; STATEDIR: an absolute, empty or new folder)
#   .ci/slurm/stop.sh  STATEDIR      stops every daemon this script started, by PID
#
# Everything the cluster writes (configs, spool, logs, pid files, the database) lives in
# STATEDIR; /etc/slurm/{slurm,gres,slurmdbd}.conf become symlinks into it (the plugin's job
# step clears SLURM_CONF, so the config must be at /etc/slurm/slurm.conf). Each daemon
# started is appended to STATEDIR/daemons.tsv (name, pid file) the moment it starts, so
# stop.sh also cleans up after a start that failed half-way. Facts behind each step:
# /work/shared/recipes/slurm-single-node.md (in the team's shared folder).
set -euo pipefail

CLUSTER=scisr
PARTITION=main
ACCOUNT=lab
DBPORT=${SCISR_SLURM_DB_PORT:-3306}
PACKAGES=(slurmctld slurmd munge slurm-client slurmdbd mariadb-server)
HERE=$(cd "$(dirname "$0")" && pwd)

T0=$SECONDS
say() { printf '[slurm-start %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds, for at most SECONDS of
# wall-clock time (a command may itself block for a while, so count time, not attempts).
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$what: not ready after ${limit}s"
        fi
        sleep 1
    done
    say "$what: ready"
}

[[ $# -eq 1 ]] || die "usage: $0 STATEDIR"
S=$1
[[ $S == /* ]] || die "STATEDIR must be an absolute path, got '$S'"
[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"

# --- 1. packages ----------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found; cannot install ${missing[*]}"
    say "installing ${missing[*]} (apt-get, --no-install-recommends)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "packages already installed: ${PACKAGES[*]}"
fi
for exe in munged munge unmunge mungekey mariadb-install-db mariadbd mariadb mariadb-admin \
    slurmdbd slurmctld slurmd sinfo squeue sbatch srun sacct sacctmgr scontrol; do
    command -v "$exe" >/dev/null || die "$exe not found after installing ${PACKAGES[*]}"
done

# --- 2. refuse to fight an existing cluster ----------------------------------------------
for d in slurmctld slurmd slurmdbd; do
    if pid=$(pgrep -x "$d"); then
        die "$d is already running (pid $pid); stop it first (.ci/slurm/stop.sh on its state dir)"
    fi
done
if (echo >"/dev/tcp/127.0.0.1/$DBPORT") 2>/dev/null; then
    die "port $DBPORT is in use; set SCISR_SLURM_DB_PORT to a free port"
fi
for f in slurm.conf gres.conf slurmdbd.conf; do
    if [[ -e /etc/slurm/$f && ! -L /etc/slurm/$f ]]; then
        die "/etc/slurm/$f is a real file (another cluster's config?); not overwriting it"
    fi
done

# --- 3. state folder and configs ---------------------------------------------------------
umask 022
mkdir -p "$S"
chmod 755 "$S"
[[ -z $(ls -A "$S") ]] || die "STATEDIR $S is not empty"
mkdir -p "$S"/{spool/slurmctld,spool/slurmd,log,run,etc,mysql/data,mysql/run}
: >"$S/daemons.tsv"
# mariadbd runs as mysql and dies silently when it cannot reach its folders.
chown -R mysql:mysql "$S/mysql"
runuser -u mysql -- test -w "$S/mysql/data" ||
    die "user mysql cannot reach $S/mysql/data (a parent folder without o+x? use e.g. /tmp/...)"

HOST=$(hostname -s)
# Node topology exactly as slurmd detects it (otherwise the node drains), 80% of RAM.
NODE_LINE=$(slurmd -C | head -1 | sed -e 's/^NodeName=//' -e 's/ RealMemory=[0-9]*//')
REALMEM=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
DBPASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
fill() {
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$S|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@NODE_LINE@|$NODE_LINE|g" \
        -e "s|@REALMEM@|$REALMEM|g" -e "s|@DBPORT@|$DBPORT|g" -e "s|@DBPASS@|$DBPASS|g" "$1"
}
fill "$HERE/slurm.conf.in" >"$S/etc/slurm.conf"
fill "$HERE/gres.conf.in" >"$S/etc/gres.conf"
(umask 077 && fill "$HERE/slurmdbd.conf.in" >"$S/etc/slurmdbd.conf")
chmod 600 "$S/etc/slurmdbd.conf"
mkdir -p /etc/slurm
for f in slurm.conf gres.conf slurmdbd.conf; do
    ln -sfn "$S/etc/$f" "/etc/slurm/$f"
done
cat >"$S/cluster.env" <<EOF
SCISR_SLURM_CLUSTER=$CLUSTER
SCISR_SLURM_PARTITION=$PARTITION
SCISR_SLURM_ACCOUNT=$ACCOUNT
SCISR_SLURM_HOST=$HOST
EOF
say "configs in $S/etc (node: $NODE_LINE RealMemory=$REALMEM Gres=gpu:1), linked from /etc/slurm"

started() { printf '%s\t%s\n' "$1" "$2" >>"$S/daemons.tsv"; }

# --- 4. munged (refuses to run as root) --------------------------------------------------
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged: already running, reusing it"
else
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        chown munge:munge /etc/munge
        chmod 700 /etc/munge
        runuser -u munge -- mungekey --create
    fi
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    started munged /run/munge/munged.pid
    wait_for 20 munged sh -c 'munge -n </dev/null | unmunge'
fi

# --- 5. MariaDB for slurmdbd ----------------------------------------------------------
SOCK=$S/mysql/run/mysqld.sock
mariadb-install-db --no-defaults --datadir="$S/mysql/data" --user=mysql \
    --auth-root-authentication-method=socket --skip-test-db >"$S/log/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db failed: $(tail -5 "$S/log/mariadb-install.log")"
setsid mariadbd --no-defaults --user=mysql --datadir="$S/mysql/data" --socket="$SOCK" \
    --pid-file="$S/mysql/run/mariadbd.pid" --port="$DBPORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
    --log-error="$S/log/mariadb.err" </dev/null >>"$S/log/mariadb.out" 2>&1 &
started mariadbd "$S/mysql/run/mariadbd.pid"
wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$SOCK" ping
wait_for 10 "mariadbd pid file" test -s "$S/mysql/run/mariadbd.pid"
mariadb --no-defaults --socket="$SOCK" -u root <<EOF
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF

# --- 6. slurmdbd, then the cluster, account and user ---------------------------------------
slurmdbd
started slurmdbd "$S/run/slurmdbd.pid"
wait_for 60 slurmdbd timeout 10 sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Description="SciSR CI" Organization=scisr >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
sacctmgr -n -P list assoc cluster="$CLUSTER" user=root format=account | grep -qx "$ACCOUNT" ||
    die "sacctmgr: user root has no association with account $ACCOUNT"
say "accounting: cluster $CLUSTER, account $ACCOUNT, user root"

# --- 7. slurmctld, slurmd, node idle -----------------------------------------------------
slurmctld
started slurmctld "$S/run/slurmctld.pid"
wait_for 60 slurmctld sh -c 'timeout 10 scontrol ping | grep -q UP'
slurmd
started slurmd "$S/run/slurmd.pid"
deadline=$((SECONDS + 90))
resumed=0
while :; do
    state=$(timeout 15 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1 || true)
    case $state in
        idle | mixed | allocated) break ;;
        *drain* | *down* | *fail*)
            if ((!resumed)); then
                say "node $HOST is '$state' ($(timeout 10 sinfo -h -R 2>/dev/null || true)); resuming it"
                timeout 10 scontrol update nodename="$HOST" state=resume || true
                resumed=1
            fi
            ;;
    esac
    ((SECONDS < deadline)) || die "node $HOST not idle after 90s (state '$state'); see $S/log/slurmd.log"
    sleep 1
done
say "node $HOST is $state"
sinfo -N -o '%N %P %T %c %m %G'
say "cluster up (state in $S)"
