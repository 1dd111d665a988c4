"""A straightforward per-pair, per-lag GCMI: the baseline for the benchmark.

This is how lagged GCMI is usually written with Ince's reference code or
``frites``: copula-normalise each channel, then loop over EEG channels, MEG
channels and lags, slicing the overlapping samples and calling ``mi_gg`` on
each pair. ``frites.core.copnorm_nd`` / ``mi_1d_gg`` are used when frites is
installed; otherwise a line-by-line numpy port of Ince's ``mi_gg``
(univariate case) is used. Both give identical numbers.

Not part of the package: the tests load it by path to check the vectorised
estimator against it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri, psi

try:  # optional: the reference implementation
    from frites.core import copnorm_nd as _frites_copnorm
    from frites.core import mi_1d_gg as _frites_mi_gg

    HAVE_FRITES = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_FRITES = False


def copnorm_numpy(x: np.ndarray) -> np.ndarray:
    """Copula normalisation of each row, Ince's ``copnorm`` (double argsort)."""
    ranks = np.argsort(np.argsort(x, axis=-1), axis=-1) + 1.0
    return ndtri(ranks / (x.shape[-1] + 1.0))


def mi_gg_numpy(x: np.ndarray, y: np.ndarray, biascorrect: bool = True) -> float:
    """Ince's ``mi_gg`` for two univariate variables (bits), per pair."""
    n = x.size
    xy = np.vstack((x, y))
    xy = xy - xy.mean(axis=1)[:, None]
    cxy = xy @ xy.T / (n - 1.0)
    hx = np.log(np.sqrt(cxy[0, 0]))
    hy = np.log(np.sqrt(cxy[1, 1]))
    hxy = np.sum(np.log(np.diag(np.linalg.cholesky(cxy))))
    ln2 = np.log(2.0)
    if biascorrect:
        psiterms = psi((n - np.arange(1, 3)) / 2.0) / 2.0
        dterm = (ln2 - np.log(n - 1.0)) / 2.0
        hx = hx - dterm - psiterms[0]
        hy = hy - dterm - psiterms[0]
        hxy = hxy - 2 * dterm - psiterms.sum()
    return float((hx + hy - hxy) / ln2)


def copnorm_rows(x: np.ndarray, use_frites: bool = True) -> np.ndarray:
    """Copula-normalise every channel (row) once."""
    if use_frites and HAVE_FRITES:
        return _frites_copnorm(np.asarray(x, dtype=np.float64), axis=-1)
    return copnorm_numpy(np.asarray(x, dtype=np.float64))


def gcmi_per_pair(
    ceeg: np.ndarray,
    cmeg: np.ndarray,
    lags: np.ndarray,
    pairs: np.ndarray | None = None,
    use_frites: bool = True,
) -> np.ndarray:
    """Lagged GCMI, one ``mi_gg`` call per (pair, lag).

    Parameters
    ----------
    ceeg : (n_eeg, n_times) or (n_epochs, n_eeg, n_times), copula-normalised
    cmeg : (n_meg, n_times) or (n_epochs, n_meg, n_times), copula-normalised
    lags : (n_lags,) int samples, positive = MEG lags EEG
    pairs : (n_pairs, 2) (eeg_idx, meg_idx); default all pairs

    Returns
    -------
    mi : (n_pairs, n_lags) bits
    """
    if ceeg.ndim == 2:
        ceeg, cmeg = ceeg[None], cmeg[None]
    n_t = ceeg.shape[-1]
    if pairs is None:
        ii, jj = np.meshgrid(np.arange(ceeg.shape[1]), np.arange(cmeg.shape[1]), indexing="ij")
        pairs = np.c_[ii.ravel(), jj.ravel()]
    mi_fn = _frites_mi_gg if (use_frites and HAVE_FRITES) else mi_gg_numpy
    out = np.empty((len(pairs), len(lags)))
    for p, (i, j) in enumerate(pairs):
        for k, lag in enumerate(lags):
            lag = int(lag)
            if lag >= 0:
                xs, ys = slice(0, n_t - lag), slice(lag, n_t)
            else:
                xs, ys = slice(-lag, n_t), slice(0, n_t + lag)
            # concatenate the lagged segment of every epoch
            x = ceeg[:, i, xs].ravel()
            y = cmeg[:, j, ys].ravel()
            out[p, k] = mi_fn(x, y)
    return out
