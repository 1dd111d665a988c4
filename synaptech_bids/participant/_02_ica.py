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

Where a recording lacks them, the channels cannot find the artefact, and the
EEG components are labelled by ICLabel (mne-icalabel) instead
(``ica_icalabel = "auto"``; ``"always"`` adds its labels to the channels'
choices, ``"never"`` turns it off). ICLabel was trained on extended-infomax
decompositions of average-referenced EEG filtered at 1-100 Hz, so the EEG
ICA is then fitted with Picard's extended-infomax variant (``ortho=False``),
as MNE-BIDS-Pipeline requires for its ICLabel option; components labelled
eye blink or heart beat with a probability of at least
:data:`ICLABEL_THRESHOLD` are removed. ICLabel knows nothing of MEG: the MEG
of a recording without EOG and ECG channels is left as it is, with a warning.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mne
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ..config import Config

logger = logging.getLogger(__name__)

#: ICLabel's classes removed as EOG and ECG, and the probability they need.
ICLABEL_ARTEFACTS = {"eye blink": "eog", "heart beat": "ecg"}
ICLABEL_THRESHOLD = 0.8


def _fit_ica(
    raw: mne.io.BaseRaw, picks: str, config: Config, seed: int, infomax: bool = False
) -> tuple[mne.preprocessing.ICA, mne.io.BaseRaw]:
    """Fit one modality's ICA; return it and the 1 Hz high-passed data it saw."""
    fit_raw = raw.copy().pick([picks] + [t for t in ("eog", "ecg") if t in raw])
    fit_raw.filter(1.0, None, verbose=False)
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
        # extended infomax (ortho=False) where ICLabel will read the result
        fit_params={"ortho": False, "extended": True} if infomax else {"fastica_it": 5},
        random_state=seed,
        max_iter=500,
        verbose=False,
    )
    # Fitting on ~60 Hz samples keeps what ICA needs (the spatial mixing of
    # blinks and QRS complexes, which are large and slow) at a quarter of the
    # cost at 250 Hz; 7.5 min still gives ~27,000 samples for 30 components.
    decim = max(1, int(raw.info["sfreq"] // 60))
    ica.fit(fit_raw, picks=picks, decim=decim, verbose=False)
    return ica, fit_raw


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


def find_iclabel_components(
    ica: mne.preprocessing.ICA, fit_raw: mne.io.BaseRaw
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """EEG components ICLabel calls eye blink or heart beat, and every label.

    ``fit_raw`` is the data the ICA was fitted on (average-referenced EEG,
    high-passed at 1 Hz).
    """
    from mne_icalabel import label_components

    eeg = fit_raw.copy().pick("eeg")
    result = label_components(eeg, ica, method="iclabel")
    labels, probabilities = result["labels"], np.asarray(result["y_pred_proba"], float)
    found: dict[str, list[int]] = {"eog": [], "ecg": []}
    for index, (label, probability) in enumerate(zip(labels, probabilities)):
        if label in ICLABEL_ARTEFACTS and probability >= ICLABEL_THRESHOLD:
            found[ICLABEL_ARTEFACTS[label]].append(index)
    return found, {"Labels": list(labels), "Probabilities": probabilities.round(3).tolist(),
                   "Threshold": ICLABEL_THRESHOLD}


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
    types = {t for t in ("meg", "eeg", "eog", "ecg") if t in raw}
    has_channels = bool({"eog", "ecg"} & types)
    use_iclabel = "eeg" in types and (
        config.ica_icalabel == "always"
        or (config.ica_icalabel == "auto" and not {"eog", "ecg"} <= types))
    modalities = [m for m in ("meg", "eeg") if m in types and (
        has_channels or (m == "eeg" and use_iclabel))]
    if not modalities:
        logger.warning("no EOG or ECG channel: ICA cannot find artefacts; skipped")
        log["Skipped"] = "no EOG or ECG channel"
        return raw, raw.copy(), log, {}
    if not has_channels and "meg" in types:
        logger.warning("no EOG or ECG channel: the MEG is not cleaned of blinks and "
                       "heartbeats (ICLabel classifies EEG components only)")
        log["MEGSkipped"] = "no EOG or ECG channel"

    def fit_and_choose(modality: str) -> tuple[mne.preprocessing.ICA, dict[str, Any]]:
        iclabel = modality == "eeg" and use_iclabel
        ica, fit_raw = _fit_ica(raw, modality, config, seed, infomax=iclabel)
        entry: dict[str, Any] = {"NComponents": int(ica.n_components_)}
        by_label: dict[str, list[int]] = {"eog": [], "ecg": []}
        if iclabel:
            by_label, entry["ICLabel"] = find_iclabel_components(ica, fit_raw)
            entry["Method"] = "Picard (extended infomax) for ICLabel"
        del fit_raw  # a high-passed copy of the modality: free it before the search
        found = find_artefact_components(ica, raw)
        found = {k: sorted(set(found[k]) | set(by_label[k])) for k in found}
        ica.exclude = sorted(set(found["eog"]) | set(found["ecg"]))
        return ica, {**entry, "EOGComponents": found["eog"], "ECGComponents": found["ecg"],
                     "Excluded": list(ica.exclude)}

    # The two modalities' ICAs are independent. Picard works on 30 x ~27,000
    # arrays, too small for a multi-threaded BLAS to use two cores well, so
    # with a budget of two or more threads the fits run side by side, one
    # BLAS thread each (measured on a 7.5-min run: 12.6 s instead of 30.1 s;
    # each fit has its own seed, so the components do not depend on it).
    n_threads = max((info["num_threads"] for info in threadpool_info()), default=1)
    if n_threads >= 2 and len(modalities) > 1:
        with threadpool_limits(limits=1), ThreadPoolExecutor(len(modalities)) as pool:
            results = list(pool.map(fit_and_choose, modalities))
    else:
        results = [fit_and_choose(m) for m in modalities]
    icas = {}
    for modality, (ica, entry) in zip(modalities, results):
        icas[modality] = ica
        log[modality.upper()] = entry
    if "meg" in icas:
        icas["meg"].apply(raw, verbose=False)
        log["MEG"]["EOGProjectors"] = _project_out_residual_blinks(raw)
    raw_ica = raw.copy()
    if "eeg" in icas:
        icas["eeg"].apply(raw_ica, verbose=False)
    return raw, raw_ica, log, icas


def correlation_with(signal: np.ndarray, data: np.ndarray) -> np.ndarray:
    """|Pearson r| between one time course and each row of ``data``."""
    s = (signal - signal.mean()) / signal.std()
    d = data - data.mean(axis=1, keepdims=True)
    d /= d.std(axis=1, keepdims=True)
    return np.abs(d @ s) / len(s)
