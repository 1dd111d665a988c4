"""Translatability: how much of each MEG channel EEG can predict, before any model.

Arrays in, arrays out. EEG ``x`` is ``(n_eeg, n_times)`` and MEG ``y`` is
``(n_meg, n_times)`` (continuous), or both ``(n_epochs, n_channels, n_times)``
(epochs, concatenated in time order).

Three numbers per MEG channel, each answering "what can any translator hope
for on these data":

**The within-subject linear optimum, cross-validated in time**
(:func:`linear_optimum_cv`). For Gaussian (or merely second-order) data the
best instantaneous linear predictor of ``y`` from ``x`` explains

.. math:: R^2_j = (C_{ye} C_{ee}^{-1} C_{ey})_{jj} / (C_{yy})_{jj}

of channel ``j``'s variance, and ``trace(C_ye C_ee^-1 C_ey) / trace(C_yy)``
of all MEG variance (the variance-weighted mean of the ``R²_j``). The
covariances are unknown, so a ridge map is fitted on all but one contiguous
block of time and scored on that block (``n_folds`` blocks, each left out
once; residuals pooled). The ridge penalty ``lambda = alpha * trace(C_ee) /
n_eeg`` is chosen per MEG channel inside the training blocks only (leave one
training block out), so the estimate never sees the scored samples. A finite
recording makes the estimate slightly pessimistic (a map fitted on finite
data is not the population one): it is a lower bound that approaches the
population value as the recording grows. Contiguous blocks, not random
samples, because M/EEG is autocorrelated: neighbouring samples are near
copies, and random folds would score a map on data it has effectively seen.

Everything is computed from per-block sums (``sum x``, ``sum y``,
``sum x xᵀ``, ``sum x yᵀ``, ``sum y²``): one pass over the data, then
only ``n_eeg × n_eeg`` algebra per fold, with every penalty at once from one
eigendecomposition (``W(lambda) = V (S + lambda)^-1 Vᵀ C_ey``).

**Per band** (:func:`translatability`): the same after band-passing EEG and
MEG alike in each band of :data:`synaptech_bids.group.metrics.BANDS` (the
bands the group level scores translators in): the share of the band's MEG
variance that the band's EEG predicts.

**Multivariate Gaussian-copula MI** (:func:`multivariate_gcmi`) between all
EEG channels and each MEG channel (Ince et al. 2017). The EEG is first
rotated onto its principal components and only the numerically non-null ones
are kept: the average reference, interpolated channels and the removed ICA
components make the EEG covariance rank-deficient, and the copula
normalisation (a non-linear map per dimension) would turn those exact null
directions into near-null noise directions, which make the joint covariance
ill-conditioned and its log-determinant noise. A rotation loses no
information; dropping null directions loses none either. Each kept
component and each MEG channel is copula-normalised; for a ``k``-dimensional
Gaussian ``x`` and scalar ``y``

.. math:: I(x; y) = -\\tfrac12 \\log_2 (1 - R^2_{y|x})

with ``R²_{y|x}`` the squared multiple correlation (one Cholesky solve for
all MEG channels), minus Ince's analytical bias for ``(k, 1)`` dimensions.
It is in-sample and instantaneous (lag 0), like the linear optimum.

**The Gaussian-equivalent predictable share** (:func:`share_from_mi`),
``1 - 2^(-2 MI)``: the R² a linear map would reach if the data were Gaussian
with that MI. For Gaussian data it equals the population optimum above;
above the cross-validated R² it flags dependence a linear map misses
(monotonic non-linearities) or, when the recording is short, the estimate's
optimism (the MI is in-sample; its bias correction assumes independent
samples, so autocorrelation leaves a small positive bias).

:func:`predictable_share` gives the population value from covariances, e.g.
a simulator's true mixing and source covariance: the truth the estimates are
tested against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import solve_triangular
from scipy.signal import butter, sosfiltfilt

from ..group.metrics import BANDS
from .gcmi import copnorm, gaussian_mi_bias

__all__ = [
    "DEFAULT_ALPHAS",
    "BANDS",
    "linear_optimum_cv",
    "multivariate_gcmi",
    "predictable_share",
    "share_from_mi",
    "translatability",
]

#: Relative ridge penalties (times the mean EEG variance) chosen from.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-6, 2, 17))

#: Eigenvalues below this fraction of the largest are the EEG's null space.
RANK_TOL = 1e-7

_LN2 = math.log(2.0)


def _as_channels_by_samples(
    x: ArrayLike, name: str
) -> tuple[NDArray[np.float64], int]:
    """(n_ch, n_samples) and the length of one epoch (n_samples if continuous)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        n_ep, n_ch, n_t = arr.shape
        unit = n_t
        arr = arr.transpose(1, 0, 2).reshape(n_ch, n_ep * n_t)
    elif arr.ndim == 2:
        unit = arr.shape[1]
    else:
        raise ValueError(f"{name} must be (n_channels, n_times) or (n_epochs, n_channels, "
                         f"n_times), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr, unit


def _pair(eeg: ArrayLike, meg: ArrayLike) -> tuple[NDArray, NDArray, int]:
    x, unit_x = _as_channels_by_samples(eeg, "eeg")
    y, unit_y = _as_channels_by_samples(meg, "meg")
    if x.shape[1] != y.shape[1] or unit_x != unit_y:
        raise ValueError("eeg and meg must share epochs and times")
    return x, y, unit_x


def _block_edges(n_samples: int, unit: int, n_blocks: int) -> NDArray[np.int64]:
    """Edges of ``n_blocks`` contiguous blocks, on epoch boundaries when epoched."""
    n_units = n_samples // unit
    if n_units > 1:  # epochs: whole epochs per block
        if n_units < n_blocks:
            raise ValueError(f"{n_units} epochs cannot make {n_blocks} folds")
        return np.linspace(0, n_units, n_blocks + 1).round().astype(np.int64) * unit
    return np.linspace(0, n_samples, n_blocks + 1).round().astype(np.int64)


def _block_moments(x: NDArray, y: NDArray, edges: NDArray) -> dict[str, NDArray]:
    """Sums over each block: n, sx, sy, sxx, sxy, syy (leading axis: block)."""
    parts: dict[str, list] = {k: [] for k in ("n", "sx", "sy", "sxx", "sxy", "syy")}
    for a, b in zip(edges[:-1], edges[1:]):
        xb, yb = x[:, a:b], y[:, a:b]
        parts["n"].append(float(b - a))
        parts["sx"].append(xb.sum(1))
        parts["sy"].append(yb.sum(1))
        parts["sxx"].append(xb @ xb.T)
        parts["sxy"].append(xb @ yb.T)
        parts["syy"].append(np.einsum("ct,ct->c", yb, yb))
    return {k: np.asarray(v) for k, v in parts.items()}


def _ridge_all(m: dict[str, NDArray], blocks: NDArray, alphas: NDArray) -> tuple[NDArray, ...]:
    """Ridge maps for every penalty from the pooled moments of ``blocks``.

    Returns weights ``(n_alpha, n_eeg, n_meg)`` and intercepts
    ``(n_alpha, n_meg)``.
    """
    n = m["n"][blocks].sum()
    mx, my = m["sx"][blocks].sum(0) / n, m["sy"][blocks].sum(0) / n
    cxx = m["sxx"][blocks].sum(0) - n * np.outer(mx, mx)
    cxy = m["sxy"][blocks].sum(0) - n * np.outer(mx, my)
    s, v = np.linalg.eigh(cxx)
    s = np.clip(s, 0.0, None)
    q = v.T @ cxy
    lam = np.asarray(alphas)[:, None] * (s.sum() / len(s))
    w = v @ (q[None, :, :] / (s[None, :, None] + lam[:, :, None]))
    c = my[None, :] - mx @ w
    return w, c


def _sse(m: dict[str, NDArray], block: int, w: NDArray, c: NDArray) -> NDArray:
    """Sum of squared errors of ``y - wᵀx - c`` over one block, from its sums.

    ``w`` is ``(..., n_eeg, n_meg)``, ``c`` is ``(..., n_meg)``; returns
    ``(..., n_meg)``.
    """
    n, sx, sy = m["n"][block], m["sx"][block], m["sy"][block]
    sxx, sxy, syy = m["sxx"][block], m["sxy"][block], m["syy"][block]
    quad = np.sum(w * (sxx @ w), axis=-2)
    cross = np.sum(w * sxy, axis=-2)
    return syy - 2 * cross - 2 * c * sy + quad + 2 * c * (sx @ w) + n * c**2


def linear_optimum_cv(
    eeg: ArrayLike, meg: ArrayLike, *, n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
) -> dict[str, Any]:
    """R² of the best instantaneous linear EEG → MEG map, cross-validated in time.

    Parameters
    ----------
    eeg : array_like, shape (n_eeg, n_times) or (n_epochs, n_eeg, n_times)
    meg : array_like, shape (n_meg, n_times) or (n_epochs, n_meg, n_times)
    n_folds : int
        Contiguous blocks of time (whole epochs when epoched); each is scored
        once by a map fitted on the others. At least 3 (the penalty is chosen
        by leaving one training block out).
    alphas : tuple of float
        Relative ridge penalties; one is chosen per MEG channel inside the
        training blocks.

    Returns
    -------
    result : dict
        ``r2`` (n_meg,) per channel; ``r2_overall``: the variance-weighted
        mean, i.e. the share of all MEG variance predicted; ``variance``
        (n_meg,) of each MEG channel (data units squared); ``alpha``
        (n_folds, n_meg) the penalties chosen.

    Notes
    -----
    See the module docstring for the maths. Data are scaled (EEG by one
    number, MEG per channel) before fitting, which changes neither R² nor
    the relative penalty, and keeps the sums well conditioned in SI units.
    """
    x, y, unit = _pair(eeg, meg)
    return _linear_optimum(x, y, unit, n_folds, alphas)


def _linear_optimum(x: NDArray, y: NDArray, unit: int, n_folds: int,
                    alphas: tuple[float, ...]) -> dict[str, Any]:
    if n_folds < 3:
        raise ValueError("n_folds must be at least 3")
    x = x / (x.std() or 1.0)
    y_sd = y.std(axis=1, keepdims=True)
    y = y / np.where(y_sd > 0, y_sd, 1.0)
    edges = _block_edges(x.shape[1], unit, n_folds)
    m = _block_moments(x, y, edges)
    alpha_arr = np.asarray(alphas, dtype=np.float64)
    sse = np.zeros(y.shape[0])
    chosen = np.empty((n_folds, y.shape[0]))
    # the inner fit leaving out blocks {k, b} serves outer folds k and b alike
    fits: dict[frozenset, tuple[NDArray, NDArray]] = {}

    def fit_without(*left_out: int) -> tuple[NDArray, NDArray]:
        key = frozenset(left_out)
        if key not in fits:
            keep = np.array([b for b in range(n_folds) if b not in key])
            fits[key] = _ridge_all(m, keep, alpha_arr)
        return fits[key]

    for k in range(n_folds):
        train = np.array([b for b in range(n_folds) if b != k])
        inner = np.zeros((len(alpha_arr), y.shape[0]))
        for b in train:
            inner += _sse(m, b, *fit_without(k, b))
        best = np.argmin(inner, axis=0)  # per MEG channel
        chosen[k] = alpha_arr[best]
        w, c = fit_without(k)
        cols = np.arange(y.shape[0])
        sse += _sse(m, k, w[best, :, cols].T, c[best, cols])
    n = m["n"].sum()
    ss_tot = m["syy"].sum(0) - m["sy"].sum(0) ** 2 / n
    r2 = 1.0 - sse / ss_tot
    variance = ss_tot / n * (y_sd[:, 0] ** 2)
    return {
        "r2": r2,
        "r2_overall": float(np.sum(variance * r2) / np.sum(variance)),
        "variance": variance,
        "alpha": chosen,
    }


def _principal_components(x: NDArray, n_components: int | None) -> NDArray:
    """EEG rotated onto its non-null principal axes, ``(k, n_samples)``."""
    xc = x - x.mean(axis=1, keepdims=True)
    s, v = np.linalg.eigh(xc @ xc.T)
    order = np.argsort(s)[::-1]
    s, v = s[order], v[:, order]
    k = int(np.sum(s > RANK_TOL * s[0])) if s[0] > 0 else 0
    if n_components is not None:
        k = min(k, int(n_components))
    if k < 1:
        raise ValueError("the EEG has no variance")
    return v[:, :k].T @ xc


def multivariate_gcmi(
    eeg: ArrayLike, meg: ArrayLike, *, n_components: int | None = None,
    bias_correct: bool = True,
) -> dict[str, Any]:
    """Gaussian-copula MI between all EEG channels (jointly) and each MEG channel.

    Parameters
    ----------
    eeg : array_like, shape (n_eeg, n_times) or (n_epochs, n_eeg, n_times)
    meg : array_like, shape (n_meg, n_times) or (n_epochs, n_meg, n_times)
    n_components : int, optional
        Keep at most this many leading principal components of the EEG
        (default: all non-null ones, i.e. its numerical rank).
    bias_correct : bool
        Subtract Ince's analytical bias for ``(k, 1)`` dimensions.

    Returns
    -------
    result : dict
        ``mi`` (n_meg,) in bits, ``I(eeg; meg_j)`` at lag 0; ``n_components``
        the EEG dimensions used.

    Notes
    -----
    Equals :func:`~synaptech_bids.information.gcmi.gcmi_mi` of the EEG
    principal components and each MEG channel, for all channels in one
    Cholesky solve (see the module docstring).
    """
    x, y, _ = _pair(eeg, meg)
    pcs = _principal_components(x, n_components)
    k, n = pcs.shape
    cx = copnorm(pcs, axis=1)
    cy = copnorm(y, axis=1)
    cx -= cx.mean(axis=1, keepdims=True)
    cy -= cy.mean(axis=1, keepdims=True)
    chol = np.linalg.cholesky(cx @ cx.T)
    b = solve_triangular(chol, cx @ cy.T, lower=True)
    r2 = np.sum(b**2, axis=0) / np.einsum("ct,ct->c", cy, cy)
    mi = -0.5 * np.log2(1.0 - np.clip(r2, 0.0, 1.0 - 1e-15))
    if bias_correct:
        mi = mi - float(gaussian_mi_bias(n, k, 1))
    return {"mi": mi, "n_components": k}


def share_from_mi(mi: ArrayLike) -> NDArray[np.float64]:
    """Gaussian-equivalent predictable share ``1 - 2^(-2 MI)`` (MI in bits).

    The R² of the optimal linear predictor of a Gaussian variable that shares
    ``MI`` bits with a Gaussian predictor; inverse of ``-1/2 log2(1 - R²)``.
    """
    return 1.0 - np.power(2.0, -2.0 * np.asarray(mi, dtype=np.float64))


def predictable_share(
    cov_ee: ArrayLike, cov_me: ArrayLike, cov_mm: ArrayLike
) -> dict[str, Any]:
    """Population share of MEG variance linearly predictable from EEG.

    Parameters
    ----------
    cov_ee : array_like, shape (n_eeg, n_eeg)
        EEG covariance (brain and noise).
    cov_me : array_like, shape (n_meg, n_eeg)
        MEG-EEG cross-covariance.
    cov_mm : array_like, shape (n_meg, n_meg)
        MEG covariance (its diagonal is used).

    Returns
    -------
    share : dict
        ``r2`` (n_meg,): ``diag(C_me C_ee⁺ C_em) / diag(C_mm)``;
        ``r2_overall``: ``trace(C_me C_ee⁺ C_em) / trace(C_mm)``. The
        pseudo-inverse handles a rank-deficient (average-referenced) EEG.
    """
    cee = np.asarray(cov_ee, dtype=np.float64)
    cme = np.asarray(cov_me, dtype=np.float64)
    cmm = np.asarray(cov_mm, dtype=np.float64)
    explained = np.einsum("me,me->m", cme @ np.linalg.pinv(cee, hermitian=True), cme)
    total = np.diag(cmm)
    return {"r2": explained / total, "r2_overall": float(explained.sum() / total.sum())}


def _band_pass(x: NDArray, unit: int, lo: float, hi: float, sfreq: float) -> NDArray:
    sos = butter(4, (lo, hi), btype="bandpass", fs=sfreq, output="sos")
    n_ch, n = x.shape
    # epochs are filtered one by one: never across an epoch boundary
    epochs = x.reshape(n_ch, n // unit, unit)
    return sosfiltfilt(sos, epochs, axis=-1).reshape(n_ch, n)


def translatability(
    eeg: ArrayLike, meg: ArrayLike, sfreq: float, *, n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS, n_components: int | None = None,
    bands: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """All translatability measures of one recording.

    Parameters
    ----------
    eeg : array_like, shape (n_eeg, n_times) or (n_epochs, n_eeg, n_times)
    meg : array_like, shape (n_meg, n_times) or (n_epochs, n_meg, n_times)
    sfreq : float
        Sampling frequency (Hz), for the band-pass filters.
    n_folds, alphas
        See :func:`linear_optimum_cv`.
    n_components
        See :func:`multivariate_gcmi`.
    bands : dict, optional
        ``{name: (low, high)}`` in Hz; default :data:`BANDS`. A band
        reaching above 0.45 × ``sfreq`` is cut there, and skipped when
        nothing is left (as the group level's band scores do).

    Returns
    -------
    result : dict
        ``r2`` (n_meg,), ``r2_overall``, ``variance`` (n_meg,),
        ``r2_bands`` ``{band: (n_meg,)}``, ``r2_bands_overall``
        ``{band: float}``, ``bands`` ``{band: (low, high)}`` as used,
        ``mi`` (n_meg,) bits, ``gaussian_share`` (n_meg,),
        ``gaussian_share_overall`` (variance-weighted), ``n_components``,
        ``n_samples``.
    """
    x, y, unit = _pair(eeg, meg)
    broad = _linear_optimum(x, y, unit, n_folds, alphas)
    r2_bands, r2_bands_overall, used = {}, {}, {}
    for band, (lo, hi) in (BANDS if bands is None else bands).items():
        hi = min(hi, 0.45 * sfreq)
        if hi <= lo:
            continue
        xb, yb = _band_pass(x, unit, lo, hi, sfreq), _band_pass(y, unit, lo, hi, sfreq)
        res = _linear_optimum(xb, yb, unit, n_folds, alphas)
        r2_bands[band], r2_bands_overall[band] = res["r2"], res["r2_overall"]
        used[band] = (lo, hi)
    info = multivariate_gcmi(x, y, n_components=n_components)
    share = share_from_mi(info["mi"])
    variance = broad["variance"]
    return {
        "r2": broad["r2"],
        "r2_overall": broad["r2_overall"],
        "variance": variance,
        "r2_bands": r2_bands,
        "r2_bands_overall": r2_bands_overall,
        "bands": used,
        "mi": info["mi"],
        "gaussian_share": share,
        "gaussian_share_overall": float(np.sum(variance * share) / np.sum(variance)),
        "n_components": info["n_components"],
        "n_samples": int(x.shape[1]),
    }

