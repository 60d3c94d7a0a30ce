#!/usr/bin/env bash
# Stop the cluster that .ci/slurm/start.sh STATEDIR started: cancel its jobs, then stop
# each daemon it started (STATEDIR/daemons.tsv), newest first, by the PID in its pid file;
# remove the /etc/slurm symlinks into STATEDIR. Safe to run twice, or after a failed start.
#
#   .ci/slurm/stop.sh STATEDIR
set -uo pipefail

T0=$SECONDS
say() { printf '[slurm-stop %3ds] %s\n' "$((SECONDS - T0))" "$*"; }

[[ $# -eq 1 ]] || { say "usage: $0 STATEDIR" >&2; exit 2; }
S=$1
LIST=$S/daemons.tsv
if [[ ! -f $LIST ]]; then
    say "nothing to stop ($LIST absent)"
    exit 0
fi

# Jobs first, while slurmctld still answers: their slurmstepd would outlive slurmd.
if grep -q '^slurmctld' "$LIST" && timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    if [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null) ]]; then
        say "cancelling jobs: $(timeout 10 squeue -h -o %i | tr '\n' ' ')"
        timeout 10 scancel --full --quiet --user=root || true
        deadline=$((SECONDS + 30))
        while [[ -n $(timeout 10 squeue -h -t R,CG,PD -o %i 2>/dev/null) ]] && ((SECONDS < deadline)); do
            sleep 1
        done
    fi
fi

# stop NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL. Only a live process whose
# name matches NAME is signalled (a stale pid file may name a recycled PID).
stop() {
    local name=$1 pidfile=$2 pid comm deadline
    if [[ ! -s $pidfile ]]; then
        say "$name: no pid file $pidfile"
        return 0
    fi
    pid=$(tr -dc '0-9' <"$pidfile")
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [[ -z $pid || $comm != "$name" ]]; then
        say "$name: not running (pid file says ${pid:-nothing})"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    deadline=$((SECONDS + 30))
    while [[ -d /proc/$pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; do
        if ((SECONDS >= deadline)); then
            say "$name: pid $pid ignored SIGTERM for 30s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 1
            break
        fi
        sleep 0.2
    done
    say "$name: stopped (pid $pid)"
}

tac "$LIST" | while IFS=$'\t' read -r name pidfile; do
    [[ -n $name ]] && stop "$name" "$pidfile"
done

# The job steps of a cancelled job end with it; report (and end, by PID) any left over.
for pid in $(pgrep -x slurmstepd); do
    say "slurmstepd pid $pid outlived slurmd; SIGKILL"
    kill -KILL "$pid" 2>/dev/null
done

for f in slurm.conf gres.conf slurmdbd.conf; do
    if [[ -L /etc/slurm/$f && $(readlink "/etc/slurm/$f") == "$S/"* ]]; then
        rm -f "/etc/slurm/$f"
    fi
done
mv "$LIST" "$LIST.stopped"
say "done"
