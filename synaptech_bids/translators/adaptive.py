"""Subject-adaptive translator: the learned source prior refined by the subject's EEG.

A prior learned on other subjects (:mod:`.sourcespace`) cannot know where a
new subject's active patches are when brains differ by a centimetre
(issue 6). The new subject's own EEG carries part of that: its covariance
``S`` constrains ``L_eeg C L_eeg^T``. This translator re-estimates the
source covariance of each subject it translates, from that subject's EEG
only (never its MEG), then applies the Wiener map through the subject's
own lead fields, as :mod:`.sourcespace` does.

Model (covariance components, sparse Bayesian learning)
-------------------------------------------------------
::

    C = h0 * C_prior + sum_i gamma_i * E_i

with ``C_prior`` the prior learned across training subjects (mapped to the
subject's sources) and ``E_i = k_i k_i^T`` (per orientation) for a Gaussian
*patch* ``k_i`` of ``patch_mm`` centred on source location ``i`` (its
three orientations share ``gamma_i``; ``patch_mm=0`` gives the identity on
the dipoles of location ``i``, the classic per-location SBL). Patches,
because cortical activity is spatially extended: see ``patch_mm``. The weights
maximise the marginal likelihood of the EEG, ``Sigma = L C L^T + noise``,
by the convex-bounding fixed point of Champagne (Wipf et al. 2010,
NeuroImage 49:641; Wipf & Nagarajan 2009, NeuroImage 44:947, the unified
covariance-component framework that also covers the "multiple sparse
priors" of Friston et al. 2008)::

    w_k <- w_k * sqrt(tr(Q_k L^T Sigma^-1 S Sigma^-1 L) / tr(Q_k L^T Sigma^-1 L))

for each component ``Q_k`` (``C_prior`` or ``E_i``). Sparse Bayesian
learning drives most ``gamma_i`` towards zero and keeps those sources that
the EEG covariance needs, so power moves to where this subject's patches
are. It is *seeded* by the prior: ``h0 = 1/2`` and ``gamma_i`` half the
prior's variance at location ``i``, so the fit starts from the learned
prior and departs from it only as far as the subject's EEG asks.

``prior="none"`` is the subject-only reference of issue 6: the same SBL
from a flat start with no learned component, no training data in the prior
(training subjects choose only the EEG regularisation ``lam``).
``prior="cv"`` (the default) lets the training subjects decide between the
two: the inner leave-subjects-out scores both seeds at every ``lam``. Why:
a prior learned on other brains helps where brains are alike and misleads
where they are not (measured with ``bench_transfer.py --oracle``: seeded
SBL 73 % of the optimum against 66 % unseeded at 0 mm spread, 20 % against
39 % at 10 mm), and which world the data are in is an empirical question
that subjects whose MEG is known can answer.

Prediction is transductive per subject: the EEG covariance is taken over all
windows that ``predict`` receives for one head, so pass a subject's windows
together (as the group level does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import linalg

from .sourcespace import (
    DEFAULT_LAMBDAS,
    Head,
    SourcePrior,
    SourceSpaceTranslator,
    r2_from_stats,
)


def sbl_source_cov(
    l_eeg: np.ndarray,
    s_ee: np.ndarray,
    lam: float,
    n_ori: int = 1,
    prior_gram: np.ndarray | None = None,
    gamma0: np.ndarray | None = None,
    h0: float = 0.5,
    n_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Champagne-style sparse Bayesian learning of source variances from EEG.

    Parameters
    ----------
    l_eeg : ndarray, shape (n_e, n_src)
        Referenced EEG gain of the subject.
    s_ee : ndarray, shape (n_e, n_e)
        The subject's EEG covariance (same reference).
    lam : float
        Sensor noise variance relative to the mean EEG channel power.
    n_ori : int
        Consecutive columns that share one variance (3 for free dipoles).
    prior_gram : ndarray, shape (n_e, n_e), optional
        ``L C_prior L^T``: a learned component with weight ``h0``.
    gamma0 : ndarray, shape (n_src // n_ori,), optional
        Starting variances; default flat, explaining the EEG power above noise.
    h0 : float
        Starting weight of the learned component.
    n_iter : int
        Most iterations.
    tol : float
        Stop when the largest relative change of the weights is below this.

    Returns
    -------
    gamma : ndarray, shape (n_src // n_ori,)
    h0 : float
        Final weight of the learned component (0 without one).
    sigma : ndarray, shape (n_e, n_e)
        The model EEG covariance ``L C L^T + noise`` at the solution.
    """
    n = l_eeg.shape[0]
    noise = lam * float(np.trace(s_ee)) / n
    grams = [] if prior_gram is None else [prior_gram]
    gamma, h, sigma = fit_covariance_components(
        l_eeg, s_ee, noise, n_ori, grams, gamma0, [h0] * len(grams), n_iter, tol)
    return gamma, float(h[0]) if len(h) else 0.0, sigma


