"""Source-space translator: a source covariance learned across subjects.

EEG and MEG are linear images of the same currents ``j`` (see
:mod:`.physics`). For a subject ``s`` with lead fields ``L_s = [L_eeg; L_meg]``
and a source covariance ``C``, the joint sensor covariance is::

    Cov([eeg; meg]) = L_s C L_s^T + N_s

and the best linear prediction of MEG from EEG under that model is the
Wiener map through the subject's own lead fields::

    W_s = L_meg,s C L_eeg,s^T (L_eeg,s C L_eeg,s^T + lam * I)^-1

With a uniform ``C`` this map explains almost nothing (issue 6): what EEG
can say about MEG depends on how brain activity is organised. This
translator *learns* ``C`` from the training subjects' joint EEG+MEG and maps
it through each new subject's own lead fields, so that a change of head
position or electrode placement is handled by physics, not by the data.

Common source space
-------------------
``C`` lives on a source grid in **head coordinates** (the sphere-model grid
of :func:`.physics.lead_fields_from_info`, whose points lie on one lattice
for every subject): head coordinates are anchored to the nasion and the
pre-auriculars, so the same grid point sits at roughly the same place in
every brain. This is a coarse common space (no MRI, no surface morph), which
is why subjects whose brains differ still transfer imperfectly. Lead-field
sets that carry ``"src_pos"`` (n_loc, 3) are aligned by position (the union
of the training subjects' points; a new subject's point takes the prior of
the nearest one within 1.5 grid spacings, else only the background).
Without ``"src_pos"`` every subject must share the same source columns.
Sources on each subject's own cortex do not coincide in head coordinates;
for them (``space="auto"``, the default, decides) positions are taken
relative to the grid's centre and scaled to a common radius, and every
subject's source snaps to the nearest point of the largest training grid.

Estimating ``C`` (empirical Bayes, EM)
--------------------------------------
The training lead fields (rows scaled to unit data power per modality) are
stacked and their row space ``V`` (n_src, r) computed once; the data only
ever inform ``C`` inside that space. The prior is::

    C = V A V^T + b (I - V V^T)

with a full ``A`` (r, r) learned and, outside ``V`` (source patterns that no
training sensor saw, which a new head may see), the flat variance ``b``
(``background`` times the flat level). ``A`` maximises the Gaussian
likelihood of all training subjects' sensor covariances ``S_s`` by the EM
algorithm for a latent ``a ~ N(0, A)`` seen through ``G_s = L_s V``::

    Gam_s = G_s A G_s^T + b L_s (I - V V^T) L_s^T + lam_fit I
    K_s   = A G_s^T Gam_s^-1
    A    <- mean_s (A - K_s G_s A + K_s S_s K_s^T)

starting from the flat prior ``A = alpha I``. Directions the data do not
determine keep the flat value, which is the regularisation. This is the
source-space counterpart of factor analysis, and the single-covariance case
of the empirical Bayes schemes of Friston et al. 2008 (NeuroImage 39:1104,
"multiple sparse priors") and Wipf & Nagarajan 2009 (NeuroImage 44:947).

Only training subjects' MEG is used, in ``fit``. ``predict`` reads EEG and
the held-out subject's lead fields. The EEG regularisation ``lam`` of the
Wiener map is chosen by inner leave-subjects-out: for each training subject,
the prior is learned from *other* training subjects and the subject's MEG
predicted from its EEG; the ``lam`` with the best mean R² wins.

Geometry contract: as :mod:`.physics` (a lead-field set, ``{subject: set}``
with ``groups``, or ``{"lead_fields": ..., "labels": ...}``); the EEG is
average-referenced (or whitened by ``"noise_cov"`` after referencing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import linalg
from scipy.spatial import cKDTree

from .base import NotFittedError, Translator, check_eeg, check_pair
from .physics import _whitener, average_reference, resolve_geometry

logger = logging.getLogger(__name__)

_REF_RADIUS = 0.05  # m: RMS radius of a source grid in sphere-normalised space
# Up to 100: where nothing transfers, a large lam shrinks the map towards
# predicting zero instead of amplifying a wrong prior.
DEFAULT_LAMBDAS: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


# ----------------------------------------------------------- per-subject data
class Head:
    """One subject's lead fields and sensor statistics in model form.

    ``pre`` (n_e', n_eeg) references (and whitens) EEG; ``l_eeg = pre L_eeg``
    and ``l_meg`` are the gains the model uses, ``cols`` the common-space
    column of each of the subject's sources (-1: no learned prior there).
    The sphere-normalised positions use ``lf["sphere_origin"]`` when given,
    else the grid's centroid.
    """

    def __init__(self, lf: Mapping[str, Any]) -> None:
        l_eeg = np.asarray(lf["L_eeg"], float)
        l_meg = np.asarray(lf["L_meg"], float)
        if l_eeg.ndim != 2 or l_meg.ndim != 2 or l_eeg.shape[1] != l_meg.shape[1]:
            raise ValueError(
                "L_eeg (n_eeg, n_src) and L_meg (n_meg, n_src) must share n_src; got "
                f"{l_eeg.shape} and {l_meg.shape}"
            )
        n = l_eeg.shape[0]
        p_ref = average_reference(n)
        self.pre = _whitener(lf.get("noise_cov"), n, p_ref) @ p_ref
        self.l_eeg = self.pre @ l_eeg
        self.l_meg = l_meg
        self.n_eeg, self.n_meg = n, l_meg.shape[0]
        pos = lf.get("src_pos")
        self.pos = None if pos is None else np.asarray(pos, float).reshape(-1, 3)
        n_src = l_eeg.shape[1]
        if self.pos is not None and n_src % len(self.pos):
            raise ValueError(f"{n_src} source columns do not split over {len(self.pos)} src_pos")
        self.n_ori = 1 if self.pos is None else n_src // len(self.pos)
        self.cols = np.arange(n_src)
        self.pos_sphere = None
        if self.pos is not None:
            # The source grid fills the head sphere: its centroid and RMS
            # radius stand for the sphere when the set does not give it.
            origin = np.asarray(lf.get("sphere_origin", self.pos.mean(0)), float)
            radius = float(np.sqrt(((self.pos - origin) ** 2).sum(1).mean()))
            self.pos_sphere = (self.pos - origin) * (_REF_RADIUS / radius)

    def check(self, n_eeg: int, n_meg: int | None) -> None:
        """Raise if the data's channel counts differ from the lead fields'."""
        if self.n_eeg != n_eeg or (n_meg is not None and self.n_meg != n_meg):
            raise ValueError(
                f"lead fields are ({self.n_eeg} EEG, {self.n_meg} MEG) channels but the data "
                f"have ({n_eeg} EEG, {n_meg} MEG)"
            )

    def eeg_cov(self, eeg: np.ndarray) -> np.ndarray:
        """Covariance of the referenced EEG, shape (n_e', n_e')."""
        x = self.pre @ _flat(eeg)
        x = x - x.mean(1, keepdims=True)
        return x @ x.T / x.shape[1]


def _flat(arr: np.ndarray) -> np.ndarray:
    """(n_windows, n_ch, n_times) -> (n_ch, n_windows * n_times), float64."""
    return np.asarray(arr, float).transpose(1, 0, 2).reshape(arr.shape[1], -1)


def _stats(head: Head, eeg: np.ndarray, meg: np.ndarray) -> dict[str, np.ndarray]:
    """Second moments of one subject's referenced EEG and MEG (means removed)."""
    x = head.pre @ _flat(eeg)
    y = _flat(meg)
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    n = x.shape[1]
    return {"ee": x @ x.T / n, "me": y @ x.T / n, "mm_diag": (y**2).sum(1) / n}


def r2_from_stats(w: np.ndarray, st: Mapping[str, np.ndarray]) -> np.ndarray:
    """R² per MEG channel of ``meg_hat = w @ eeg_ref`` from second moments.

    ``mean((y - w x)^2) = S_mm - 2 diag(w S_em^T) + diag(w S_ee w^T)`` per
    channel, so no pass over the samples is needed for each candidate map.
    """
    sse = st["mm_diag"] - 2 * (w * st["me"]).sum(1) + ((w @ st["ee"]) * w).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(st["mm_diag"] > 0, 1 - sse / st["mm_diag"], np.nan)


def resolve_space(heads: Sequence[Head], space: str) -> str:
    """``"auto"`` -> ``"head"`` where the heads' sources share one lattice, else ``"sphere"``.

    The app's volume grids are one lattice in head coordinates, so their
    points coincide across subjects and head space is exact. Sources on each
    subject's own cortex (an individual surface, or the simulator's) do not
    coincide in head coordinates: a union of them would give each training
    subject its own columns, learn every column's prior from one subject and
    leave a new subject's points unmatched, so the sphere-normalised space,
    which aligns brains of similar shape, is used instead.
    """
    if space not in ("head", "sphere", "auto"):
        raise ValueError("space must be 'head', 'sphere' or 'auto'")
    if space != "auto":
        return space
    positions = [h.pos for h in heads if h.pos is not None]
    if not positions:
        return "head"
    union = np.unique(np.round(np.concatenate(positions) * 1e4).astype(np.int64), axis=0)
    return "head" if len(union) <= 1.2 * max(len(p) for p in positions) else "sphere"


def align_heads(
    heads: Sequence[Head], grid: np.ndarray | None = None, space: str = "head"
) -> np.ndarray | None:
    """Give every head the common-space column of each of its sources.

    Parameters
    ----------
    heads : sequence of Head
        Updated in place (``cols``).
    grid : ndarray, shape (n_loc, 3), optional
        An existing common grid (prediction); default (training): in
        ``"head"`` space the union of the heads' ``src_pos`` rounded to
        0.1 mm, in ``"sphere"`` space the largest head's normalised grid.
    space : {"head", "sphere"}
        ``"head"``: head coordinates as they are. ``"sphere"``: positions
        relative to the grid's centre and scaled to a common RMS radius, a
        crude size normalisation of each brain (no MRI needed). See
        :func:`resolve_space` for choosing one.

    Returns
    -------
    grid : ndarray or None
        The common grid (None when the heads carry no ``src_pos``).
    """
    if all(h.pos is None for h in heads) and grid is None:
        n_src = {h.l_eeg.shape[1] for h in heads}
        if len(n_src) != 1:
            raise ValueError(
                "lead fields without 'src_pos' must share the same source columns; got "
                f"{sorted(n_src)} sources"
            )
        return None
    if any(h.pos is None for h in heads):
        raise ValueError("either every lead-field set has 'src_pos' or none has")
    n_ori = {h.n_ori for h in heads}
    if len(n_ori) != 1:
        raise ValueError(f"subjects mix source orientations per location: {sorted(n_ori)}")
    k = n_ori.pop()
    if space not in ("head", "sphere"):
        raise ValueError("space must be 'head' or 'sphere'")
    positions = [h.pos if space == "head" else h.pos_sphere for h in heads]
    if grid is None and space == "head":
        keys = np.round(np.concatenate(positions) * 1e4).astype(np.int64)
        grid = np.unique(keys, axis=0) / 1e4
    elif grid is None:
        grid = max(positions, key=len)
    tree = cKDTree(grid)
    spacing = np.median(tree.query(grid, k=2)[0][:, 1]) if len(grid) > 1 else np.inf
    for h, pos in zip(heads, positions):
        dist, loc = tree.query(pos)
        loc = np.where(dist <= 1.5 * spacing + 1e-9, loc, -1)
        cols = (loc[:, None] * k + np.arange(k)[None, :]).reshape(-1)
        h.cols = np.where(np.repeat(loc, k) >= 0, cols, -1)
    return grid


def _rows(v: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Rows ``cols`` of ``v`` with zeros where ``cols == -1``."""
    out = v[np.clip(cols, 0, None)]
    out[cols < 0] = 0.0
    return out


# ------------------------------------------------------------------- the prior
class SourcePrior:
    """``C = V A V^T + b (I - V V^T)`` on the common source space.

    Attributes
    ----------
    v : ndarray, shape (n_common, r)
        Orthonormal basis of the training lead fields' row space.
    a : ndarray, shape (r, r)
        Learned covariance inside that space (source units squared).
    b : float
        Flat variance per source outside the learned space ``V``.
    """

    def __init__(self, v: np.ndarray, a: np.ndarray, b: float) -> None:
        self.v, self.a, self.b = v, a, float(b)

    def terms(self, head: Head) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gram and cross terms of the prior through ``head``.

        Returns
        -------
        gram : ndarray, (n_e', n_e')
            ``l_eeg C l_eeg^T``.
        cross : ndarray, (n_meg, n_e')
            ``l_meg C l_eeg^T``.
        f_eeg : ndarray, (n_e', r)
            ``l_eeg V``: the learned part seen by EEG.
        """
        v = _rows(self.v, head.cols)
        f_eeg, f_meg = head.l_eeg @ v, head.l_meg @ v
        # b (I - V V^T): V V^T restricted to the head's sources is a principal
        # block of a projector, so I - V V^T stays positive semi-definite.
        gram = f_eeg @ (self.a - self.b * np.eye(len(self.a))) @ f_eeg.T
        gram += self.b * head.l_eeg @ head.l_eeg.T
        cross = f_meg @ (self.a - self.b * np.eye(len(self.a))) @ f_eeg.T
        cross += self.b * head.l_meg @ head.l_eeg.T
        return gram, cross, f_eeg

    def wiener(self, head: Head, lam: float) -> np.ndarray:
        """The map ``W`` (n_meg, n_eeg) of referenced EEG through ``head``."""
        gram, cross, _ = self.terms(head)
        return wiener_from_terms(gram, cross, lam) @ head.pre


def wiener_from_terms(gram: np.ndarray, cross: np.ndarray, lam: float) -> np.ndarray:
    """``cross (gram + lam * tr(gram)/n I)^-1``, shape (n_meg, n_e').

    ``lam`` is relative to the mean EEG channel power the prior implies, so
    one grid serves any units (as in :mod:`.physics`).
    """
    n = gram.shape[0]
    scale = float(np.trace(gram) / n) or 1.0
    g = (gram + gram.T) / 2 + lam * scale * np.eye(n)
    return linalg.solve(g, cross.T, assume_a="pos").T


def learn_prior(
    heads: Sequence[Head],
    stats: Sequence[Mapping[str, np.ndarray]],
    cov_joint: Sequence[np.ndarray],
    lam_fit: float,
    background: float,
    max_rank: int,
    n_iter: int,
    tol: float = 1e-5,
    n_common: int | None = None,
) -> SourcePrior:
    """Empirical-Bayes source covariance from several subjects (EM).

    Parameters
    ----------
    heads : sequence of Head
        Training heads, aligned (``cols`` set) to one common space.
    stats : sequence of dict
        Their second moments (only for the modality scales).
    cov_joint : sequence of ndarray
        Each subject's joint covariance of ``[eeg_ref; meg]``.
    lam_fit : float
        Sensor noise variance assumed by EM, relative to the mean channel
        power of each modality.
    background : float
        Variance outside ``V``, relative to the flat level.
    max_rank : int
        Most dimensions of the learned part ``V``.
    n_iter : int
        Most EM iterations.
    tol : float
        Stop when ``A`` changes by less than this (relative Frobenius).
    n_common : int, optional
        Columns of the common space; default: the largest of the heads'.

    Returns
    -------
    prior : SourcePrior
    """
    if n_common is None:
        n_common = max(int(h.cols.max()) for h in heads) + 1
    # Rows scaled to unit mean power per modality, so that neither EEG in µV
    # nor MEG in fT dominates the joint fit by its units.
    sig_e = np.sqrt(np.mean([np.trace(st["ee"]) / len(st["ee"]) for st in stats]))
    sig_m = np.sqrt(np.mean([st["mm_diag"].mean() for st in stats]))
    scaled, covs = [], []
    for h, c in zip(heads, cov_joint):
        d = np.concatenate([np.full(len(h.l_eeg), 1 / sig_e), np.full(h.n_meg, 1 / sig_m)])
        full = np.zeros((len(d), n_common))
        ok = h.cols >= 0
        # Sum, not assign: in "sphere" space two sources may share a column.
        np.add.at(full.T, h.cols[ok], (d[:, None] * np.vstack([h.l_eeg, h.l_meg]))[:, ok].T)
        scaled.append(full)
        covs.append(c * np.outer(d, d))
    # Row space of all training gains: the only part of C the data can inform.
    _, s, vt = linalg.svd(np.vstack(scaled), full_matrices=False)
    r = int(min(max_rank, np.sum(s > s[0] * 1e-4)))
    v = vt[:r].T
    gs = [m @ v for m in scaled]
    # L (I - V V^T) L^T: what the truncated space misses of each training head.
    lls = [m @ m.T - g @ g.T for m, g in zip(scaled, gs)]
    noise = [lam_fit * np.eye(len(c)) for c in covs]
    # Flat start: the source power that explains the data power above noise.
    signal = sum(max(np.trace(c) - np.trace(nz), 1e-12 * np.trace(c)) for c, nz in zip(covs, noise))
    alpha = signal / sum(np.trace(m @ m.T) for m in scaled)
    b = background * alpha
    a = alpha * np.eye(r)
    for it in range(n_iter):
        acc = np.zeros_like(a)
        for g, ll, c, nz in zip(gs, lls, covs, noise):
            ga = g @ a
            gam = ga @ g.T + b * ll + nz
            k = linalg.solve(gam, ga, assume_a="pos").T  # A G^T Gam^-1, (r, n)
            acc += a - k @ ga + k @ c @ k.T
        new = acc / len(gs)
        new = (new + new.T) / 2
        change = np.linalg.norm(new - a) / max(np.linalg.norm(a), 1e-300)
        a = new
        if change < tol:
            logger.debug("source prior EM converged after %d iterations", it + 1)
            break
    return SourcePrior(v, a, b)


# --------------------------------------------------------------- translator
class SourceSpaceTranslator(Translator):
    """Shared source covariance, mapped through each subject's lead fields.

    Parameters
    ----------
    lambdas : sequence of float
        Grid of the EEG regularisation (relative), chosen by inner
        leave-one-subject-out over training subjects.
    lam_fit : float
        Sensor noise assumed while learning the prior (relative power).
    background : float
        Source variance outside the learned space, relative to the flat level.
    max_rank : int
        Most dimensions of the learned source covariance.
    n_iter : int
        Most EM iterations.
    inner_folds : int
        Most inner leave-subjects-out folds for choosing ``lam`` (each
        learns a prior; leave-one-subject-out up to this many subjects).
    space : {"auto", "head", "sphere"}
        Common source space: head coordinates, or sphere-normalised ones
        (see :func:`align_heads`); ``"auto"`` chooses per fit
        (:func:`resolve_space`).

    Attributes
    ----------
    space_ : str
        The common space used (``"head"`` or ``"sphere"``).
    lambda_ : float
    cv_r2_ : ndarray, shape (n_candidates, n_subjects)
        Inner leave-subjects-out mean R² of each training subject, per
        candidate setting (here each ``lam`` of ``lambdas``).
    subjects_ : list of str
    prior_ : SourcePrior
        Learned on all training subjects.
    grid_ : ndarray (n_loc, 3) or None
        The common source grid (head coordinates, m).
    """

    name = "sourcespace"

    def __init__(
        self,
        lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
        lam_fit: float = 0.05,
        background: float = 1.0,
        max_rank: int = 400,
        n_iter: int = 60,
        inner_folds: int = 4,
        space: str = "auto",
    ) -> None:
        self.lambdas = tuple(float(v) for v in np.atleast_1d(lambdas))
        if not self.lambdas or min(self.lambdas) <= 0:
            raise ValueError("lambdas must be a non-empty grid of positive values")
        if lam_fit <= 0 or background < 0:
            raise ValueError("lam_fit must be > 0 and background >= 0")
        self.lam_fit = float(lam_fit)
        self.background = float(background)
        self.max_rank = int(max_rank)
        self.n_iter = int(n_iter)
        self.inner_folds = int(inner_folds)
        if space not in ("auto", "head", "sphere"):
            raise ValueError("space must be 'auto', 'head' or 'sphere'")
        self.space = space

    # ------------------------------------------------------------- fitting
    def _learn(self, heads, stats, covs) -> SourcePrior | None:
        return learn_prior(heads, stats, covs, self.lam_fit, self.background,
                           self.max_rank, self.n_iter, n_common=self._n_common)

    def _candidates(self) -> list[Any]:
        """Settings the inner leave-subjects-out chooses from: here ``lam``."""
        return list(self.lambdas)

    def _choose(self, candidate: Any) -> None:
        self.lambda_ = float(candidate)

    def _subject_stats(self, head: Head, eeg: np.ndarray, meg: np.ndarray) -> dict:
        """What the inner folds need of one training subject: its second moments."""
        return _stats(head, eeg, meg)

    def _score(self, prior: SourcePrior | None, head: Head, st: Mapping,
               candidates: Sequence[Any]) -> np.ndarray:
        """Mean R² of one held-out training subject for each candidate."""
        gram, cross, _ = prior.terms(head)
        return np.array([np.nanmean(r2_from_stats(wiener_from_terms(gram, cross, lam), st))
                         for lam in candidates])

    def fit(
        self,
        eeg: np.ndarray,
        meg: np.ndarray,
        groups: np.ndarray | None = None,
        geometry: Any = None,
    ) -> SourceSpaceTranslator:
        """Learn the source prior and choose ``lam`` from training subjects.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
            Training EEG in the units of the lead fields.
        meg : ndarray, shape (n_windows, n_meg, n_times)
        groups : ndarray, shape (n_windows,), optional
            Subject of each window.
        geometry : lead-field set(s), see :mod:`.physics`

        Returns
        -------
        self
        """
        eeg, meg, groups = check_pair(eeg, meg, groups)
        parts = resolve_geometry(geometry, eeg.shape[0], groups)
        heads, stats, covs = [], [], []
        for _, idx, lf in parts:
            h = Head(lf)
            h.check(eeg.shape[1], meg.shape[1])
            st = self._subject_stats(h, eeg[idx], meg[idx])
            heads.append(h)
            stats.append(st)
            covs.append(_joint_cov(h, eeg[idx], meg[idx]))
        self.space_ = resolve_space(heads, self.space)
        self.grid_ = align_heads(heads, space=self.space_)
        # Inner folds learn on the full common space, so that the left-out
        # subject's columns exist in their prior.
        self._n_common = max(int(h.cols.max()) for h in heads) + 1
        candidates = self._candidates()
        n = len(heads)
        scores = np.full((len(candidates), n), np.nan)
        # Inner leave-subjects-out in at most ``inner_folds`` folds (subjects
        # dealt round-robin); with one subject, in-sample.
        n_folds = max(1, min(self.inner_folds, n))
        for f in range(n_folds):
            held = list(range(f, n, n_folds))
            train = [i for i in range(n) if i not in held] or held
            prior = self._learn([heads[i] for i in train], [stats[i] for i in train],
                                [covs[i] for i in train])
            for j in held:
                scores[:, j] = self._score(prior, heads[j], stats[j], candidates)
        if n < 2:
            logger.warning("%s: one training subject, lam chosen in-sample", self.name)
        self.cv_r2_ = scores
        self.subjects_ = [lab for lab, _, _ in parts]
        self._choose(candidates[int(np.nanargmax(np.nanmean(scores, 1)))])
        self.prior_: SourcePrior | None = self._learn(heads, stats, covs)
        self._fitted = True
        return self

    # ---------------------------------------------------------- prediction
    def _heads_for(self, eeg: np.ndarray, geometry: Any) -> list[tuple[np.ndarray, Head]]:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted")
        out = []
        for _, idx, lf in resolve_geometry(geometry, eeg.shape[0]):
            h = Head(lf)
            h.check(eeg.shape[1], None)
            if self.grid_ is not None:
                align_heads([h], self.grid_, space=self.space_)
            elif self.prior_ is not None and h.l_eeg.shape[1] != self.prior_.v.shape[0]:
                raise ValueError(
                    f"lead fields have {h.l_eeg.shape[1]} sources, the model's source space "
                    f"{self.prior_.v.shape[0]} (fitted without 'src_pos')"
                )
            out.append((idx, h))
        return out

    def map_for(self, head: Head, eeg: np.ndarray) -> np.ndarray:
        """The linear map (n_meg, n_eeg) used for one head's windows."""
        return self.prior_.wiener(head, self.lambda_)

    def predict(self, eeg: np.ndarray, geometry: Any = None) -> np.ndarray:
        """Translate EEG through the prior and the windows' own lead fields.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        geometry : lead-field set, or form 3 of the :mod:`.physics` contract

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times), ``eeg``'s dtype
        """
        eeg = check_eeg(eeg)
        out: np.ndarray | None = None
        for idx, h in self._heads_for(eeg, geometry):
            w = self.map_for(h, eeg[idx])
            if out is None:
                out = np.zeros((eeg.shape[0], w.shape[0], eeg.shape[2]), dtype=eeg.dtype)
            out[idx] = np.tensordot(w, eeg[idx], axes=([1], [1])).transpose(1, 0, 2)
        assert out is not None
        return out

    # --------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = {"cv_r2": np.asarray(self.cv_r2_, float)}
        fitted = {"lambda": self.lambda_, "subjects": self.subjects_, "space": self.space_}
        if self.prior_ is not None:
            tensors.update(prior_v=self.prior_.v, prior_a=self.prior_.a)
            fitted["prior_b"] = self.prior_.b
        if self.grid_ is not None:
            tensors["grid"] = self.grid_
        return tensors, fitted

    def _set_state(self, tensors: dict[str, np.ndarray], fitted: dict[str, Any]) -> None:
        self.cv_r2_ = tensors["cv_r2"]
        self.prior_ = None
        if "prior_v" in tensors:
            self.prior_ = SourcePrior(tensors["prior_v"], tensors["prior_a"],
                                      fitted["prior_b"])
        self.grid_ = tensors.get("grid")
        self.lambda_ = float(fitted["lambda"])
        # Models saved before "auto" existed used the space they were given.
        self.space_ = fitted.get("space", "head" if self.space == "auto" else self.space)
        self.subjects_ = list(fitted.get("subjects", []))


def _joint_cov(head: Head, eeg: np.ndarray, meg: np.ndarray) -> np.ndarray:
    """Covariance of ``[eeg_ref; meg]``, shape (n_e' + n_meg, n_e' + n_meg)."""
    z = np.vstack([head.pre @ _flat(eeg), _flat(meg)])
    z = z - z.mean(1, keepdims=True)
    return z @ z.T / z.shape[1]
