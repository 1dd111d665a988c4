"""Kraskov-Stoegbauer-Grassberger (KSG) k-nearest-neighbour mutual information.

Model-free estimator 1 of Kraskov, Stoegbauer & Grassberger (2004), Phys.
Rev. E 69:066138: with the max-norm (Chebyshev) distance ``eps_i`` from
sample ``i`` to its ``k``-th neighbour in the joint space, and ``n_x(i)``,
``n_y(i)`` the numbers of samples strictly closer than ``eps_i`` in each
marginal space::

    I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >     (nats)

It is nearly unbiased for any dependence (not only Gaussian), at the price
of ``O(N log N)`` tree queries per pair: use it on the pairs that matter, not
on all EEG x MEG pairs and lags (GCMI does that).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.special import digamma

from .gcmi import _as_samples_by_dims

__all__ = ["ksg_mi"]


def ksg_mi(
    x: ArrayLike,
    y: ArrayLike,
    k: int = 3,
    *,
    jitter: float = 1e-10,
    seed: int | None = 0,
    workers: int = 1,
) -> float:
    """KSG (estimator 1) mutual information, in bits.

    Parameters
    ----------
    x : array_like, shape (n_samples,) or (n_samples, n_dims_x)
    y : array_like, shape (n_samples,) or (n_samples, n_dims_y)
    k : int
        Number of neighbours (3-10 is the usual bias/variance trade-off).
    jitter : float
        Standard deviation (after z-scoring) of noise added to break ties,
        which the strict "closer than eps" counts assume away (digitised
        signals have ties).
    seed : int, optional
        Seed of that noise, for reproducibility.
    workers : int
        Threads for the ``cKDTree`` queries.

    Returns
    -------
    mi : float
        MI in bits; can be slightly negative for independent variables.
    """
    xa, ya = _as_samples_by_dims(x, "x"), _as_samples_by_dims(y, "y")
    n = xa.shape[0]
    if ya.shape[0] != n:
        raise ValueError("x and y must have the same number of samples")
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n_samples), got {k}")
    rng = np.random.default_rng(seed)

    def _prep(a: NDArray) -> NDArray:
        # z-score so that the max-norm weighs every dimension alike
        sd = a.std(axis=0)
        a = (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        return a + jitter * rng.standard_normal(a.shape)

    xa, ya = _prep(xa), _prep(ya)
    joint = np.hstack([xa, ya])
    # k + 1 because the query returns each point as its own nearest neighbour
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)
    eps = dist[:, -1]
    # strictly closer than eps: shrink the radius by one ulp; minus the point
    radius = np.nextafter(eps, 0.0)
    n_x = (
        cKDTree(xa).query_ball_point(xa, radius, p=np.inf, return_length=True, workers=workers) - 1
    )
    n_y = (
        cKDTree(ya).query_ball_point(ya, radius, p=np.inf, return_length=True, workers=workers) - 1
    )
    mi_nats = digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))
    return float(mi_nats / math.log(2.0))
