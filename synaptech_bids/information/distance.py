"""Mutual information as a function of EEG-MEG sensor distance.

The paper's Figure 6 shows best-lag MI between one EEG electrode (Fz) and
MEG sensors binned by distance, and describes a fast (exponential) fall
followed by a slow (power-law-like) tail. These functions produce that curve
for every electrode and pooled over electrodes, and fit both decay models so
that the claim can be tested rather than eyeballed.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeWarning, curve_fit

__all__ = ["DEFAULT_BINS_CM", "fit_decay", "mi_distance_curve"]

#: 2 cm bins from 0 to 30 cm (scalp electrode to MEG sensor distances are
#: roughly 3-25 cm).
DEFAULT_BINS_CM: tuple[float, ...] = tuple(float(b) for b in range(0, 32, 2))


def _binned_stats(
    values: NDArray, groups: NDArray, n_groups: int
) -> tuple[NDArray, NDArray, NDArray]:
    """Mean, SEM (ddof=1) and count of ``values`` per integer group."""
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    s1 = np.bincount(groups, weights=values, minlength=n_groups)
    s2 = np.bincount(groups, weights=values * values, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        var = (s2 - count * mean * mean) / (count - 1.0)
        sem = np.sqrt(np.maximum(var, 0.0) / count)
    sem[count < 2] = np.nan
    return mean, sem, count.astype(np.int64)


def mi_distance_curve(
    mi_best: ArrayLike,
    distances_m: ArrayLike,
    bins_cm: ArrayLike = DEFAULT_BINS_CM,
) -> dict[str, NDArray]:
    """MI by distance bin, per EEG electrode and pooled over electrodes.

    Parameters
    ----------
    mi_best : array_like, shape (n_eeg, n_meg)
        Best-lag MI (bits) of every pair (e.g. from
        :func:`~synaptech_bids.information.gcmi.best_lag`).
    distances_m : array_like, shape (n_eeg, n_meg)
        EEG-MEG sensor distances in metres (head coordinates).
    bins_cm : array_like, shape (n_bins + 1,)
        Increasing bin edges in centimetres; bins are ``[edge_k, edge_k+1)``.
        Pairs outside the edges, or with a non-finite MI or distance, are
        left out (``n_outside``).

    Returns
    -------
    curve : dict
        ``bin_edges_cm`` (n_bins + 1,), ``bin_centers_cm`` (n_bins,);
        per electrode ``mean``, ``sem``, ``count`` (n_eeg, n_bins); pooled
        over all pairs ``pooled_mean``, ``pooled_sem``, ``pooled_count``
        (n_bins,); ``n_outside`` (int). Empty bins have NaN mean, and SEM is
        NaN below two pairs.
    """
    mi = np.asarray(mi_best, dtype=np.float64)
    dist_cm = np.asarray(distances_m, dtype=np.float64) * 100.0
    if mi.shape != dist_cm.shape or mi.ndim != 2:
        raise ValueError(
            f"mi_best {mi.shape} and distances_m {dist_cm.shape} must be the "
            "same (n_eeg, n_meg) shape"
        )
    edges = np.asarray(bins_cm, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins_cm must be at least two increasing edges")
    n_bins = edges.size - 1
    n_eeg = mi.shape[0]
    b = np.digitize(dist_cm, edges) - 1
    ok = (b >= 0) & (b < n_bins) & np.isfinite(mi) & np.isfinite(dist_cm)
    rows = np.broadcast_to(np.arange(n_eeg)[:, None], mi.shape)
    mean, sem, count = _binned_stats(mi[ok], rows[ok] * n_bins + b[ok], n_eeg * n_bins)
    p_mean, p_sem, p_count = _binned_stats(mi[ok], b[ok], n_bins)
    return {
        "bin_edges_cm": edges,
        "bin_centers_cm": (edges[:-1] + edges[1:]) / 2.0,
        "mean": mean.reshape(n_eeg, n_bins),
        "sem": sem.reshape(n_eeg, n_bins),
        "count": count.reshape(n_eeg, n_bins),
        "pooled_mean": p_mean,
        "pooled_sem": p_sem,
        "pooled_count": p_count,
        "n_outside": int((~ok).sum()),
    }


def _exp_model(d: NDArray, a: float, lam: float, c: float) -> NDArray:
    return a * np.exp(-d / lam) + c


def _power_model(d: NDArray, a: float, b: float) -> NDArray:
    return a * d ** (-b)


def _scores(y: NDArray, yhat: NDArray, n_params: int) -> dict[str, float]:
    n = y.size
    rss = float(np.sum((y - yhat) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    # Gaussian-likelihood AIC with the small-sample correction (AICc): the
    # curves have few bins, and the two models differ in parameter count
    aic = n * math.log(max(rss, 1e-300) / n) + 2 * n_params
    if n - n_params - 1 > 0:
        aic += 2 * n_params * (n_params + 1) / (n - n_params - 1)
    return {"rss": rss, "r2": 1.0 - rss / tss if tss > 0 else math.nan, "aic": aic}


def fit_decay(d: ArrayLike, mi: ArrayLike) -> dict[str, object]:
    """Fit exponential and power-law decays of MI with distance, compare them.

    Models: exponential ``a * exp(-d / lambda) + c`` (3 parameters) and power
    law ``a * d ** -b`` (2 parameters), least squares (``curve_fit``).

    Parameters
    ----------
    d : array_like, shape (n,)
        Distances (> 0; any unit, ``lambda`` comes back in that unit), e.g.
        bin centres or one value per pair.
    mi : array_like, shape (n,)
        MI at those distances.

    Returns
    -------
    fit : dict
        ``exponential``: dict(a, lambda, c, rss, r2, aic) or None if the fit
        failed; ``power_law``: dict(a, b, rss, r2, aic) or None; ``best``:
        ``"exponential"`` or ``"power_law"``, the lower AICc (which penalises
        the extra parameter of the exponential), or None if both failed.
    """
    dd = np.asarray(d, dtype=np.float64).ravel()
    yy = np.asarray(mi, dtype=np.float64).ravel()
    if dd.shape != yy.shape:
        raise ValueError("d and mi must have the same length")
    ok = np.isfinite(dd) & np.isfinite(yy) & (dd > 0)
    dd, yy = dd[ok], yy[ok]
    if dd.size < 4:
        raise ValueError("need at least 4 finite points with d > 0 to fit")

    out: dict[str, object] = {"exponential": None, "power_law": None, "best": None}
    span = float(dd.max() - dd.min()) or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            p0 = (float(yy.max() - yy.min()) or 1e-3, span / 3.0, float(yy.min()))
            popt, _ = curve_fit(
                _exp_model,
                dd,
                yy,
                p0=p0,
                bounds=([-np.inf, 1e-6 * span, -np.inf], [np.inf, 1e3 * span, np.inf]),
                maxfev=20000,
            )
            out["exponential"] = {
                "a": float(popt[0]),
                "lambda": float(popt[1]),
                "c": float(popt[2]),
                **_scores(yy, _exp_model(dd, *popt), 3),
            }
        except (RuntimeError, ValueError):
            pass
        try:
            # start from the log-log line through the positive values
            pos = yy > 0
            if pos.sum() >= 2:
                slope, icpt = np.polyfit(np.log(dd[pos]), np.log(yy[pos]), 1)
                p0 = (float(np.exp(icpt)), float(-slope))
            else:
                p0 = (float(yy.max()) or 1e-3, 1.0)
            popt, _ = curve_fit(_power_model, dd, yy, p0=p0, maxfev=20000)
            out["power_law"] = {
                "a": float(popt[0]),
                "b": float(popt[1]),
                **_scores(yy, _power_model(dd, *popt), 2),
            }
        except (RuntimeError, ValueError):
            pass
    fits = {k: v for k, v in out.items() if isinstance(v, dict)}
    if fits:
        out["best"] = min(fits, key=lambda k: fits[k]["aic"])
    return out
