"""``synaptech-bids-simulate``: write a simulated ds000117-like BIDS dataset.

Example::

    synaptech-bids-simulate /data/sim --subjects 4 --runs 2 --duration 120 --seed 1

Errors are one line on stderr with a non-zero exit status: 2 for bad
arguments (click's usage status), 73 when OUT cannot be created (it exists and
is not empty), 1 for anything else.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from .._version import __version__

_EXIT_USAGE = 2
_EXIT_CANT_CREATE = 73


class _OneLineError(click.ClickException):
    """A ClickException that prints ``Error: message`` and nothing else."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:  # noqa: D102 (click API)
        click.echo(f"Error: {self.format_message()}", err=True)


class _OneLineCommand(click.Command):
    """Turn click's multi-line usage errors into one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            msg = " ".join(err.format_message().split())
            raise _OneLineError(msg, _EXIT_USAGE) from None


@click.command(cls=_OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=True, dir_okay=True, path_type=Path))
@click.option(
    "--subjects",
    "n_subjects",
    type=int,
    default=3,
    show_default=True,
    help="Number of subjects (labels 01, 02, ...).",
)
@click.option("--runs", "n_runs", type=int, default=2, show_default=True, help="Runs per subject.")
@click.option(
    "--duration", type=float, default=60.0, show_default=True, help="Run length in seconds."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--sfreq", type=float, default=1100.0, show_default=True, help="Sampling frequency (Hz)."
)
@click.option(
    "--spread-mm",
    type=float,
    default=5.0,
    show_default=True,
    help="Between-subject spread of shared brain patches (RMS mm).",
)
@click.option(
    "--line-freq", type=float, default=50.0, show_default=True, help="Power-line frequency (Hz)."
)
@click.option(
    "--style",
    type=click.Choice(["ds000117", "mne-bids"]),
    default="ds000117",
    show_default=True,
    help="Sidecar and events.tsv layout.",
)
@click.option("--no-artifacts", is_flag=True, help="No blinks, heartbeat or room field.")
@click.option("--no-line-noise", is_flag=True, help="No power-line noise.")
@click.option("--no-sensor-noise", is_flag=True, help="No sensor noise.")
@click.option(
    "--save-forward",
    is_flag=True,
    help="Also write each subject's MNE forward solution on its cortex to "
    "OUT/derivatives/forward (for the group level's forward_dir).",
)
@click.option("-v", "--verbose", is_flag=True, help="Print progress.")
@click.version_option(__version__, prog_name="synaptech-bids-simulate")
def main(
    out: Path,
    n_subjects: int,
    n_runs: int,
    duration: float,
    seed: int,
    sfreq: float,
    spread_mm: float,
    line_freq: float,
    style: str,
    no_artifacts: bool,
    no_line_noise: bool,
    no_sensor_noise: bool,
    save_forward: bool,
    verbose: bool,
) -> None:
    """Simulate simultaneous EEG + MEG of a face task as a BIDS dataset in OUT.

    OUT must not exist or be an empty directory. The ground truth goes to
    OUT/derivatives/simulation.
    """
    checks = [
        (1 <= n_subjects <= 99, "--subjects must be between 1 and 99"),
        (1 <= n_runs <= 99, "--runs must be between 1 and 99"),
        (duration >= 5.0, "--duration must be at least 5 seconds"),
        (sfreq >= 112.5, "--sfreq must be at least 112.5 Hz"),
        (spread_mm >= 0.0, "--spread-mm must be >= 0"),
        (0.0 < line_freq < sfreq / 2, "--line-freq must be in (0, sfreq / 2)"),
        (seed >= 0, "--seed must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise _OneLineError(msg, _EXIT_USAGE)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise _OneLineError(f"{out} exists and is not an empty directory", _EXIT_CANT_CREATE)
    # Import here so that --help and argument errors stay fast.
    from .writer import simulate_dataset

    t0 = time.perf_counter()
    try:
        root = simulate_dataset(
            out,
            n_subjects=n_subjects,
            n_runs=n_runs,
            duration=duration,
            seed=seed,
            sfreq=sfreq,
            spread_mm=spread_mm,
            line_freq=line_freq,
            style=style,
            artifacts=not no_artifacts,
            line_noise=not no_line_noise,
            sensor_noise=not no_sensor_noise,
            save_forward=save_forward,
            verbose=verbose,
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise _OneLineError(f"{type(err).__name__}: {err}".splitlines()[0]) from None
    click.echo(
        f"wrote {n_subjects} subject(s) x {n_runs} run(s) to {root} "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stdout,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
