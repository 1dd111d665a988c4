"""Step 6: the information EEG and MEG share, per run.

Computed on the cleaned continuous data (ICA-cleaned EEG, average reference;
EOG/ECG-cleaned magnetometers), so that blinks and heartbeats seen by both
modalities do not count as shared information:

- Gaussian-copula MI (Ince et al. 2017, bias-corrected, bits) for every EEG
  electrode × magnetometer pair over the configured lags, its best lag, and
  significance against circularly shifted MEG surrogates with max-statistic
  correction over all pairs *and* lags (family-wise error rate);
- the same MI on the epochs (no lag crosses an epoch boundary);
- Gaussian transfer entropy in both directions for the distance-paired
  channels, with the same kind of surrogate test;
- MI as a function of EEG–MEG distance, per electrode and pooled, with an
  exponential and a power-law decay fitted to the pooled curve;
- the paper's pruning: pairs within the distance threshold *and* with
  significant MI.

The estimators live in :mod:`synaptech_bids.information` (arrays only); this
module only feeds them and lays out the tables.
"""

from __future__ import annotations

from typing import Any

import mne
import numpy as np
import pandas as pd

from .. import information as info_est
from ..config import Config

#: History length (samples) of the Gaussian transfer entropy.
TE_HISTORY = 5


def _pick(raw_or_epochs: Any, ch_type: str) -> list[str]:
    types = raw_or_epochs.get_channel_types()
    bads = set(raw_or_epochs.info["bads"])
    return [c for c, t in zip(raw_or_epochs.ch_names, types) if t == ch_type and c not in bads]


