#!/usr/bin/env bash
# Starts a single-node Slurm (munged, slurmctld, slurmd) on this machine, for testing
# the job-array scripts here without a cluster. Needs root and Debian's slurm-wlm and
# munge packages (apt-get install slurm-wlm munge). Writes its configuration and state
# under $1 (default /tmp/explore-slurm) and prints the SLURM_CONF to export.
# Exit status 3 means "cannot run here" (not root, no packages), with the reason.
set -euo pipefail
dir=${1:-/tmp/explore-slurm}
why() { echo "local Slurm not started: $*" >&2; exit 3; }
[ "$(id -u)" = 0 ] || why "not root"
for p in munged slurmctld slurmd sbatch; do
    command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || why "$p not installed (apt-get install slurm-wlm munge)"
done
export PATH=$PATH:/usr/sbin
mkdir -p "$dir"/{state,spool,log} /etc/munge /run/munge /var/lib/munge /var/log/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force || why "munged did not start"
host=$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=explore-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
slurmctld -c -f "$SLURM_CONF" || why "slurmctld did not start (see $dir/log/slurmctld.log)"
slurmd -f "$SLURM_CONF" || why "slurmd did not start (see $dir/log/slurmd.log)"
for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 1
done
why "the node did not come up within 60 s: $(sinfo 2>&1 | tail -1); see $dir/log"
