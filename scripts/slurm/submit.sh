#!/usr/bin/env bash
# Submit synaptech-bids to SLURM: the participant level as an array of one task
# per participant of BIDS_DIR/participants.tsv, then the group level, which
# starts only when every task has succeeded and is cancelled by SLURM if one
# fails (--dependency=afterok:ARRAY --kill-on-invalid-dep=yes).
#
# Usage:
#   scripts/slurm/submit.sh [OPTIONS] BIDS_DIR OUTPUT_DIR [APP_OPTION ...]
#
# APP_OPTIONs (e.g. --config FILE, --skip-bids-validator) are given to both
# levels. OPTIONS:
#   --participant-opts 'SBATCH OPTIONS'  added to the array's sbatch (they win
#                                        over the script's #SBATCH lines), e.g.
#                                        '--cpus-per-task=8 --mem=8G --time=30'
#   --group-opts 'SBATCH OPTIONS'        the same for the group job
#   --max-parallel K                     at most K tasks at once (--array=1-N%K)
#   --log-dir DIR                        the jobs' logs (default OUTPUT_DIR/logs):
#                                        DIR/synaptech-participant_<job>_<task>.log
#                                        per task, DIR/synaptech-group_<job>.log
#   --no-group                           submit the array only
# Environment: SYNAPTECH_CONTAINER, SYNAPTECH_IMAGE, SYNAPTECH_BIND (see
# participant_array.sbatch); the jobs inherit it (sbatch's --export=ALL).
#
# Prints ARRAY_JOB=<id> and GROUP_JOB=<id> on stdout. See docs/hpc.md.
set -euo pipefail

HERE=$(cd "$(dirname "$(realpath "$0")")" && pwd)
die() { echo "submit.sh: error: $*" >&2; exit 64; }

participant_opts="" group_opts="" max_parallel="" log_dir="" with_group=1
while [ $# -gt 0 ]; do
    case $1 in
    --participant-opts) participant_opts=${2?}; shift 2 ;;
    --group-opts) group_opts=${2?}; shift 2 ;;
    --max-parallel) max_parallel=${2?}; shift 2 ;;
    --log-dir) log_dir=${2?}; shift 2 ;;
    --no-group) with_group=0; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || die "usage: submit.sh [OPTIONS] BIDS_DIR OUTPUT_DIR [APP_OPTION ...]"
BIDS_DIR=$(realpath -m "$1")
OUTPUT_DIR=$(realpath -m "$2")
shift 2

table=$BIDS_DIR/participants.tsv
[ -f "$table" ] || die "$table not found: one array task per participant needs it"
# Data rows: non-empty lines after the header (as participant_array.sbatch reads them).
n=$(awk -F '\t' '{ sub(/\r$/, "") } NR > 1 && NF' "$table" | wc -l)
[ "$n" -gt 0 ] || die "$table lists no participant"
array=1-$n${max_parallel:+%$max_parallel}

log_dir=$(realpath -m "${log_dir:-$OUTPUT_DIR/logs}")
mkdir -p "$log_dir"

# shellcheck disable=SC2086  # the *_opts are lists of options
array_job=$(sbatch --parsable --array="$array" \
    --output="$log_dir/%x_%A_%a.log" $participant_opts \
    "$HERE/participant_array.sbatch" "$BIDS_DIR" "$OUTPUT_DIR" "$@")
array_job=${array_job%%;*}
echo "submit.sh: participant array job $array_job: $n task(s) ($array)," \
    "logs $log_dir/synaptech-participant_${array_job}_<task>.log" >&2
echo "ARRAY_JOB=$array_job"
[ "$with_group" = 1 ] || exit 0

# shellcheck disable=SC2086
group_job=$(sbatch --parsable --dependency="afterok:$array_job" --kill-on-invalid-dep=yes \
    --output="$log_dir/%x_%j.log" $group_opts \
    "$HERE/group.sbatch" "$BIDS_DIR" "$OUTPUT_DIR" "$@")
group_job=${group_job%%;*}
echo "submit.sh: group job $group_job after every task of $array_job succeeds" \
    "(cancelled if one fails), log $log_dir/synaptech-group_$group_job.log" >&2
echo "GROUP_JOB=$group_job"
