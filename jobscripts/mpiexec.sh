#!/usr/bin/env bash
# pdegen under MPICH's launcher without a batch system: a workstation, a cloud VM, or a few nodes
# listed in a host file. Always mpiexec.mpich, never the bare `mpiexec` (Debian's ParaView makes
# that OpenMPI's, which cannot start an MPICH-built pdegen).
#   jobscripts/mpiexec.sh DECK [key.path=value ...]                     # serial, all cores
#   PDEGEN_RANKS=2 jobscripts/mpiexec.sh DECK                           # 2 ranks, half the cores each
#   PDEGEN_RANKS=8 PDEGEN_RANKS_PER_NODE=2 PDEGEN_HOSTFILE=hosts jobscripts/mpiexec.sh DECK
# The run directory is runs/NAME, NAME = PDEGEN_JOB_NAME or the deck's file name (PDEGEN_RUNS=DIR
# puts it under DIR); running it again continues from the newest checkpoint there.
# More: jobscripts/README.md, docs/user-guide.md.
set -euo pipefail

for dir in "${PDEGEN_HOME:+$PDEGEN_HOME/jobscripts}" "$(dirname "$0")"; do
  if [ -n "$dir" ] && [ -f "$dir/common.sh" ]; then
    # shellcheck source=jobscripts/common.sh
    source "$dir/common.sh"
    break
  fi
done
command -v pdegen_job_setup >/dev/null || { echo "mpiexec.sh: cannot find jobscripts/common.sh; set PDEGEN_HOME" >&2; exit 2; }

pdegen_job_setup "$@"
if [ -n "${PDEGEN_HOSTFILE:-}" ]; then
  [ -f "$PDEGEN_HOSTFILE" ] || pdegen_die "PDEGEN_HOSTFILE=$PDEGEN_HOSTFILE not found"
  ranks="${PDEGEN_RANKS:?PDEGEN_HOSTFILE needs PDEGEN_RANKS (ranks in all)}"
  per_node="${PDEGEN_RANKS_PER_NODE:-$(pdegen_sockets)}"
  # The nodes are taken to be like this one.
  threads=$(($(pdegen_cores) / per_node))
  [ "$threads" -ge 1 ] || threads=1
  pdegen_threads "$threads"
  PDEGEN_LAYOUT="$ranks rank(s), $per_node per node (from $PDEGEN_HOSTFILE) x $OMP_NUM_THREADS thread(s)"
  pdegen_stage_data mpiexec.mpich -f "$PDEGEN_HOSTFILE" -n "$(sort -u "$PDEGEN_HOSTFILE" | grep -c .)" -ppn 1
  # -genvlist passes the OpenMP settings to the ranks on the other nodes.
  pdegen_run mpiexec.mpich -f "$PDEGEN_HOSTFILE" -n "$ranks" -ppn "$per_node" -bind-to "core:$threads" \
    -genvlist OMP_NUM_THREADS,OMP_PLACES,OMP_PROC_BIND
else
  pdegen_local_launcher
  pdegen_stage_data
  pdegen_run "${PDEGEN_LAUNCH[@]}"
fi
