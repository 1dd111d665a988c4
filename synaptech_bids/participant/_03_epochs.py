"""Step 3: cut the cleaned run into epochs around the events, reject bad ones.

Epochs are the paper's 2-second windows (default −0.5 to 1.5 s around the
stimulus, baseline −0.5 to 0 s). Rejection is peak-to-peak per channel type,
applied to EEG and MEG together: a window is kept only when both modalities
are usable, since every later analysis needs the pair. The thresholds are
fixed (``reject = "ptp"``) or estimated per run and channel type by
autoreject's ``get_rejection_threshold`` (``reject = "autoreject"``: the
threshold whose kept epochs' average best matches the median of held-out
epochs, by 5-fold cross-validation; Jas et al., 2017). What was rejected and why is
counted for the log and the report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import mne
import numpy as np

from ..config import Config
from ..errors import AppError, ExitCode

#: autoreject's cross-validation has 5 folds, so it needs at least 5 epochs.
AUTOREJECT_MIN_EPOCHS = 5


def reject_thresholds(config: Config, info: mne.Info) -> dict[str, float]:
    """Fixed peak-to-peak thresholds in SI units, for the channel types present."""
    present = set(info.get_channel_types())
    thresholds = {
        "eeg": config.reject_eeg_uv * 1e-6,
        "mag": config.reject_mag_ft * 1e-15,
        "grad": config.reject_grad_ft_cm * 1e-15 / 1e-2,
    }
    return {k: v for k, v in thresholds.items() if k in present}


def autoreject_thresholds(epochs: mne.Epochs, seed: int) -> dict[str, float]:
    """Global peak-to-peak thresholds per channel type, estimated by autoreject.

    As MNE-BIDS-Pipeline's ``reject = "autoreject_global"``: one threshold
    each for EEG, magnetometers and gradiometers (not EOG/ECG, which are not
    rejected on), channels marked bad left out.

    Parameters
    ----------
    epochs : mne.Epochs
        Loaded epochs, not yet rejected on amplitude.
    seed : int
        Seed of autoreject's Bayesian optimisation: the same seed gives the
        same thresholds.

    Returns
    -------
    thresholds : dict
        Channel type to threshold in SI units (V, T, T/m).
    """
    try:
        from autoreject import get_rejection_threshold
    except ImportError as err:
        raise AppError(
            "reject = 'autoreject' needs the autoreject package (pip install autoreject)",
            ExitCode.USAGE,
        ) from err
    ch_types = [t for t in ("eeg", "mag", "grad") if t in epochs.get_channel_types()]
    thresholds = get_rejection_threshold(epochs, ch_types=ch_types, random_state=seed,
                                         verbose=False)
    return {k: float(v) for k, v in thresholds.items()}


def make_epochs(raw: mne.io.BaseRaw, config: Config,
                seed: int = 0) -> tuple[mne.Epochs, dict]:
    """Epoch a cleaned run around its annotated events, rejecting bad epochs.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        A preprocessed run whose annotations are the events of ``events.tsv``.
    config : Config
        Window, baseline, rejection method and fixed thresholds.
    seed : int
        Seed of autoreject (``config.reject == "autoreject"``); unused otherwise.

    Returns
    -------
    epochs : mne.Epochs
        Loaded epochs, EEG, MEG, EOG and ECG channels.
    log : dict
        Counts of events, kept and rejected epochs, by condition and reason.
    """
    conditions = sorted(set(raw.annotations.description) - {"BAD_ACQ_SKIP", "n/a"})
    conditions = [c for c in conditions if not c.upper().startswith(("BAD", "EDGE"))]
    if not conditions:
        raise AppError(
            "run has no events to epoch (events.tsv missing or empty)",
            ExitCode.BAD_DATA,
        )
    event_id = {name: i + 1 for i, name in enumerate(conditions)}
    events, event_id = mne.events_from_annotations(raw, event_id=event_id, verbose=False)
    picks = mne.pick_types(raw.info, meg=True, eeg=True, eog=True, ecg=True, exclude=[])
    epochs = mne.Epochs(
        raw,
        events,
        event_id=event_id,
        tmin=config.epochs_tmin,
        tmax=config.epochs_tmax,
        baseline=tuple(config.baseline),
        picks=picks,
        reject=None,  # decided below, once the thresholds are known
        reject_by_annotation=True,
        preload=True,
        verbose=False,
    )
    method = "fixed"
    thresholds = reject_thresholds(config, raw.info)
    if config.reject == "autoreject":
        if len(epochs) >= AUTOREJECT_MIN_EPOCHS:
            thresholds = autoreject_thresholds(epochs, seed)
            method = f"autoreject global (get_rejection_threshold, seed {seed})"
        else:
            method = (f"fixed (autoreject needs at least {AUTOREJECT_MIN_EPOCHS} epochs, "
                      f"the run has {len(epochs)})")
    epochs.drop_bad(reject=thresholds, verbose=False)
    reasons: Counter[str] = Counter()
    for entry in epochs.drop_log:
        if entry:
            reasons[_reason(entry, raw)] += 1
    kept = Counter(epochs.events[:, 2])
    total = Counter(events[:, 2])
    log: dict[str, Any] = {
        "Window": [config.epochs_tmin, config.epochs_tmax],
        "Baseline": list(config.baseline),
        "RejectMethod": method,
        "RejectPeakToPeak": thresholds,
        "EventsPerCondition": {c: int(total[i]) for c, i in event_id.items()},
        "KeptPerCondition": {c: int(kept[i]) for c, i in event_id.items()},
        "RejectedByReason": dict(reasons),
        "Kept": len(epochs),
        "Total": len(events),
    }
    if len(epochs) == 0:
        raise AppError(
            f"all {len(events)} epochs were rejected ({dict(reasons)}); "
            "raise the rejection thresholds in the config (reject = 'ptp')",
            ExitCode.BAD_DATA,
        )
    return epochs, log


def epochs_like(raw: mne.io.BaseRaw, reference: mne.Epochs, config: Config) -> mne.Epochs:
    """Epoch another version of the same run, keeping exactly ``reference``'s epochs.

    Used for the plain-EEG version: rejection is decided once, on the
    ICA-cleaned data, so that both EEG versions hold the same trials and
    can be compared trial by trial.
    """
    events = mne.events_from_annotations(raw, event_id=reference.event_id, verbose=False)[0]
    epochs = mne.Epochs(
        raw, events, event_id=reference.event_id, tmin=config.epochs_tmin,
        tmax=config.epochs_tmax, baseline=tuple(config.baseline), picks=reference.ch_names,
        reject=None, reject_by_annotation=True, preload=True, verbose=False,
    )
    keep = set(reference.selection.tolist())
    epochs.drop([i for i, s in enumerate(epochs.selection) if s not in keep],
                reason="rejected in the ICA-cleaned version", verbose=False)
    return epochs


def _reason(entry: tuple[str, ...], raw: mne.io.BaseRaw) -> str:
    """Name why an epoch was dropped: a channel type, an annotation, or other."""
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    kinds = sorted({types.get(name, name) for name in entry})
    return "+".join(kinds) if kinds else "unknown"


def evoked_snr(epochs: mne.Epochs, ch_type: str) -> float:
    """Post-stimulus over baseline RMS of the average, for a quick sanity number."""
    evoked = epochs.average(picks=ch_type)
    times = evoked.times
    base = evoked.data[:, times < 0]
    post = evoked.data[:, (times > 0.05) & (times < 0.5)]
    return float(np.sqrt(np.mean(post**2)) / np.sqrt(np.mean(base**2)))
