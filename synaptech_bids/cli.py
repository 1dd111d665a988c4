"""The command line: ``synaptech-bids BIDS_DIR OUTPUT_DIR {participant,group}``.

This module parses options, checks every input before any work, maps errors
to the exit codes of the BIDS execution specification, and hands over to
:mod:`synaptech_bids.participant.run` or :mod:`synaptech_bids.group.run`.
Nothing else.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from ._version import __version__
from .errors import AppError, ExitCode

LEVELS = ("participant", "group")
logger = logging.getLogger("synaptech_bids")


class MultiValueCommand(click.Command):
    """A command whose list options take space-separated values.

    Every BIDS-App accepts ``--participant-label 01 02 03`` (argparse's
    ``nargs="+"``); click options take one value per flag. Before parsing,
    the values following such an option (up to the next ``-``-prefixed
    token) are rewritten as repeated flags, so both
    ``--participant-label 01 02`` and ``--participant-label 01
    --participant-label 02`` work.
    """

    multi_value_options = ("--participant-label", "--session-label", "--task")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        current: str | None = None
        for arg in args:
            if arg in self.multi_value_options:
                current = arg
                rewritten.append(arg)
                continue
            if current is not None and not arg.startswith("-"):
                if rewritten[-1] != current:
                    rewritten.append(current)
                rewritten.append(arg)
                continue
            current = None
            rewritten.append(arg)
        try:
            return super().parse_args(ctx, rewritten)
        except click.UsageError as err:
            err.exit_code = int(ExitCode.USAGE)
            raise

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; an :class:`AppError` becomes one line and its code."""
        try:
            return super().invoke(ctx)
        except AppError as err:
            click.echo(f"synaptech-bids: error: {err}", err=True)
            ctx.exit(int(err.code))


def default_n_threads() -> int:
    """Threads this job may use: what the scheduler gave it, else its CPUs.

    ``SLURM_CPUS_PER_TASK`` (or the CPU affinity of the process, which
    cgroups and ``taskset`` restrict) — never more than the machine has.
    """
    machine = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = machine
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    given = int(slurm) if slurm.isdigit() and int(slurm) > 0 else allowed
    return max(1, min(given, allowed, machine))


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    from .distributed import env

    # under torchrun the ranks share one log: say which one speaks
    who = f"[rank {env().rank}] " if env().world_size > 1 else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s {who}%(name)s %(levelname)s: %(message)s"
    )
    # -v shows progress in batch logs; on a terminal it is printed anyway
    logger.setLevel(level)
    import mne

    mne.set_log_level("WARNING" if verbose < 2 else "INFO")


