"""Physics translator: a lead-field Wiener (minimum-norm) map from EEG to MEG.

EEG and MEG are linear images of the same source currents ``j``::

    eeg = L_eeg j + n_eeg        meg = L_meg j + n_meg

With a Gaussian prior ``j ~ N(0, R)`` and EEG noise ``N(0, lam * C)``, the
conditional mean of MEG given EEG is the Wiener / minimum-norm map::

    W(lam) = L_meg R L_eeg^T (L_eeg R L_eeg^T + lam * C)^-1     (n_meg, n_eeg)

It needs no paired data at all: only each subject's lead fields. Paired
training data are used for one thing, choosing ``lam`` on the grid (the
value with the best mean R² over training subjects), and a single-value
grid makes ``fit`` a no-op.

EEG reference. Measured EEG is referenced; the translator applies the
average reference ``P = I - 11^T / n_eeg`` both to ``L_eeg`` and to the EEG
it is given, so that data and model always agree (``P`` is idempotent, so
already average-referenced EEG is unchanged).

Regularisation scale. ``lam`` is relative: the absolute value is
``lam * trace(G) / n_eeg`` with ``G`` the (whitened) EEG Gram matrix
``L_eeg R L_eeg^T``, so one grid serves any units and any source count.

Units. Lead fields and data must be in consistent physical units (e.g. SI:
V/Am and T/Am with data in V and T), or scaled by the same factors. A
per-channel z-scored dataset breaks the physics: give this translator the
data before normalisation.

The ``geometry`` contract
-------------------------
A *lead-field set* is a mapping with keys

``"L_eeg"``      ndarray (n_eeg, n_src): EEG gain, rows in the EEG channel order of the data
``"L_meg"``      ndarray (n_meg, n_src): MEG gain, rows in the MEG channel order of the data
``"source_cov"`` optional, (n_src,) diagonal or (n_src, n_src); default identity
``"noise_cov"``  optional, (n_eeg, n_eeg) EEG noise covariance; default identity

(the dict returned by :func:`lead_fields_from_info` is one). Both gains
must use the same source space (same columns). ``geometry`` is one of

1. a lead-field set: every window comes from that one head;
2. ``{subject_label: lead-field set, ...}``: in ``fit`` each window takes the
   set of its ``groups`` label (labels compared as strings);
3. ``{"lead_fields": {label: set, ...}, "labels": (n_windows,) array}``:
   explicit per-window labels, usable in ``predict`` as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import NotFittedError, Translator, check_eeg, check_pair

DEFAULT_LAMBDAS: tuple[float, ...] = tuple(float(v) for v in np.logspace(-6, 1, 15))


# ------------------------------------------------------------ linear algebra
def average_reference(n: int) -> np.ndarray:
    """Average-reference projector ``I - 11^T / n``, shape (n, n)."""
    return np.eye(n) - np.full((n, n), 1.0 / n)


def _source_cov_apply(lt: np.ndarray, source_cov: np.ndarray | None) -> np.ndarray:
    """Return ``R @ lt`` for ``lt`` of shape (n_src, k)."""
    if source_cov is None:
        return lt
    r = np.asarray(source_cov, float)
    if r.ndim == 1:
        return r[:, None] * lt
    return r @ lt


def _whitener(noise_cov: np.ndarray | None, n: int, p_ref: np.ndarray) -> np.ndarray:
    """Whitener ``(r, n)`` for the referenced noise covariance ``P C P``.

    Directions with (numerically) zero noise variance are dropped rather
    than amplified: after average referencing the all-ones direction holds
    neither noise nor signal, and inverting it would only amplify round-off.
    """
    c = np.eye(n) if noise_cov is None else np.asarray(noise_cov, float)
    if c.shape != (n, n):
        raise ValueError(f"noise_cov must be ({n}, {n}), got {c.shape}")
    c = p_ref @ c @ p_ref
    s, u = np.linalg.eigh((c + c.T) / 2)
    keep = s > s.max() * 1e-10
    return (u[:, keep] / np.sqrt(s[keep])).T


class _Spectral:
    """Eigen-decomposed Wiener map of one head; cheap for any ``lam``.

    ``W(lam) = A diag(1 / (s + lam * scale)) U^T Wh P`` where ``Wh`` whitens,
    ``Wh P L_eeg R L_eeg^T P Wh^T = U diag(s) U^T`` and
    ``A = L_meg R L_eeg^T P Wh^T U``.
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
        wh = _whitener(lf.get("noise_cov"), n, p_ref)
        self.pre = wh @ p_ref  # (r, n_eeg): reference then whiten
        lw = self.pre @ l_eeg  # (r, n_src)
        r_lwt = _source_cov_apply(lw.T, lf.get("source_cov"))  # R Lw^T, (n_src, r)
        gram = lw @ r_lwt
        s, u = np.linalg.eigh((gram + gram.T) / 2)
        self.s = np.clip(s, 0.0, None)
        self.u = u
        self.a = l_meg @ r_lwt @ u  # (n_meg, r)
        self.scale = float(self.s.sum() / n) or 1.0
        self.n_eeg, self.n_meg = n, l_meg.shape[0]

    def d(self, lam: float) -> np.ndarray:
        return 1.0 / (self.s + lam * self.scale + 1e-300)

    def matrix(self, lam: float) -> np.ndarray:
        """The map ``W``, shape (n_meg, n_eeg)."""
        return (self.a * self.d(lam)) @ (self.u.T @ self.pre)