def shared_information(
    raw: mne.io.BaseRaw, epochs: mne.Epochs, distances_m: pd.DataFrame,
    pairs: pd.DataFrame, config: Config, seed: int,
) -> dict[str, Any]:
    """Compute every information measure of one run.

    Parameters
    ----------
    raw : Raw
        The cleaned continuous run (EEG and magnetometers used).
    epochs : Epochs
        The same run's cleaned epochs.
    distances_m : DataFrame
        ``eeg_channel`` column and one column per magnetometer, in cm (as
        written by the pairing step).
    pairs : DataFrame
        The distance pairs (``meg_channel``, ``eeg_channel``).
    config : Config
    seed : int

    Returns
    -------
    tables : dict
        ``mi`` (one row per pair), ``lag_profile``, ``te``, ``distance_curve``,
        ``pruned`` (DataFrames), ``decay`` (dict), ``mi_lagged`` (ndarray
        (n_eeg, n_mag, n_lags)), ``lags_ms`` and ``meta`` (dict).
    """
    eeg_names, mag_names = _pick(raw, "eeg"), _pick(raw, "mag")
    eeg = raw.get_data(picks=eeg_names)
    meg = raw.get_data(picks=mag_names)
    sfreq = raw.info["sfreq"]
    lags_s = tuple(ms * 1e-3 for ms in config.mi_lags_ms)
    test = info_est.surrogate_max_test(
        eeg, meg, sfreq, lags_s=lags_s, n_surrogates=config.n_surrogates, seed=seed,
    )
    lags_ms = 1e3 * np.asarray(test["lags"]) / sfreq
    dist = distances_m.set_index("eeg_channel").loc[eeg_names, mag_names].to_numpy() / 100.0

    ep_eeg = epochs.get_data(picks=eeg_names)
    ep_meg = epochs.get_data(picks=mag_names)
    mi_epochs, _ = info_est.gcmi_lagged(ep_eeg, ep_meg, sfreq, lags=test["lags"])
    best_epochs, _ = info_est.best_lag(mi_epochs, test["lags"])

    ii, jj = np.meshgrid(np.arange(len(eeg_names)), np.arange(len(mag_names)), indexing="ij")
    mi_table = pd.DataFrame({
        "eeg_channel": np.asarray(eeg_names)[ii.ravel()],
        "meg_channel": np.asarray(mag_names)[jj.ravel()],
        "distance": np.round(100 * dist.ravel(), 4),
        "mi": test["best_mi"].ravel(),
        "best_lag": 1e3 * test["best_lag"].ravel() / sfreq,
        "p_value": test["p_values"].ravel(),
        "significant": test["significant"].ravel(),
        "mi_epochs": best_epochs.ravel(),
    })

    profile = pd.DataFrame({
        "lag": lags_ms,
        "mi_mean_all_pairs": test["mi"].mean(axis=(0, 1)),
        "mi_mean_distance_pairs": _mean_over_pairs(test["mi"], pairs, eeg_names, mag_names),
    })

    pair_index = [
        (eeg_names.index(e), mag_names.index(m))
        for e, m in zip(pairs["eeg_channel"], pairs["meg_channel"])
        if e in eeg_names and m in mag_names
    ]
    te_table = pd.DataFrame(columns=["eeg_channel", "meg_channel", "distance",
                                     "te_eeg_to_meg", "p_eeg_to_meg",
                                     "te_meg_to_eeg", "p_meg_to_eeg"])
    if pair_index:
        te = info_est.te_surrogate_test(
            eeg, meg, np.array(pair_index), sfreq, history=TE_HISTORY,
            n_surrogates=config.n_surrogates, seed=seed,
        )
        te_table = pd.DataFrame({
            "eeg_channel": [eeg_names[i] for i, _ in pair_index],
            "meg_channel": [mag_names[j] for _, j in pair_index],
            "distance": [round(100 * dist[i, j], 4) for i, j in pair_index],
            "te_eeg_to_meg": te["te_eeg_to_meg"],
            "p_eeg_to_meg": te["p_eeg_to_meg"],
            "te_meg_to_eeg": te["te_meg_to_eeg"],
            "p_meg_to_eeg": te["p_meg_to_eeg"],
        })

    curve = info_est.mi_distance_curve(test["best_mi"], dist)
    rows = []
    for k, centre in enumerate(curve["bin_centers_cm"]):
        rows.append({"electrode": "pooled", "bin_center": centre,
                     "mi_mean": curve["pooled_mean"][k], "mi_sem": curve["pooled_sem"][k],
                     "n_pairs": int(curve["pooled_count"][k])})
        for i, name in enumerate(eeg_names):
            rows.append({"electrode": name, "bin_center": centre,
                         "mi_mean": curve["mean"][i, k], "mi_sem": curve["sem"][i, k],
                         "n_pairs": int(curve["count"][i, k])})
    try:
        decay = info_est.fit_decay(100 * dist.ravel(), test["best_mi"].ravel())
    except (ValueError, RuntimeError) as err:  # too few pairs or no convergence
        decay = {"error": str(err)}

    in_range = set(zip(pairs["eeg_channel"], pairs["meg_channel"]))
    keep = mi_table["significant"].to_numpy() & np.array(
        [(e, m) in in_range for e, m in zip(mi_table["eeg_channel"], mi_table["meg_channel"])],
        dtype=bool,
    )
    pruned = mi_table.loc[keep, ["eeg_channel", "meg_channel", "distance", "mi", "best_lag",
                                 "p_value"]]

    return {
        "mi": mi_table,
        "lag_profile": profile,
        "te": te_table,
        "distance_curve": pd.DataFrame(rows),
        "decay": decay,
        "pruned": pruned.reset_index(drop=True),
        "mi_lagged": test["mi"],
        "lags_ms": lags_ms,
        "meta": {
            "Estimator": "Gaussian-copula mutual information (Ince et al. 2017), "
            "bias-corrected",
            "Units": "bit",
            "Lags": {"Values": lags_ms.tolist(), "Units": "ms",
                     "Convention": "positive: MEG lags EEG"},
            "Surrogates": {"Count": config.n_surrogates,
                           "Method": "circular time shift of the MEG (>= 1 s), "
                           "max statistic over all EEG x MEG pairs and lags",
                           "Threshold": float(test["threshold"])},
            "TransferEntropy": {"Estimator": "Gaussian-copula transfer entropy = half "
                                "the Granger log-ratio", "HistorySamples": TE_HISTORY},
            "Data": "cleaned continuous run: ICA-cleaned, average-referenced EEG and "
            "EOG/ECG-cleaned magnetometers, band-passed and resampled; column "
            "mi_epochs on the epochs",
            "SamplingFrequency": sfreq,
            "NSamples": int(eeg.shape[1]),
        },
    }


def _mean_over_pairs(mi: np.ndarray, pairs: pd.DataFrame, eeg_names: list[str],
                     mag_names: list[str]) -> np.ndarray:
    idx = [(eeg_names.index(e), mag_names.index(m))
           for e, m in zip(pairs["eeg_channel"], pairs["meg_channel"])
           if e in eeg_names and m in mag_names]
    if not idx:
        return np.full(mi.shape[2], np.nan)
    rows, cols = zip(*idx)
    return mi[list(rows), list(cols)].mean(axis=0)
