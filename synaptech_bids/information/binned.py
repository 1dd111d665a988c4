"""Plug-in mutual information on equiprobable bins (Miller-Madow corrected).

The classic histogram estimator, kept for comparison with the literature
(and the paper) rather than as a recommendation: it depends on the bin count
and is biased upwards at small sample sizes, which the Miller-Madow term
``(m - 1) / 2N`` per entropy only partly removes.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["binned_mi"]


def _equiprobable_codes(a: NDArray[np.float64], n_bins: int) -> NDArray[np.int64]:
    """Bin index 0..n_bins-1 of each sample by its rank (equal-count bins)."""
    ranks = np.empty(a.size, dtype=np.int64)
    ranks[np.argsort(a, kind="stable")] = np.arange(a.size)
    return ranks * n_bins // a.size


def _entropy(counts: NDArray, n: int, miller_madow: bool) -> float:
    c = counts[counts > 0].astype(np.float64)
    h = -float(np.sum(c / n * np.log(c / n)))
    if miller_madow:
        h += (c.size - 1) / (2.0 * n)
    return h


def binned_mi(
    x: ArrayLike,
    y: ArrayLike,
    n_bins: int | None = None,
    *,
    bias_correct: bool = True,
) -> float:
    """Histogram MI of two 1-D variables on equiprobable bins, in bits.

    Parameters
    ----------
    x, y : array_like, shape (n_samples,)
    n_bins : int, optional
        Bins per variable; default ``floor(n_samples ** (1/3))`` (at least 2),
        which keeps roughly ``n^(1/3)`` samples per joint cell.
    bias_correct : bool
        Miller-Madow correction of each entropy.

    Returns
    -------
    mi : float
        MI in bits.
    """
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    n = xa.size
    if ya.size != n:
        raise ValueError("x and y must have the same number of samples")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite")
    if n_bins is None:
        n_bins = max(2, int(n ** (1.0 / 3.0)))
    cx = _equiprobable_codes(xa, n_bins)
    cy = _equiprobable_codes(ya, n_bins)
    joint = np.bincount(cx * n_bins + cy, minlength=n_bins * n_bins)
    hx = _entropy(np.bincount(cx, minlength=n_bins), n, bias_correct)
    hy = _entropy(np.bincount(cy, minlength=n_bins), n, bias_correct)
    hxy = _entropy(joint, n, bias_correct)
    return (hx + hy - hxy) / math.log(2.0)