def wiener_map(
    L_eeg: np.ndarray,  # noqa: N803 - conventional symbol
    L_meg: np.ndarray,  # noqa: N803
    lam: float,
    source_cov: np.ndarray | None = None,
    noise_cov: np.ndarray | None = None,
) -> np.ndarray:
    """Lead-field Wiener map from (average-referenced) EEG to MEG.

    Parameters
    ----------
    L_eeg : ndarray, shape (n_eeg, n_src)
    L_meg : ndarray, shape (n_meg, n_src)
    lam : float
        Relative regularisation (see module docstring).
    source_cov : ndarray, shape (n_src,) or (n_src, n_src), optional
    noise_cov : ndarray, shape (n_eeg, n_eeg), optional

    Returns
    -------
    W : ndarray, shape (n_meg, n_eeg)
        ``meg ≈ W @ eeg`` (the average reference is folded into ``W``).
    """
    lf = {"L_eeg": L_eeg, "L_meg": L_meg, "source_cov": source_cov, "noise_cov": noise_cov}
    return _Spectral(lf).matrix(lam)


# ----------------------------------------------------------------- geometry
def _is_leadfield(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "L_eeg" in obj and "L_meg" in obj


def resolve_geometry(
    geometry: Any, n_windows: int, groups: np.ndarray | None = None
) -> list[tuple[str, np.ndarray, Mapping[str, Any]]]:
    """Split windows by head according to the ``geometry`` contract.

    Returns
    -------
    parts : list of (label, window_indices, lead_field_set)
    """
    if geometry is None:
        raise ValueError("PhysicsTranslator needs geometry (lead fields), got None")
    if _is_leadfield(geometry):
        return [("all", np.arange(n_windows), geometry)]
    if not isinstance(geometry, Mapping):
        raise TypeError(f"geometry must be a mapping, got {type(geometry).__name__}")
    if "lead_fields" in geometry and "labels" in geometry:
        table, labels = geometry["lead_fields"], np.asarray(geometry["labels"])
    else:
        table, labels = geometry, groups
        if labels is None:
            raise ValueError(
                "geometry maps subjects to lead fields but no per-window labels were "
                "given: pass groups to fit, or geometry={'lead_fields': ..., 'labels': ...}"
            )
    labels = np.asarray(labels).astype(str)
    if labels.shape != (n_windows,):
        raise ValueError(f"labels must have shape ({n_windows},), got {labels.shape}")
    table = {str(k): v for k, v in table.items()}
    parts = []
    for lab in sorted(set(labels.tolist())):
        if lab not in table:
            raise ValueError(f"no lead fields for subject {lab!r} in geometry")
        if not _is_leadfield(table[lab]):
            raise ValueError(f"geometry[{lab!r}] lacks 'L_eeg' / 'L_meg'")
        parts.append((lab, np.flatnonzero(labels == lab), table[lab]))
    return parts


# --------------------------------------------------------------- translator
class PhysicsTranslator(Translator):
    """Lead-field Wiener map; only the regularisation is learned.

    Parameters
    ----------
    lambdas : float or sequence of float
        Relative regularisation grid. With one value ``fit`` learns nothing
        and the translator can predict without being fitted.

    Attributes
    ----------
    lambda_ : float
        The regularisation in use.
    cv_r2_ : ndarray, shape (n_lambdas, n_subjects)
        Mean-over-channels R² of each training subject for each ``lam``.
    subjects_ : list of str
        Training subjects (columns of ``cv_r2_``).
    """

    name = "physics"

    def __init__(self, lambdas: float | Sequence[float] = DEFAULT_LAMBDAS) -> None:
        self.lambdas = tuple(float(v) for v in np.atleast_1d(lambdas))
        if not self.lambdas or min(self.lambdas) <= 0:
            raise ValueError("lambdas must be a non-empty grid of positive values")
        if len(self.lambdas) == 1:
            self.lambda_ = self.lambdas[0]
            self.cv_r2_ = np.full((1, 0), np.nan)
            self.subjects_: list[str] = []
            self._fitted = True

    def fit(
        self,
        eeg: np.ndarray,
        meg: np.ndarray,
        groups: np.ndarray | None = None,
        geometry: Any = None,
    ) -> PhysicsTranslator:
        """Choose ``lam`` by the mean R² over training subjects.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
            Training EEG, physical units, any reference.
        meg : ndarray, shape (n_windows, n_meg, n_times)
        groups : ndarray, shape (n_windows,), optional
            Subject of each window (needed for geometry form 2).
        geometry : see module docstring

        Returns
        -------
        self
        """
        eeg, meg, groups = check_pair(eeg, meg, groups)
        lambdas = np.asarray(self.lambdas)
        parts = resolve_geometry(geometry, eeg.shape[0], groups)
        scores = np.zeros((len(lambdas), len(parts)))
        for j, (_, idx, lf) in enumerate(parts):
            sp = _Spectral(lf)
            self._check_channels(sp, eeg.shape[1], meg.shape[1])
            x = eeg[idx].transpose(1, 0, 2).reshape(eeg.shape[1], -1).astype(float)
            y = meg[idx].transpose(1, 0, 2).reshape(meg.shape[1], -1).astype(float)
            # Sufficient statistics in the eigenbasis: each lam then costs
            # O(n_meg * r^2) instead of a pass over the samples.
            z = sp.u.T @ (sp.pre @ x)  # (r, N)
            szz, syz = z @ z.T, y @ z.T
            syy = (y**2).sum(1)
            sst = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
            for k, lam in enumerate(lambdas):
                ad = sp.a * sp.d(lam)  # (n_meg, r)
                sse = syy - 2 * (ad * syz).sum(1) + ((ad @ szz) * ad).sum(1)
                ok = sst > 0
                scores[k, j] = np.mean(1 - sse[ok] / sst[ok]) if ok.any() else np.nan
        self.cv_r2_ = scores
        self.subjects_ = [lab for lab, _, _ in parts]
        self.lambda_ = float(lambdas[int(np.nanargmax(scores.mean(1)))])
        self._fitted = True
        return self

    @staticmethod
    def _check_channels(sp: _Spectral, n_eeg: int, n_meg: int | None) -> None:
        if sp.n_eeg != n_eeg or (n_meg is not None and sp.n_meg != n_meg):
            raise ValueError(
                f"lead fields are ({sp.n_eeg} EEG, {sp.n_meg} MEG) channels but the data "
                f"have ({n_eeg} EEG, {n_meg} MEG)"
            )

    def predict(self, eeg: np.ndarray, geometry: Any = None) -> np.ndarray:
        """Translate with the lead fields of the windows' own head(s).

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        geometry : lead-field set, or form 3 of the contract

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times), ``eeg``'s dtype
        """
        if not self.is_fitted:
            raise NotFittedError("PhysicsTranslator is not fitted")
        eeg = check_eeg(eeg)
        parts = resolve_geometry(geometry, eeg.shape[0])
        out: np.ndarray | None = None
        for _, idx, lf in parts:
            sp = _Spectral(lf)
            self._check_channels(sp, eeg.shape[1], None)
            w = sp.matrix(self.lambda_)
            if out is None:
                out = np.zeros((eeg.shape[0], w.shape[0], eeg.shape[2]), dtype=eeg.dtype)
            # (m, e) x (w, e, t) -> (w, m, t) as one GEMM
            out[idx] = np.tensordot(w, eeg[idx], axes=([1], [1])).transpose(1, 0, 2)
        assert out is not None
        return out

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"cv_r2": np.asarray(self.cv_r2_, float)}, {
            "lambda": self.lambda_,
            "subjects": self.subjects_,
        }

    def _set_state(self, tensors: dict[str, np.ndarray], fitted: dict[str, Any]) -> None:
        self.cv_r2_ = tensors["cv_r2"]
        self.lambda_ = float(fitted["lambda"])
        self.subjects_ = list(fitted.get("subjects", []))