def fit_covariance_components(
    l_eeg: np.ndarray,
    s_ee: np.ndarray,
    noise: float,
    n_ori: int = 1,
    grams: Sequence[np.ndarray] = (),
    gamma0: np.ndarray | None = None,
    h0: Sequence[float] | None = None,
    n_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of covariance components that best explain ``s_ee`` (Champagne).

    The model is ``Sigma = L diag(gamma) L^T + sum_k h_k B_k + noise I``: one
    variance ``gamma`` per source (or per ``n_ori`` columns) and one weight
    ``h_k`` per fixed sensor-space component ``B_k``; all weights follow the
    convex-bounding fixed point in the module docstring.

    Parameters
    ----------
    l_eeg : ndarray, shape (n_e, n_src)
        Referenced EEG gain; ``n_src`` may be 0 (components only).
    s_ee : ndarray, shape (n_e, n_e)
        EEG covariance to explain.
    noise : float
        Sensor noise variance per channel (absolute, fixed).
    n_ori : int
        Consecutive columns sharing one variance.
    grams : sequence of ndarray, each (n_e, n_e)
        Fixed components ``B_k``.
    gamma0 : ndarray, optional
        Starting variances; default flat, explaining the power above noise.
    h0 : sequence of float, optional
        Starting weights of ``grams``; default 1/2 each.
    n_iter, tol
        Most iterations; stop when no weight changes by more than ``tol``
        (relative).

    Returns
    -------
    gamma : ndarray, shape (n_src // n_ori,)
    h : ndarray, shape (len(grams),)
    sigma : ndarray, shape (n_e, n_e)
        ``Sigma`` at the solution.
    """
    n, n_src = l_eeg.shape
    n_loc = n_src // n_ori
    eye = noise * np.eye(n)
    col_power = (l_eeg**2).sum(0).reshape(n_loc, n_ori).sum(1)
    if gamma0 is None:
        excess = max(float(np.trace(s_ee)) - n * noise, 1e-12 * float(np.trace(s_ee)))
        gamma0 = np.full(n_loc, excess / max(float(col_power.sum()), 1e-300))
    gamma = np.asarray(gamma0, float).copy()
    h = np.full(len(grams), 0.5) if h0 is None else np.asarray(h0, float).copy()

    def model() -> np.ndarray:
        sigma = (l_eeg * np.repeat(gamma, n_ori)) @ l_eeg.T + eye
        for hk, b in zip(h, grams):
            sigma = sigma + hk * b
        return (sigma + sigma.T) / 2

    for _ in range(n_iter):
        c = linalg.cho_factor(model())
        sl = linalg.cho_solve(c, l_eeg)  # Sigma^-1 L
        num = ((s_ee @ sl) * sl).sum(0).reshape(n_loc, n_ori).sum(1)
        den = (l_eeg * sl).sum(0).reshape(n_loc, n_ori).sum(1)
        ratio = np.sqrt(np.maximum(num, 0) / np.maximum(den, 1e-300))
        change = float(np.max(np.abs(ratio - 1), initial=0.0))
        if len(grams):
            x = linalg.cho_solve(c, s_ee)  # Sigma^-1 S
            for k, b in enumerate(grams):
                y = linalg.cho_solve(c, b)  # Sigma^-1 B
                h_ratio = np.sqrt(max(float((x * y.T).sum()), 0.0)
                                  / max(float(np.trace(y)), 1e-300))
                h[k] *= h_ratio
                change = max(change, abs(h_ratio - 1))
        gamma = gamma * ratio
        if change < tol:
            break
    return gamma, h, model()


def seed_variances(prior: SourcePrior, head: Head) -> np.ndarray:
    """SBL's start from a learned prior: half its variance per location.

    ``diag(C)`` of the prior on the head's sources, averaged over orientations.
    """
    v = np.where(head.cols[:, None] >= 0, prior.v[np.clip(head.cols, 0, None)], 0.0)
    var = ((v @ (prior.a - prior.b * np.eye(len(prior.a)))) * v).sum(1) + prior.b
    return 0.5 * var.reshape(-1, head.n_ori).mean(1)


def patch_basis(pos: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Gaussian patches of cortex centred on every source location.

    Parameters
    ----------
    pos : ndarray, shape (n_loc, 3)
        Source locations (m).
    sigma_mm : float
        Patch standard deviation (mm).

    Returns
    -------
    basis : ndarray, shape (n_loc, n_loc)
        Column ``i`` weights the locations by ``exp(-d^2 / 2 sigma^2)`` from
        location ``i``, normalised to sum 1 (so a patch's variance is that
        of its total moment, as in the simulator).
    """
    pos = np.asarray(pos, float)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    basis = np.exp(-d2 / (2 * (sigma_mm * 1e-3) ** 2))
    return basis / basis.sum(0, keepdims=True)


def _in_patches(gain: np.ndarray, basis: np.ndarray, n_ori: int) -> np.ndarray:
    """Lead field of each patch, per orientation: (n, n_loc * n_ori) -> same shape."""
    n, n_loc = gain.shape[0], basis.shape[0]
    per_loc = gain.reshape(n, n_loc, n_ori)
    return np.einsum("nlo,lk->nko", per_loc, basis).reshape(n, n_loc * n_ori)


class AdaptiveTranslator(SourceSpaceTranslator):
    """The source-space prior adapted to each subject's EEG by SBL.

    Parameters
    ----------
    prior : {"cv", "learned", "none"}
        ``"learned"``: SBL seeded by the prior learned across training
        subjects (see :mod:`.sourcespace`). ``"none"``: the subject-only
        reference, SBL from a flat start. ``"cv"``: whichever of the two
        predicts the training subjects' MEG better in the inner
        leave-subjects-out (chosen with ``lam``).
    n_iter_sbl : int
        Most SBL iterations per subject.
    patch_mm : float
        SBL learns one variance per *patch* of this standard deviation
        (mm), centred on each source location, instead of per location;
        0 learns per location. Why: cortical activity comes in extended
        patches whose nearby dipoles move together; SBL over independent
        locations explains the EEG with a few focal sources whose MEG is
        wrong. Measured on the simulator with its own cortex as the source
        space (``bench_transfer.py --oracle``): the subject-only fit went
        from about -300% of the within-subject optimum (locations) to
        about +50% (10-15 mm patches). Needs ``src_pos`` in the lead fields.
    lambdas, lam_fit, background, max_rank, n_iter, inner_folds, space
        As :class:`.sourcespace.SourceSpaceTranslator`.

    Attributes
    ----------
    seed_ : {"learned", "none"}
        The start of SBL used at prediction.
    lambda_, cv_r2_, subjects_, prior_, grid_, space_
        As :class:`.sourcespace.SourceSpaceTranslator` (``prior_`` is None
        with ``prior="none"``); ``cv_r2_`` scores the adapted maps, one row
        per (seed, ``lam``) candidate.
    """

    name = "adaptive"

    def __init__(
        self,
        prior: str = "cv",
        n_iter_sbl: int = 100,
        patch_mm: float = 10.0,
        lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
        lam_fit: float = 0.05,
        background: float = 1.0,
        max_rank: int = 400,
        n_iter: int = 60,
        inner_folds: int = 4,
        space: str = "auto",
    ) -> None:
        super().__init__(lambdas, lam_fit, background, max_rank, n_iter, inner_folds, space)
        if prior not in ("cv", "learned", "none"):
            raise ValueError("prior must be 'cv', 'learned' or 'none'")
        self.prior = prior
        self.n_iter_sbl = int(n_iter_sbl)
        self.patch_mm = float(patch_mm)
        if self.patch_mm < 0:
            raise ValueError("patch_mm must be >= 0")

    def _learn(self, heads, stats, covs) -> SourcePrior | None:
        if self.prior == "none":
            return None  # the subject-only reference uses no training data in its prior
        return super()._learn(heads, stats, covs)

    def patch_gains(self, head: Head) -> tuple[np.ndarray, np.ndarray]:
        """EEG and MEG gains of the patches (of the sources with ``patch_mm=0``)."""
        if self.patch_mm > 0 and head.pos is not None:
            basis = patch_basis(head.pos, self.patch_mm)
            return (_in_patches(head.l_eeg, basis, head.n_ori),
                    _in_patches(head.l_meg, basis, head.n_ori))
        return head.l_eeg, head.l_meg

    def adapted_map(
        self, prior: SourcePrior | None, head: Head, s_ee: np.ndarray, lam: float
    ) -> np.ndarray:
        """Wiener map (n_meg, n_e') of referenced EEG after SBL on ``s_ee``."""
        l_eeg, l_meg = self.patch_gains(head)
        prior_gram = cross = gamma0 = None
        if prior is not None:
            prior_gram, cross, _ = prior.terms(head)
            gamma0 = seed_variances(prior, head)
        gamma, h0, sigma = sbl_source_cov(
            l_eeg, s_ee, lam, head.n_ori, prior_gram, gamma0, n_iter=self.n_iter_sbl
        )
        g = np.repeat(gamma, head.n_ori)
        cross_all = (l_meg * g) @ l_eeg.T
        if cross is not None:
            cross_all = cross_all + h0 * cross
        return linalg.solve(sigma, cross_all.T, assume_a="pos").T

    def _candidates(self) -> list[tuple[float, str]]:
        seeds = ["learned", "none"] if self.prior == "cv" else [self.prior]
        return [(lam, seed) for seed in seeds for lam in self.lambdas]

    def _choose(self, candidate: tuple[float, str]) -> None:
        self.lambda_, self.seed_ = float(candidate[0]), candidate[1]

    def _score(self, prior, head: Head, st: Mapping, candidates) -> np.ndarray:
        # The held-out training subject's EEG adapts the prior, its MEG scores.
        return np.array([
            np.nanmean(r2_from_stats(
                self.adapted_map(prior if seed == "learned" else None, head, st["ee"], lam), st))
            for lam, seed in candidates
        ])

    def map_for(self, head: Head, eeg: np.ndarray) -> np.ndarray:
        """Adapt to these windows' EEG covariance, then map (n_meg, n_eeg)."""
        prior = self.prior_ if self.seed_ == "learned" else None
        return self.adapted_map(prior, head, head.eeg_cov(eeg), self.lambda_) @ head.pre

    def _get_state(self):
        tensors, fitted = super()._get_state()
        fitted["seed"] = self.seed_
        return tensors, fitted

    def _set_state(self, tensors, fitted) -> None:
        super()._set_state(tensors, fitted)
        self.seed_ = fitted.get("seed", "learned" if self.prior_ is not None else "none")
