#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (loopback), to try or test the cluster path
# (`snakemake --workflow-profile profiles/slurm`) without a cluster.
#
#   sudo bash scripts/local_slurm.sh start    # install (Debian slurm-wlm + munge) if needed, configure, start
#   bash scripts/local_slurm.sh status        # sinfo + a test job
#   sudo bash scripts/local_slurm.sh stop     # stops only the daemons `start` started (pid files)
#
# It refuses to overwrite a slurm.conf it did not write (a real cluster host's), and `stop`
# never touches daemons it did not start.
# No accounting daemon (slurmdbd): the SLURM profile queries job status with squeue, which
# the executor plugin supports as its alternative to sacct; MinJobAge is set to an hour so a
# finished job stays visible to squeue long enough.
# The node offers this machine's CPUs and memory, minus 1 GiB; it declares no GPU.
set -euo pipefail

CONF_DIR=${BOXCASEG_SLURM_CONF_DIR:-/etc/slurm}
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOG_DIR=/var/log/slurm
PARTITION=${BOXCASEG_SLURM_PARTITION:-main}
MARKER="# written by boxcaseg scripts/local_slurm.sh"
PID_DIR=${BOXCASEG_SLURM_PID_DIR:-/run/boxcaseg-local-slurm}   # pid files of the daemons this script started

log() { printf '[local-slurm] %s\n' "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { log "run as root (sudo)"; exit 1; }; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

refuse_foreign_config() {
    if [ -e "$CONF_DIR/slurm.conf" ] && ! head -n1 "$CONF_DIR/slurm.conf" | grep -qxF "$MARKER"; then
        log "$CONF_DIR/slurm.conf exists and was not written by this script: refusing to touch"
        log "a real SLURM installation (this host looks like part of a cluster)"
        exit 1
    fi
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOG_DIR"
    cat > "$CONF_DIR/slurm.conf" <<EOF
$MARKER
ClusterName=boxcaseg-local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE}
SlurmdSpoolDir=${SPOOL}
SlurmctldPidFile=${PID_DIR}/slurmctld.pid
SlurmdPidFile=${PID_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
MpiDefault=none
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF_DIR/slurm.conf (node ${host}: ${cpus} CPUs, ${mem_mb} MB; partition ${PARTITION})"
}

start_munge() {
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- munged --force
        else
            munged --force
        fi
    fi
    munge -n | unmunge >/dev/null || { log "munge does not work"; exit 1; }
}

start() {
    need_root
    refuse_foreign_config
    install_packages
    write_config
    start_munge
    stop_ours
    mkdir -p "$PID_DIR"
    slurmctld -c  # -c: a clean state, no jobs from an earlier start
    slurmd
    for _ in $(seq 1 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            break
        fi
        sleep 1
    done
    scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
    status
}

status() {
    sinfo
    log "srun: $(srun -N1 -n1 hostname)"
    local id
    id=$(sbatch --parsable --wrap 'echo sbatch ok' -o /tmp/boxcaseg-slurm-check.out)
    for _ in $(seq 1 60); do
        if [ -s /tmp/boxcaseg-slurm-check.out ]; then
            log "sbatch job $id: $(cat /tmp/boxcaseg-slurm-check.out)"
            return 0
        fi
        sleep 1
    done
    log "sbatch job $id did not run within a minute"
    return 1
}

stop_ours() {  # the daemons this script started, by their pid files; nothing else
    local name pid
    for name in slurmd slurmctld; do
        [ -s "$PID_DIR/$name.pid" ] || continue
        pid=$(cat "$PID_DIR/$name.pid")
        if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
            kill "$pid" && log "stopped $name (pid $pid)"
            for _ in $(seq 1 20); do [ -e "/proc/$pid" ] || break; sleep 0.2; done
        fi
        rm -f "$PID_DIR/$name.pid"
    done
}

stop() {
    need_root
    stop_ours
    log "munged left running"
}

case "${1:-}" in
    start) start ;;
    status) status ;;
    stop) stop ;;
    *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
