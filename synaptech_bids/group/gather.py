"""Group step 1: gather the participants' derivatives, refuse what cannot be mixed.

Group results are only meaningful when every subject was processed the same
way: outputs made with a different configuration or pipeline version are
refused, subjects without derivatives are named, and channel sets are
reconciled to the channels every subject has (saying which were dropped).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from ..config import GROUP_ONLY_FIELDS
from ..errors import AppError, ExitCode

logger = logging.getLogger(__name__)

#: Units the group level works in: µV for EEG, fT for MEG. Keeping numbers
#: near 1 keeps float32 training and least squares well conditioned.
EEG_SCALE = 1e6
MEG_SCALE = 1e15


@dataclass
class SubjectDerivatives:
    """One subject's participant-level outputs.

    ``files`` holds one file per run: the cleaned epochs (``windows ==
    "epochs"``) or the cleaned continuous recording (``"sliding"``);
    ``ica_files`` each run's fitted ICA per modality (``"meg"``, ``"eeg"``),
    None where the participant level wrote none.
    """

    subject: str
    files: list[Path]
    logs: list[dict]
    info: mne.Info | None = field(default=None, repr=False)
    windows: str = "epochs"
    ica_files: dict[str, list[Path | None]] = field(default_factory=dict)


#: The file of each run the group level reads, by ``group_windows``.
RUN_FILE = {"epochs": "desc-{version}_epo.fif", "sliding": "desc-{version}_meg.fif"}


def find_subject_derivatives(
    output_dir: Path, subject: str, eeg_version: str = "ica", windows: str = "epochs"
) -> SubjectDerivatives | None:
    """Return the subject's cleaned data files and logs, or ``None`` when it has none.

    ``eeg_version`` picks the EEG: ``"ica"`` (ICA-cleaned) or ``"clean"``
    (filtered, blinks kept); the MEG is cleaned in both. ``windows`` picks
    epochs or continuous recordings (see :data:`RUN_FILE`).
    """
    subject_dir = Path(output_dir) / f"sub-{subject}"
    logs = sorted(subject_dir.rglob(f"sub-{subject}_*desc-preproc_log.json"))
    files = []
    for log in logs:
        data = log.with_name(log.name.replace(
            "desc-preproc_log.json", RUN_FILE[windows].format(version=eeg_version)))
        if not data.is_file():
            return None
        files.append(data)
    if not logs:
        return None
    icas = {m: [log.with_name(log.name.replace("desc-preproc_log.json", f"desc-{m}_ica.fif"))
                for log in logs] for m in ("meg", "eeg")}
    return SubjectDerivatives(
        subject=subject,
        files=files,
        logs=[json.loads(p.read_text()) for p in logs],
        windows=windows,
        ica_files={m: [p if p.is_file() else None for p in paths] for m, paths in icas.items()},
    )


def gather(
    output_dir: Path, subjects: list[str], eeg_version: str = "ica", windows: str = "epochs"
) -> list[SubjectDerivatives]:
    """Collect every subject's derivatives and check that they can be pooled.

    Raises
    ------
    AppError
        66 naming the subjects without participant-level derivatives (or,
        for sliding windows, without continuous recordings); 65 when
        subjects were processed with different configurations or versions;
        18 when fewer than two subjects are available (the evaluation holds
        whole subjects out).
    """
    found = {s: find_subject_derivatives(output_dir, s, eeg_version, windows)
             for s in subjects}
    missing = [s for s, d in found.items() if d is None]
    if missing and windows == "sliding" and all(
            find_subject_derivatives(output_dir, s, eeg_version) for s in missing):
        raise AppError(
            "group_windows = 'sliding' needs the cleaned continuous recordings, which "
            f"{', '.join('sub-' + s for s in missing)} lack: re-run the participant level "
            "with save_continuous = true in the config",
            ExitCode.NO_INPUT,
        )
    if missing:
        raise AppError(
            "no participant-level derivatives for "
            f"{', '.join('sub-' + s for s in missing)} in {output_dir}: run the "
            "participant level for them first (or leave them out with "
            "--participant-label)",
            ExitCode.NO_INPUT,
        )
    derivatives = [found[s] for s in subjects]
    _check_same_processing(derivatives)
    if len(derivatives) < 2:
        raise AppError(
            "the group level needs at least two subjects (models are scored on "
            "subjects they never saw)",
            ExitCode.NOTHING_SELECTED,
        )
    return derivatives


def _check_same_processing(derivatives: list[SubjectDerivatives]) -> None:
    def signature(log: dict) -> str:
        # Only participant options matter: group-only settings in a log say
        # nothing about how the derivatives were made.
        options = {k: v for k, v in log["Config"].items() if k not in GROUP_ONLY_FIELDS}
        return json.dumps(
            [options, log["Provenance"]["GeneratedBy"]["Version"]], sort_keys=True
        )

    reference = signature(derivatives[0].logs[0])
    for deriv in derivatives:
        for log in deriv.logs:
            if signature(log) != reference:
                raise AppError(
                    f"sub-{deriv.subject} ({log['Source']}) was processed with a "
                    f"different configuration or version than sub-{derivatives[0].subject}; "
                    "re-run the participant level with one configuration (--force)",
                    ExitCode.BAD_DATA,
                )


def common_channels(derivatives: list[SubjectDerivatives]) -> tuple[list[str], list[str], dict]:
    """EEG and magnetometer channels every subject has (good in every run).

    Returns
    -------
    eeg, mag : list of str
        Channel names in the first subject's order.
    dropped : dict
        ``{"eeg": [...], "mag": [...]}``: channels some subject lacks.
    """
    eeg_sets, mag_sets, orders = [], [], None
    for deriv in derivatives:
        for path in deriv.files:
            info = mne.io.read_info(path, verbose=False)
            if deriv.info is None:
                deriv.info = info
            good = [c for c in info.ch_names if c not in info["bads"]]
            types = dict(zip(info.ch_names, info.get_channel_types()))
            eeg_sets.append({c for c in good if types[c] == "eeg"})
            mag_sets.append({c for c in good if types[c] == "mag"})
            if orders is None:
                orders = info.ch_names
    eeg_all, mag_all = set.union(*eeg_sets), set.union(*mag_sets)
    eeg_common, mag_common = set.intersection(*eeg_sets), set.intersection(*mag_sets)
    dropped = {"eeg": sorted(eeg_all - eeg_common), "mag": sorted(mag_all - mag_common)}
    if dropped["eeg"] or dropped["mag"]:
        logger.warning("channels not shared by every subject are dropped: %s", dropped)
    eeg = [c for c in orders if c in eeg_common]
    mag = [c for c in orders if c in mag_common]
    if not eeg or not mag:
        raise AppError("subjects share no EEG or no magnetometer channel", ExitCode.BAD_DATA)
    return eeg, mag, dropped


def cache_subject(
    deriv: SubjectDerivatives, eeg: list[str], mag: list[str], directory: Path,
    window_length_s: float = 2.0, window_step_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load one subject's windows: EEG (µV), magnetometers (fT), condition names.

    The windows are the cleaned epochs, or (``deriv.windows == "sliding"``)
    windows of ``window_length_s`` every ``window_step_s`` over each cleaned
    continuous run, skipping any that touch a ``BAD``/``EDGE`` annotation;
    their condition is ``"n/a"``.

    Runs are read one at a time and written into ``directory``, so only one
    run is ever in memory; the arrays returned are read-only memory maps,
    which the kernel pages in and out as training reads them. At ds000117's
    scale (16 subjects, ~5 GB of float32 windows) this keeps the group level
    from holding every subject in RAM at once.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if deriv.windows == "sliding":
        runs = [_SlidingRun(path, window_length_s, window_step_s) for path in deriv.files]
    else:
        runs = [_EpochsRun(path) for path in deriv.files]
    n_windows = sum(run.n_windows for run in runs)
    n_times = runs[0].n_times
    out = {}
    for kind, picks, scale in (("eeg", eeg, EEG_SCALE), ("meg", mag, MEG_SCALE)):
        target = directory / f"sub-{deriv.subject}_{kind}.npy"
        tmp = target.with_suffix(".tmp.npy")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(n_windows, len(picks), n_times))
        start = 0
        for run in runs:
            array[start:start + run.n_windows] = run.windows(picks) * scale
            start += run.n_windows
        array.flush()
        del array
        tmp.replace(target)
        out[kind] = np.load(target, mmap_mode="r")
    conditions = np.concatenate([run.conditions() for run in runs])
    return out["eeg"], out["meg"], conditions


class _EpochsRun:
    """One run's cleaned epochs (read lazily)."""

    def __init__(self, path: Path) -> None:
        self.epochs = mne.read_epochs(path, preload=False, verbose=False)
        self.n_windows, self.n_times = len(self.epochs), len(self.epochs.times)

    def windows(self, picks: list[str]) -> np.ndarray:
        return self.epochs.get_data(picks=picks)

    def conditions(self) -> np.ndarray:
        names = {v: k for k, v in self.epochs.event_id.items()}
        return np.array([names[c] for c in self.epochs.events[:, 2]])


