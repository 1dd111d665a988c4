"""Scores of a translation, per MEG channel, and the references to read them by.

Arrays in, arrays out. ``y_true`` and ``y_pred`` are ``(n_windows, n_channels,
n_times)``. R² is computed per channel over all of a held-out subject's
samples, against that channel's own mean: 0 is "predicting the mean", 1 is
perfect, negative is worse than the mean.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

#: Frequency bands of the paper (Hz).
BANDS = {"alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 100.0)}


def _flat(y: np.ndarray) -> np.ndarray:
    """(n_windows, n_ch, n_times) -> (n_ch, n_windows * n_times), float64."""
    return np.moveaxis(np.asarray(y, dtype=np.float64), 1, 0).reshape(y.shape[1], -1)


def r2_per_channel(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per channel, shape (n_channels,)."""
    t, p = _flat(y_true), _flat(y_pred)
    ss_res = np.sum((t - p) ** 2, axis=1)
    ss_tot = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return 1.0 - ss_res / ss_tot


def mse_per_channel(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean squared error per channel, in the data's units squared."""
    return np.mean((_flat(y_true) - _flat(y_pred)) ** 2, axis=1)


def pearson_per_channel(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per channel over all samples."""
    t, p = _flat(y_true), _flat(y_pred)
    t = t - t.mean(axis=1, keepdims=True)
    p = p - p.mean(axis=1, keepdims=True)
    denom = np.sqrt(np.sum(t**2, axis=1) * np.sum(p**2, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.sum(t * p, axis=1) / denom, 0.0)


def band_r2(y_true: np.ndarray, y_pred: np.ndarray, sfreq: float) -> dict[str, np.ndarray]:
    """R² per channel after band-passing both signals in each band of :data:`BANDS`.

    Bands reaching above 0.45 × ``sfreq`` are cut there (and skipped when
    nothing is left).
    """
    out = {}
    for band, (lo, hi) in BANDS.items():
        hi = min(hi, 0.45 * sfreq)
        if hi <= lo:
            continue
        sos = butter(4, (lo, hi), btype="bandpass", fs=sfreq, output="sos")
        out[band] = r2_per_channel(
            sosfiltfilt(sos, y_true, axis=-1), sosfiltfilt(sos, y_pred, axis=-1)
        )
    return out


def evoked_fidelity(
    y_true: np.ndarray, y_pred: np.ndarray, conditions: np.ndarray
) -> dict[str, float]:
    """Correlation of translated and real evoked MEG, per condition.

    The evoked response is the average over a condition's windows; the
    correlation runs over all channels and time points. Windows without
    a condition (``"n/a"``: sliding windows) have no evoked response.
    """
    out = {}
    for condition in np.unique(conditions):
        if condition == "n/a":
            continue
        sel = conditions == condition
        a = y_true[sel].mean(axis=0).ravel()
        b = y_pred[sel].mean(axis=0).ravel()
        out[str(condition)] = float(np.corrcoef(a, b)[0, 1])
    return out


def _ridge_weights(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    scale = np.trace(xtx) / len(xtx)
    return np.linalg.solve(xtx + alpha * scale * np.eye(len(xtx)), xty)


DEFAULT_ALPHAS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


#: Fewest windows a subject may have for :func:`within_subject_optimum`: it
#: fits a map on half of them and chooses its penalty on a split of that half.
MIN_WINDOWS = 4


def within_subject_optimum(
    eeg: np.ndarray, meg: np.ndarray, alphas: tuple[float, ...] = DEFAULT_ALPHAS
) -> np.ndarray:
    """R² per MEG channel of the best spatial linear map, cross-validated in time.

    A least-squares map from EEG to MEG is fitted on the first half of a
    subject's windows and scored on the second half, and vice versa; the
    two halves' residuals are pooled. The least squares are ridge-penalised
    (penalty relative to the mean EEG variance, chosen by a further split in
    time of the fitting half): unpenalised, a 70-channel map fitted on a few
    minutes of autocorrelated data amplifies EEG sensor noise and scores
    below zero on the other half, which is no ceiling at all. No
    cross-subject *spatial linear* map can beat this on that subject (up to
    estimation noise); a model that uses time or non-linearity can.

    Parameters
    ----------
    eeg : ndarray, shape (n_windows, n_eeg, n_times)
    meg : ndarray, shape (n_windows, n_meg, n_times)
    alphas : tuple of float
        Relative ridge penalties to choose from.
    """
    if len(eeg) < MIN_WINDOWS:
        raise ValueError(f"need at least {MIN_WINDOWS} windows for a within-subject optimum")
    half = len(eeg) // 2
    folds = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    pred = np.empty_like(meg, dtype=np.float64)
    for train, test in folds:
        idx = np.arange(len(eeg))[train]
        inner_fit, inner_val = idx[: len(idx) // 2], idx[len(idx) // 2 :]
        x_fit, y_fit = _flat(eeg[inner_fit]), _flat(meg[inner_fit])
        x_val, y_val = _flat(eeg[inner_val]), _flat(meg[inner_val])
        xtx, xty = x_fit @ x_fit.T, x_fit @ y_fit.T
        errors = [np.sum((y_val - _ridge_weights(xtx, xty, a).T @ x_val) ** 2) for a in alphas]
        alpha = alphas[int(np.argmin(errors))]
        x, y = _flat(eeg[train]), _flat(meg[train])
        weights = _ridge_weights(x @ x.T, x @ y.T, alpha)
        pred[test] = np.einsum("ec,wet->wct", weights, eeg[test])
    return r2_per_channel(meg, pred)
