#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests and for trying the toolkit
# without a cluster: munged, MariaDB + slurmdbd (accounting: submitit needs sacct to see a
# cancelled or failed job), slurmctld and slurmd, all from Debian packages, all state under one
# directory, every daemon stopped by the PID in its pid file. Facts it relies on:
# ../shared/SLURM-NOTES.md (verified on this kind of machine).
#
#   slurm/cluster.sh up     [STATE]   install (if needed), configure, start; idempotent
#   slurm/cluster.sh down   [STATE]   stop every daemon started from STATE
#   slurm/cluster.sh status [STATE]   which daemons run
#   slurm/cluster.sh env    [STATE]   print `export SLURM_CONF=…` for your shell
#
# STATE defaults to $CASS_SLURM_STATE or /tmp/cass-slurm. Needs root (apt-get, daemons).
set -euo pipefail

cmd=${1:-}
STATE=$(realpath -m "${2:-${CASS_SLURM_STATE:-/tmp/cass-slurm}}")
CLUSTER=cass
HOST=$(hostname -s)
MUNGE_SOCKET=$STATE/munge/munge.socket.2
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # stop order; start order is the reverse

die() { echo "slurm/cluster.sh: $*" >&2; exit 1; }
pid_of() { local f=$STATE/run/$1.pid; [[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }
running() { pid_of "$1" >/dev/null; }

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]} and not root: install slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
  echo "installing SLURM, munge and MariaDB from Debian packages…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up within ${seconds}s; see $STATE/log/"
}

write_configs() {
  mkdir -p "$STATE"/{etc,run,log,munge,mysql,ctld,spool}
  chmod 711 "$STATE/munge"  # munged refuses a socket dir others cannot traverse
  if [[ ! -s $STATE/munge/munge.key ]]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 600 "$STATE/munge/munge.key"
  local node cpus mem
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$((mem * 95 / 100))
  cat >"$STATE/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=30
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePass=$MUNGE_SOCKET
JobRequeue=1
KillWait=5
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=cass-test-only
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"  # slurmdbd refuses a readable config (it holds a password)
}

start_munged() {
  running munged && return
  munged --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed" --force
  wait_for 10 munged munge -n --socket="$MUNGE_SOCKET"
}

start_mariadb() {
  running mariadbd && return
  if [[ ! -d $STATE/mysql/mysql ]]; then
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=normal \
      >"$STATE/log/mariadb-install.log" 2>&1
  fi
  mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" \
    --pid-file="$STATE/run/mariadbd.pid" --bind-address=127.0.0.1 --port=3306 \
    --log-error="$STATE/log/mariadb.log" &
  disown
  wait_for 30 MariaDB mariadb --socket="$STATE/run/mysql.sock" -uroot -e 'select 1'
  mariadb --socket="$STATE/run/mysql.sock" -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'cass-test-only';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'cass-test-only';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

start_slurm() {
  export SLURM_CONF=$STATE/etc/slurm.conf
  if ! running slurmdbd; then
    slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
  running slurmctld || slurmctld -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
  running slurmd || slurmd -f "$SLURM_CONF"
  wait_for 30 "the node" bash -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() {  # a daemon not started from STATE must not hold the ports ours will listen on
  local d port
  for d in mariadbd:3306 slurmdbd:6819 slurmctld:6817 slurmd:6818; do
    port=${d#*:}; d=${d%%:*}
    if ! running "$d" && port_taken "$port"; then
      die "port $port (for $d) is already in use by another process — another SLURM cluster or" \
        "database? Stop it first (e.g. slurm/cluster.sh down OTHER_STATE), then rerun."
    fi
  done
}

up() {
  install_packages
  check_ports
  write_configs
  start_munged
  start_mariadb
  start_slurm
  echo "SLURM cluster '$CLUSTER' is up (state: $STATE). In your shell:"
  echo "  export SLURM_CONF=$STATE/etc/slurm.conf"
}

down() {
  for d in "${DAEMONS[@]}"; do
    local pid
    if pid=$(pid_of "$d"); then
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped $d ($pid)"
    fi
    rm -f "$STATE/run/$d.pid"
  done
}

status() {
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d running ($pid)"; else echo "$d stopped"; fi
  done
}

case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$STATE/etc/slurm.conf" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; [[ -z $cmd || $cmd == -h || $cmd == --help ]] || exit 2 ;;
esac