def _limit_threads(n_threads: int) -> None:
    """Cap BLAS, OpenMP and torch threads for the rest of the process."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n_threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n_threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n_threads)


@click.command(
    cls=MultiValueCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("bids_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.argument("analysis_level", metavar="{participant,group}")
@click.option(
    "--participant-label",
    "participant_labels",
    multiple=True,
    metavar="LABEL [LABEL ...]",
    help="Participants to process, space-separated, with or without 'sub-' "
    "(default: all).",
)
@click.option(
    "--session-label",
    "session_labels",
    multiple=True,
    metavar="LABEL [LABEL ...]",
    help="Sessions to process, with or without 'ses-' (default: all).",
)
@click.option(
    "--task", "tasks", multiple=True, metavar="TASK [TASK ...]",
    help="Tasks to process (default: all).",
)
@click.option(
    "--skip-bids-validator", is_flag=True, help="Do not check the input's file names."
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    help="Folder for intermediate files (default: OUTPUT_DIR/work).",
)
@click.option(
    "--n-jobs", type=click.IntRange(min=1), default=1, show_default=True,
    help="Parallel jobs (runs or folds processed at once).",
)
@click.option(
    "--omp-nthreads",
    type=click.IntRange(min=1),
    help="BLAS/torch threads (default: SLURM_CPUS_PER_TASK or the CPUs this "
    "process may use; never more than the machine has).",
)
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path),
    help="TOML or JSON file of pipeline options (see docs/usage.md).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Device for training and translation.",
)
@click.option(
    "--fold", type=click.IntRange(min=1),
    help="Group level: compute only this leave-subjects-out fold (1-based, e.g. "
    "$SLURM_ARRAY_TASK_ID) and keep it in the work directory; a later group run "
    "without --fold combines the finished folds.",
)
@click.option("--force", is_flag=True, help="Recompute outputs that are up to date.")
@click.option("-v", "--verbose", count=True, help="More messages (-vv for MNE's).")
@click.version_option(__version__, prog_name="synaptech-bids")
def app(
    bids_dir: Path,
    output_dir: Path,
    analysis_level: str,
    participant_labels: tuple[str, ...],
    session_labels: tuple[str, ...],
    tasks: tuple[str, ...],
    skip_bids_validator: bool,
    work_dir: Path | None,
    n_jobs: int,
    omp_nthreads: int | None,
    config_file: Path | None,
    seed: int,
    device: str,
    fold: int | None,
    force: bool,
    verbose: int,
) -> None:
    """Measure and translate the information shared by simultaneous EEG and MEG.

    BIDS_DIR is the input dataset (read-only); OUTPUT_DIR receives the
    BIDS-Derivatives. Run 'participant' for each subject (independently, e.g.
    as a SLURM array), then 'group' once.
    """
    from .bids_io.dataset import (
        normalise_labels,
        read_dataset_description,
        select_participants,
        validate_bids,
    )
    from .bids_io.derivatives import check_output_dir
    from .config import ConfigError, load_config
    from .distributed import env as dist_env
    from .distributed import threads_per_process

    _configure_logging(verbose)
    if analysis_level not in LEVELS:
        raise AppError(
            f"unknown analysis level {analysis_level!r}: use 'participant' or 'group'",
            ExitCode.UNKNOWN_LEVEL,
        )
    try:
        config = load_config(config_file)
    except ConfigError as err:
        raise AppError(str(err), ExitCode.USAGE) from err
    source_description = read_dataset_description(bids_dir)
    if not skip_bids_validator:
        validate_bids(bids_dir)
    subjects = select_participants(bids_dir, participant_labels)
    # torchrun workers on one node share its CPUs
    n_threads = omp_nthreads or threads_per_process(default_n_threads())
    if omp_nthreads and omp_nthreads > (os.cpu_count() or 1):
        n_threads = os.cpu_count() or 1
        logger.warning("--omp-nthreads %d exceeds the machine's %d cores: using %d",
                       omp_nthreads, n_threads, n_threads)
    output_dir = check_output_dir(bids_dir, output_dir)
    _limit_threads(n_threads)

    options = {
        "bids_root": bids_dir.resolve(),
        "output_dir": output_dir,
        "subjects": subjects,
        "sessions": normalise_labels(session_labels, "ses-") or None,
        "tasks": normalise_labels(tasks, "task-") or None,
        "work_dir": (work_dir or output_dir / "work").resolve(),
        "config": config,
        "n_jobs": n_jobs,
        "n_threads": n_threads,
        "seed": seed,
        "device": device,
        "force": force,
        "source_description": source_description,
    }
    if analysis_level == "participant":
        from .participant.run import run_participant_level

        if dist_env().world_size > 1:
            raise AppError(
                "the participant level runs one process per subject (e.g. a SLURM "
                "array), not under torchrun; torchrun is for the group level",
                ExitCode.USAGE,
            )
        if fold is not None:
            raise AppError("--fold is a group-level option", ExitCode.USAGE)
        run_participant_level(**options)
    else:
        from .distributed import session
        from .group.run import run_group_level

        # under torchrun: join the process group; a plain run starts nothing
        with session(device):
            run_group_level(**options, fold=fold)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``synaptech-bids``)."""
    app.main(args=argv, prog_name="synaptech-bids")