# ------------------------------------------------------------ MNE helper
def lead_fields_from_info(
    info: Any,
    eeg_picks: Sequence[str] | Sequence[int] | None = None,
    meg_picks: Sequence[str] | Sequence[int] | None = None,
    sphere: Any = None,
    grid_mm: float = 10.0,
    mindist_mm: float = 5.0,
    verbose: bool | str | None = False,
) -> dict[str, Any]:
    """Lead fields of one head from an ``mne.Info``, with a spherical head.

    A sphere conductor (fitted to the digitised head shape unless given) and
    a regular volume source grid inside it; free source orientation, so each
    grid point contributes three columns (x, y, z dipoles) and the uniform
    prior ``R = I`` treats every direction alike (a volume grid has no
    cortical normals to fix orientations to).

    Parameters
    ----------
    info : mne.Info
        With EEG and MEG channels, EEG digitisation and ``dev_head_t``.
    eeg_picks, meg_picks : list of str or int, optional
        Channels, in the order of the data rows. Default: good EEG channels;
        good magnetometers.
    sphere : mne.bem.ConductorModel, optional
        Default ``mne.make_sphere_model("auto", "auto", info)``.
    grid_mm : float
        Source grid spacing in millimetres.
    mindist_mm : float
        Exclude sources closer than this to the inner skull sphere.
    verbose : bool | str | None
        MNE verbosity.

    Returns
    -------
    lead_fields : dict
        ``"L_eeg"`` (n_eeg, 3 * n_loc), ``"L_meg"`` (n_meg, 3 * n_loc) in SI
        (V/Am, T/Am), ``"eeg_names"``, ``"meg_names"``, ``"src_pos"``
        (n_loc, 3) in head coordinates (m), ``"orientation"`` = ``"free"``.
        A lead-field set for :class:`PhysicsTranslator`.
    """
    import mne

    def _names(picks: Any, default: dict[str, Any]) -> list[str]:
        if picks is None:
            idx = mne.pick_types(info, **default, exclude="bads")
            return [info["ch_names"][i] for i in idx]
        return [info["ch_names"][p] if isinstance(p, int | np.integer) else str(p) for p in picks]

    eeg_names = _names(eeg_picks, {"meg": False, "eeg": True})
    meg_names = _names(meg_picks, {"meg": "mag", "eeg": False})
    if not eeg_names or not meg_names:
        raise ValueError("lead_fields_from_info needs at least one EEG and one MEG channel")
    if sphere is None:
        sphere = mne.make_sphere_model("auto", "auto", info, verbose=verbose)
    src = mne.setup_volume_source_space(
        pos=float(grid_mm), sphere=sphere, mindist=float(mindist_mm), verbose=verbose
    )
    sub = mne.pick_info(
        info, mne.pick_channels(info["ch_names"], eeg_names + meg_names, ordered=True)
    )
    # Projectors are irrelevant to the gain and would make MNE apply them.
    with sub._unlock():
        sub["projs"] = []
        sub["bads"] = []
    fwd = mne.make_forward_solution(
        sub, trans=None, src=src, bem=sphere, meg=True, eeg=True, verbose=verbose
    )
    gain = fwd["sol"]["data"]
    rows = {name: i for i, name in enumerate(fwd["sol"]["row_names"])}
    vertno = fwd["src"][0]["vertno"]
    return {
        "L_eeg": gain[[rows[n] for n in eeg_names]],
        "L_meg": gain[[rows[n] for n in meg_names]],
        "eeg_names": eeg_names,
        "meg_names": meg_names,
        "src_pos": fwd["src"][0]["rr"][vertno],
        "orientation": "free",
    }
