"""Step 2: remove eye-blink and heartbeat components with ICA, per modality.

Why: blinks and heartbeats reach both EEG and MEG. Left in, they are
"shared information" that is not brain signal, and every EEG–MEG mutual
information and translation R² would be inflated by them. So:

- the MEG is always cleaned (it is the translation target and one side of
  every information measure);
- the EEG is cleaned into a *separate* version (``desc-ica``), because the
  evaluation compares raw EEG, ICA-cleaned EEG and translated MEG.

One Picard ICA per modality (EEG; MEG magnetometers and
gradiometers together),
fitted on a 1 Hz high-passed copy (slow drifts break ICA's independence
assumption) and applied to the band-passed data. Components are chosen by
their correlation with the EOG channels (z-score above 3) and by
cross-trial phase statistics against the ECG channel (MNE's
``find_bads_eog`` / ``find_bads_ecg``), which
is what MNE-BIDS-Pipeline does; no template or classifier is needed when the
recording has EOG and ECG channels, as ds000117 does.
"""

from __future__ import annotations

import logging
from typing import Any

import mne
import numpy as np

from ..config import Config

logger = logging.getLogger(__name__)


def _fit_ica(raw: mne.io.BaseRaw, picks: str, config: Config, seed: int) -> mne.preprocessing.ICA:
    fit_raw = raw.copy().pick([picks, "eog", "ecg"]).filter(1.0, None, verbose=False)
    n_components = config.ica_n_components
    if n_components >= 1:
        rank = len(mne.pick_types(raw.info, meg=picks == "meg", eeg=picks == "eeg"))
        # average-referenced EEG has rank n - 1
        n_components = int(min(n_components, rank - 1))
    ica = mne.preprocessing.ICA(
        n_components=n_components,
        # Picard with its defaults (orthogonal, extended: the FastICA
        # solution) after 5 FastICA warm-up iterations, capped at 500
        # iterations: MNE-BIDS-Pipeline's default. Measured on a 7.5-min
        # simulated run, it finds the same EOG/ECG components as the
        # non-orthogonal extended-infomax variant in half the iterations.
        method="picard",
        fit_params={"fastica_it": 5},
        random_state=seed,
        max_iter=500,
        verbose=False,
    )
    # Fitting on ~60 Hz samples keeps what ICA needs (the spatial mixing of
    # blinks and QRS complexes, which are large and slow) at a quarter of the
    # cost at 250 Hz; 7.5 min still gives ~27,000 samples for 30 components.
    decim = max(1, int(raw.info["sfreq"] // 60))
    ica.fit(fit_raw, picks=picks, decim=decim, verbose=False)
    return ica


def find_artefact_components(
    ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw
) -> dict[str, list[int]]:
    """Components matching the EOG and ECG channels of ``raw``."""
    found: dict[str, list[int]] = {"eog": [], "ecg": []}
    types = raw.get_channel_types()
    if "eog" in types:
        found["eog"], _ = ica.find_bads_eog(raw, verbose=False)
    if "ecg" in types:
        found["ecg"], _ = ica.find_bads_ecg(raw, method="ctps", verbose=False)
    return {k: sorted(int(i) for i in v) for k, v in found.items()}


def _project_out_residual_blinks(raw: mne.io.BaseRaw) -> int:
    """Remove what ICA leaves of the blinks in the MEG, with one SSP vector per sensor type.

    ICA over all 306 MEG channels isolates the blink well in the
    gradiometers, but the magnetometers, whose variance is mostly the room
    field, keep a residual (correlation 0.2 with the true blink time course
    on simulated runs, against 0.06 for the gradiometers). One EOG projector
    per sensor type, computed on the ICA-cleaned data from blink epochs
    (:func:`mne.preprocessing.compute_proj_eog`, as MNE-BIDS-Pipeline's SSP
    step does), brings both below 0.1 at the cost of one spatial dimension
    each. Returns the number of projectors applied (0 when no EOG channel or
    no blink was found).
    """
    if "eog" not in raw.get_channel_types():
        return 0
    try:
        projs, _ = mne.preprocessing.compute_proj_eog(
            raw, n_mag=1, n_grad=1, n_eeg=0, reject=None, verbose=False)
    except (RuntimeError, ValueError) as err:  # no blink events found
        logger.info("no EOG projector: %s", err)
        return 0
    if not projs:
        return 0
    raw.add_proj(projs).apply_proj(verbose=False)
    return len(projs)


def remove_artefacts(
    raw: mne.io.BaseRaw, config: Config, seed: int
) -> tuple[mne.io.BaseRaw, mne.io.BaseRaw, dict[str, Any], dict[str, mne.preprocessing.ICA]]:
    """Clean MEG in place, and return an ICA-cleaned copy of the EEG too.

    Returns
    -------
    raw : mne.io.BaseRaw
        MEG cleaned; EEG untouched (the "plain" EEG version).
    raw_ica : mne.io.BaseRaw
        MEG cleaned; EEG cleaned (the "ICA-cleaned" EEG version).
    log : dict
        Components removed per modality and artefact, and their counts.
    icas : dict
        The fitted ICA of each modality, for the report.
    """
    log: dict[str, Any] = {"Method": "Picard (orthogonal, extended; FastICA warm start) on 1 Hz "
                           "high-passed data decimated to ~60 Hz; "
                           "components "
                           "found with find_bads_eog (EOG) and find_bads_ecg "
                           "(cross-trial phase statistics, ECG); then one EOG SSP "
                           "projector per MEG sensor type for the residual blink"}
    types = set(raw.get_channel_types())
    if not {"eog", "ecg"} & types:
        logger.warning("no EOG or ECG channel: ICA cannot find artefacts; skipped")
        log["Skipped"] = "no EOG or ECG channel"
        return raw, raw.copy(), log, {}
    icas = {}
    for modality in ("meg", "eeg"):
        ica = _fit_ica(raw, modality, config, seed)
        found = find_artefact_components(ica, raw)
        ica.exclude = sorted(set(found["eog"]) | set(found["ecg"]))
        icas[modality] = ica
        log[modality.upper()] = {
            "NComponents": int(ica.n_components_),
            "EOGComponents": found["eog"],
            "ECGComponents": found["ecg"],
            "Excluded": list(ica.exclude),
        }
    icas["meg"].apply(raw, verbose=False)
    log["MEG"]["EOGProjectors"] = _project_out_residual_blinks(raw)
    raw_ica = raw.copy()
    icas["eeg"].apply(raw_ica, verbose=False)
    return raw, raw_ica, log, icas


def correlation_with(signal: np.ndarray, data: np.ndarray) -> np.ndarray:
    """|Pearson r| between one time course and each row of ``data``."""
    s = (signal - signal.mean()) / signal.std()
    d = data - data.mean(axis=1, keepdims=True)
    d /= d.std(axis=1, keepdims=True)
    return np.abs(d @ s) / len(s)