class _SlidingRun:
    """Windows slid over one cleaned continuous run, away from bad segments."""

    def __init__(self, path: Path, length_s: float, step_s: float) -> None:
        self.raw = mne.io.read_raw_fif(path, preload=False, verbose=False)
        sfreq = self.raw.info["sfreq"]
        self.n_times = int(round(length_s * sfreq))
        step_samples = max(1, int(round(step_s * sfreq)))
        # MNE marks samples under BAD/EDGE annotations as NaN: a window is
        # kept only when none of its samples is.
        bad = np.isnan(self.raw.get_data(picks=[0], reject_by_annotation="NaN")[0])
        bad_before = np.r_[0, np.cumsum(bad)]
        starts = np.arange(0, self.raw.n_times - self.n_times + 1, step_samples)
        self.starts = starts[bad_before[starts + self.n_times] == bad_before[starts]]
        self.n_windows = len(self.starts)

    def windows(self, picks: list[str]) -> np.ndarray:
        data = self.raw.get_data(picks=picks)
        view = np.lib.stride_tricks.sliding_window_view(data, self.n_times, axis=1)
        return view[:, self.starts].transpose(1, 0, 2)

    def conditions(self) -> np.ndarray:
        return np.full(self.n_windows, "n/a")


def pruned_eeg_channels(deriv: SubjectDerivatives) -> set[str]:
    """EEG electrodes in any of the subject's pruned pairs (participant level:
    within the distance threshold *and* significant MI, in any run).

    The pruning used the subject's MEG, so the group level takes a fold's
    channel set from its training subjects only.
    """
    channels: set[str] = set()
    for run_file in deriv.files:
        stem = run_file.name.rsplit("_desc-", 1)[0]
        table = run_file.with_name(f"{stem}_desc-pruned_channels.tsv")
        if table.is_file():
            channels |= set(pd.read_csv(table, sep="\t", usecols=["eeg_channel"],
                                        dtype=str)["eeg_channel"])
    return channels
