"""Find and read the simultaneous EEG+MEG runs of a BIDS dataset.

ds000117 is the reference layout: one Neuromag FIF per run holding MEG and
EEG, ``channels.tsv`` and ``meg.json`` at session level (BIDS inheritance),
``EEG061``–``EEG064`` typed as HEOG/VEOG/ECG/MISC in ``channels.tsv`` (it wins
over the FIF, where they are EEG), and events with a ``stim_type`` column
where current BIDS says ``trial_type``. mne-bids applies the sidecars
(channel types, bad channels, line frequency, digitisation); this module adds
the events with either column name, and says why a run is skipped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from mne_bids import BIDSPath, find_matching_paths, read_raw_bids

from ..errors import AppError, ExitCode

logger = logging.getLogger(__name__)

#: Column names that may hold the condition of an event, in order of preference.
EVENT_NAME_COLUMNS = ("trial_type", "stim_type")
#: Column names that may hold the trigger code of an event.
EVENT_CODE_COLUMNS = ("value", "trigger")


@dataclass(frozen=True)
class Run:
    """One recording of a subject with both EEG and MEG.

    Attributes
    ----------
    bids_path : BIDSPath
        The raw data file.
    n_eeg, n_meg : int
        Number of EEG and MEG channels (after ``channels.tsv`` typing).
    """

    bids_path: BIDSPath
    n_eeg: int
    n_meg: int

    @property
    def name(self) -> str:
        """The file's basename, for messages."""
        return self.bids_path.basename


def find_runs(
    bids_root: Path,
    subject: str,
    sessions: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> list[Run]:
    """Return every MEG run of ``subject`` that also holds EEG.

    A run without EEG or without MEG is skipped with a warning that names it.

    Raises
    ------
    AppError
        18 when no run of the subject holds both.
    """
    paths = find_matching_paths(
        bids_root,
        subjects=subject,
        sessions=list(sessions) if sessions else None,
        tasks=list(tasks) if tasks else None,
        datatypes="meg",
        suffixes="meg",
        extensions=".fif",
    )
    # Split FIF files (``_split-02``) are read through their first part.
    paths = sorted(
        (p for p in paths if p.split in (None, "01")), key=lambda p: p.basename
    )
    runs = []
    for path in paths:
        types = _channel_types(path)
        n_eeg = int(np.sum(types == "eeg"))
        n_meg = int(np.sum(np.isin(types, ("mag", "grad"))))
        if n_eeg == 0 or n_meg == 0:
            missing = "EEG" if n_eeg == 0 else "MEG"
            logger.warning("skipping %s: it has no %s channels", path.basename, missing)
            continue
        runs.append(Run(bids_path=path, n_eeg=n_eeg, n_meg=n_meg))
    if not runs:
        narrowed = ""
        if sessions or tasks:
            narrowed = f" (sessions {sessions or 'all'}, tasks {tasks or 'all'})"
        raise AppError(
            f"sub-{subject} has no run with both EEG and MEG{narrowed}",
            ExitCode.NOTHING_SELECTED,
        )
    return runs


def _channel_types(bids_path: BIDSPath) -> np.ndarray:
    """Channel types of a run after ``channels.tsv``, without reading its data."""
    raw = read_run(bids_path, with_events=False)
    return np.array(raw.get_channel_types())


def read_run(bids_path: BIDSPath, *, with_events: bool = True) -> mne.io.BaseRaw:
    """Read one run with its sidecars applied; data stay on disk until needed.

    Parameters
    ----------
    bids_path : BIDSPath
        The run's raw data file.
    with_events : bool
        Replace the annotations with the events of ``events.tsv``, read with
        either ``trial_type`` or ``stim_type`` naming the conditions.

    Returns
    -------
    raw : mne.io.BaseRaw
        Not preloaded; channel types and bad channels from ``channels.tsv``.

    Raises
    ------
    AppError
        65 when the file cannot be read.
    """
    try:
        with warnings.catch_warnings():
            # mne-bids warns about every sidecar field it does not use;
            # what matters is logged by the steps themselves.
            warnings.simplefilter("ignore")
            raw = read_raw_bids(bids_path, extra_params={"preload": False}, verbose=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise AppError(
            f"cannot read {bids_path.basename}: {err}".splitlines()[0],
            ExitCode.BAD_DATA,
        ) from err
    if with_events:
        events_path = bids_path.copy().update(suffix="events", extension=".tsv")
        if events_path.fpath.is_file():
            annotations = read_events_tsv(events_path.fpath)
            raw.set_annotations(annotations)
    return raw


def read_events_tsv(path: Path) -> mne.Annotations:
    """Read ``events.tsv`` as annotations named by condition.

    The condition comes from ``trial_type`` (current BIDS) or ``stim_type``
    (ds000117); a file with neither is named by its trigger ``value`` /
    ``trigger`` column. Onsets are relative to the start of the recording.
    """
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    if "onset" not in table:
        raise AppError(f"{path.name} has no 'onset' column", ExitCode.BAD_DATA)
    name_column = next((c for c in EVENT_NAME_COLUMNS if c in table), None)
    code_column = next((c for c in EVENT_CODE_COLUMNS if c in table), None)
    if name_column is None and code_column is None:
        raise AppError(
            f"{path.name} names no condition: it needs a trial_type, stim_type, "
            "value or trigger column",
            ExitCode.BAD_DATA,
        )
    table = table.dropna(subset=["onset"])
    if name_column is not None:
        descriptions = table[name_column].fillna("n/a").astype(str)
    else:
        descriptions = table[code_column].astype("Int64").astype(str)
    durations = table["duration"].fillna(0.0) if "duration" in table else 0.0
    return mne.Annotations(
        onset=table["onset"].to_numpy(float),
        duration=np.broadcast_to(np.asarray(durations, float), len(table)),
        description=descriptions.to_numpy(),
        # None: onsets count from the first sample, as events.tsv's do.
        orig_time=None,
    )
