#!/usr/bin/env bash
# Make this machine able to run a single-node SLURM for tests/scheduler/:
# Debian's slurm-wlm (slurmctld, slurmd and the client commands) and munge,
# installed with apt-get (as root) when missing. Idempotent; it starts no
# daemon: tests/scheduler/conftest.py writes a slurm.conf into a temporary
# folder and starts munged, slurmctld and slurmd itself, then stops them.
#
# Usage: docker/prepare_slurm.sh            (from anywhere)
set -euo pipefail

say() { echo "prepare_slurm: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

export PATH=$PATH:/usr/sbin:/sbin
missing=()
for cmd in slurmctld slurmd sbatch squeue scontrol sinfo; do
    command -v "$cmd" >/dev/null || { missing+=(slurm-wlm); break; }
done
command -v munged >/dev/null || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "${missing[*]} missing and not root: sudo apt-get install ${missing[*]}"
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get to install them"
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    # Installing must not start the daemons (no init system in containers; the
    # tests start their own with their own configuration).
    policy=/usr/sbin/policy-rc.d
    had_policy=0
    [ -e "$policy" ] && had_policy=1
    [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || { [ "$had_policy" = 1 ] || rm -f "$policy"; die "apt-get failed"; }
    [ "$had_policy" = 1 ] || rm -f "$policy"
fi
for cmd in slurmctld slurmd sbatch squeue scontrol sinfo munged; do
    command -v "$cmd" >/dev/null || die "$cmd not found after installing slurm-wlm and munge"
done
say "slurm $(slurmd -V | awk '{ print $2 }') and munge present"
