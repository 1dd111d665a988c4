"""Spectral translator: the subject-adaptive source model, re-weighted per frequency band.

An instantaneous linear map (every translator so far, and the within-subject
optimum) uses one compromise between the brain and the sensor noise across
all frequencies. They differ in time: cortical activity is 1/f plus rhythms,
sensor noise is close to white, so the signal-to-noise ratio falls by orders
of magnitude from 2 to 70 Hz, and which cortical components dominate
differs by band (posterior alpha at 10 Hz, the background below 4 Hz). The
Wiener map that is best in each band is a linear *filter*, and it can
exceed the instantaneous optimum (issue 6, item 3c: "whatever uses time").

Model
-----
1. Spatial step, broadband, as :mod:`.adaptive`: from the subject's own EEG
   covariance ``S`` (never its MEG), the weights of the components::

       C = sum_i gamma_i E_i + h_bg K K^T + h_prior C_prior

   with ``E_i`` the Gaussian patches of ``patch_mm`` (sparse Bayesian
   learning), ``K K^T`` every patch at once with one weight (a smooth
   cortical background: activity correlated over ``patch_mm``, everywhere)
   and ``C_prior`` the source covariance learned on the training subjects
   (only when the inner folds choose the learned seed). Each component
   ``k`` gives an EEG gram ``B_k = L_e C_k L_e^T`` and an MEG cross term
   ``L_m C_k L_e^T``.
2. Spectral step, per band ``b`` (FFT of each window, bins split at
   ``band_edges``): the same components, with their spatial shapes fixed,
   get new weights that explain the band's EEG covariance ``S_b`` (the
   same fixed point, components only), and so does the band's sensor
   noise level above a floor (``band_noise="learned"``, the default).
   With ``band_sources=True`` the patches that SBL kept broadband each get
   a variance of their own per band instead of one weight for all of
   them, started from the broadband solution; patches it pruned stay
   pruned. That separates patches whose EEG topographies overlap but
   whose spectra differ (one weight per band mixes them at their broadband
   ratio), and it needs enough windows: measured on the simulator, better
   with 60 windows and ``lam`` chosen by the inner folds (see below), worse
   with 30 windows and a fixed ``lam`` (held-out R² 0.098 against 0.131),
   and several times slower. Hence not the default. (A full SBL per band,
   tried first, was worse still: a band's covariance rests on few
   effective samples.)
   The noise floor, and with ``band_noise="white"`` the level itself, is the
   broadband noise level times the band's share of the frequency bins,
   which is right for white sensor noise only: on the simulator's
   recordings after the participant level (1/f electrode noise, filters)
   the white level lost to a learned one (held-out R² at 10 mm 0.000
   against 0.019, and 0.033 with a floor of 1/1000, which collapsed on
   one subject of the arrays benchmark).
   The band's map is ``W_b = (L_m C_b L_e^T) Sigma_b^-1``, ``C_b`` the
   band's source covariance.
3. Prediction: each window's referenced EEG is split into bands, ``W_b``
   applied to band ``b`` and the bands summed (a linear, time-invariant
   filter per window; bands partition the bins, so nothing is counted
   twice).

The EEG regularisation ``lam`` (broadband noise relative to the mean EEG
channel power) and the seed (learned prior or none) are chosen by the
training subjects in the inner leave-subjects-out, scored band by band on
their MEG, as :mod:`.adaptive` does.

Measured on the simulator with its own time courses and cortex
(``benchmarks/bench_transfer.py --oracle``, 4 subjects, 60 windows,
leave-one-out), share of the held-out subject's within-subject optimum at a
between-subject spread of 0 / 5 / 10 / 20 mm: ``band_sources=True``
94 / 76 / 58 / 39 %; ``band_sources=False`` 96 / 72 / 51 / 32 % with
``band_noise="white"`` (the default: 70 / 49 % at 5 / 10 mm); the
instantaneous :mod:`.adaptive` map 79 / 59 / 42 / 27 %. End to end in the
app (10 mm) it does not beat ``adaptive`` (see docs/translatability.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import linalg

from .adaptive import AdaptiveTranslator, fit_covariance_components, seed_variances
from .base import check_eeg
from .sourcespace import DEFAULT_LAMBDAS, Head, SourcePrior

#: Lower band edges (Hz); the last band runs to Nyquist. Classical EEG
#: bands, delta and gamma split where the 1/f spectrum and the white sensor
#: noise cross over.
DEFAULT_BAND_EDGES: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 13.0, 20.0, 30.0, 45.0, 70.0)
#: With ``band_sources``, the patches whose broadband SBL variance exceeds
#: this share of the largest keep a variance per band.
ACTIVE = 1e-3


class SpatialModel(NamedTuple):
    """The spatial step's components, which the spectral step re-weights per band.

    ``grams`` (each (n_e', n_e')) and ``crosses`` (each (n_meg, n_e')) are
    the fixed components' EEG grams ``L_e C_k L_e^T`` and MEG cross terms
    ``L_m C_k L_e^T`` at their broadband weights; ``noise`` the broadband
    sensor noise variance per EEG channel; ``l_eeg`` (n_e', n_kept * n_ori),
    ``l_meg`` (n_meg, n_kept * n_ori) and ``gamma`` (n_kept,) the gains and
    broadband variances of the patches that keep a variance of their own
    per band (none unless ``band_sources``).
    """

    grams: list[np.ndarray]
    crosses: list[np.ndarray]
    noise: float
    l_eeg: np.ndarray
    l_meg: np.ndarray
    gamma: np.ndarray
    n_ori: int


def band_masks(n_times: int, sfreq: float, edges: Sequence[float]) -> np.ndarray:
    """Which rFFT bins of an ``n_times`` window fall in each band.

    Returns
    -------
    masks : ndarray of bool, shape (n_bands, n_times // 2 + 1)
        Bands that hold no bin of this window length are dropped, so every
        row is non-empty and the rows partition the bins.
    """
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    lower = np.asarray(edges, float)
    upper = np.append(lower[1:], np.inf)
    masks = (freqs[None, :] >= lower[:, None]) & (freqs[None, :] < upper[:, None])
    return masks[masks.any(1)]


def _bin_weights(n_times: int) -> np.ndarray:
    """Power weight of each rFFT bin (DC and Nyquist count once, others twice)."""
    w = np.full(n_times // 2 + 1, 2.0)
    w[0] = 1.0
    if n_times % 2 == 0:
        w[-1] = 1.0
    return w


def band_second_moments(x: np.ndarray, y: np.ndarray | None, masks: np.ndarray) -> list[dict]:
    """Per band, the second moments of windows ``x`` (and ``y``), by Parseval.

    Parameters
    ----------
    x : ndarray, shape (n_windows, n_x, n_times)
    y : ndarray, shape (n_windows, n_y, n_times), optional
    masks : ndarray, shape (n_bands, n_times // 2 + 1)

    Returns
    -------
    stats : list of dict
        ``ee`` (n_x, n_x), and with ``y`` also ``me`` (n_y, n_x) and
        ``mm_diag`` (n_y,), averaged over samples, as
        :func:`.sourcespace.r2_from_stats` reads them; ``frac``, the band's
        share of white noise power.
    """
    n_times = x.shape[-1]
    weight = _bin_weights(n_times)
    n = x.shape[0] * n_times**2  # Parseval: sum_t |x|^2 = sum_f w |X|^2 / n_times
    fx = np.fft.rfft(x, axis=-1)
    fy = None if y is None else np.fft.rfft(y, axis=-1)
    out = []
    for mask in masks:
        wx = fx[..., mask] * np.sqrt(weight[mask])
        st = {
            "ee": np.einsum("wif,wjf->ij", wx, wx.conj()).real / n,
            "frac": float(weight[mask].sum() / n_times),
        }
        if fy is not None:
            wy = fy[..., mask] * np.sqrt(weight[mask])
            st["me"] = np.einsum("wif,wjf->ij", wy, wx.conj()).real / n
            st["mm_diag"] = (np.abs(wy) ** 2).sum((0, 2)) / n
        out.append(st)
    return out


class SpectralTranslator(AdaptiveTranslator):
    """The adaptive source model with its weights re-learned per frequency band.

    Parameters
    ----------
    sfreq : float
        Sampling rate of the windows (Hz).
    band_edges : sequence of float, optional
        Lower edges of the bands (Hz), increasing from 0 and below Nyquist;
        the last band runs to Nyquist. Default: ``DEFAULT_BAND_EDGES`` below
        Nyquist.
    band_noise : {"learned", "white"}
        Sensor noise per band: learned from the band's EEG covariance, or
        white at the broadband level (see the module docstring).
    band_sources : bool
        Re-learn each patch SBL kept with a variance per band, instead of
        one weight per band for all of them (see the module docstring).
    prior, n_iter_sbl, patch_mm
        As :class:`.adaptive.AdaptiveTranslator`; ``patch_mm`` is also the
        correlation length of the smooth background component.
    lambdas, lam_fit, background, max_rank, n_iter, inner_folds, space
        As :class:`.sourcespace.SourceSpaceTranslator`.

    Attributes
    ----------
    seed_, lambda_, cv_r2_, subjects_, prior_, grid_, space_
        As :class:`.adaptive.AdaptiveTranslator`.
    """

    name = "spectral"

    def __init__(
        self,
        sfreq: float,
        band_edges: Sequence[float] | None = None,
        band_noise: str = "learned",
        band_sources: bool = False,
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
        super().__init__(
            prior,
            n_iter_sbl,
            patch_mm,
            lambdas,
            lam_fit,
            background,
            max_rank,
            n_iter,
            inner_folds,
            space,
        )
        if not sfreq or sfreq <= 0:
            raise ValueError("sfreq must be > 0")
        if band_edges is None:
            edges = tuple(e for e in DEFAULT_BAND_EDGES if e < sfreq / 2)
        else:
            edges = tuple(float(e) for e in band_edges)
        if not edges or edges[0] != 0.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"band_edges must increase from 0 Hz; got {edges}")
        if edges[-1] >= sfreq / 2:
            raise ValueError(f"band_edges must lie below Nyquist ({sfreq / 2} Hz); got {edges}")
        if band_noise not in ("white", "learned"):
            raise ValueError("band_noise must be 'white' or 'learned'")
        self.band_noise = band_noise
        self.band_sources = bool(band_sources)
        self.sfreq = float(sfreq)
        self.band_edges = None if band_edges is None else edges
        self._edges = edges

    # ------------------------------------------------------------ the model
    def components(
        self, prior: SourcePrior | None, head: Head, s_ee: np.ndarray, lam: float
    ) -> SpatialModel:
        """Spatial step: SBL on the broadband EEG covariance ``s_ee`` (see module)."""
        l_eeg, l_meg = self.patch_gains(head)
        grams, crosses = [l_eeg @ l_eeg.T], [l_meg @ l_eeg.T]  # smooth background
        gamma0 = None
        if prior is not None:
            gram, cross, _ = prior.terms(head)
            grams.append(gram)
            crosses.append(cross)
            gamma0 = seed_variances(prior, head)
        # Start each fixed component at half the power it would explain alone.
        noise = lam * float(np.trace(s_ee)) / len(s_ee)
        excess = max(float(np.trace(s_ee)) - len(s_ee) * noise, 1e-12 * float(np.trace(s_ee)))
        h0 = [0.5 * excess / max(float(np.trace(g)), 1e-300) for g in grams]
        gamma, h, _ = fit_covariance_components(
            l_eeg, s_ee, noise, head.n_ori, grams, gamma0, h0, self.n_iter_sbl
        )
        grams = [hk * b for hk, b in zip(h, grams)]
        crosses = [hk * c for hk, c in zip(h, crosses)]
        if self.band_sources:
            # The patches SBL kept keep a variance each, re-learned per band;
            # the ones it pruned stay pruned (cheap, and no band can revive
            # a patch that the broadband EEG found no evidence for).
            kept = gamma > ACTIVE * gamma.max(initial=0.0)
            cols = np.repeat(kept, head.n_ori)
            return SpatialModel(grams, crosses, noise, l_eeg[:, cols], l_meg[:, cols],
                                gamma[kept], head.n_ori)
        g = np.repeat(gamma, head.n_ori)
        grams.insert(0, (l_eeg * g) @ l_eeg.T)
        crosses.insert(0, (l_meg * g) @ l_eeg.T)
        return SpatialModel(grams, crosses, noise, l_eeg[:, :0], l_meg[:, :0], gamma[:0], 1)

    def band_maps(self, model: SpatialModel, bands: Sequence[Mapping]) -> list[np.ndarray]:
        """Spectral step: one Wiener map (n_meg, n_e') per band."""
        maps = []
        n = len(model.grams[0])
        for band in bands:
            white = model.noise * band["frac"]
            components, h0 = model.grams, [band["frac"]] * len(model.grams)
            if self.band_noise == "learned":
                # Noise above the white level is one more weight. The white
                # level stays the floor: without one, a band's noise can
                # collapse and its map amplify (measured: R² -0.20 on one
                # held-out subject with a floor of 1/1000).
                components, h0 = [*model.grams, np.eye(n)], [*h0, white]
            gamma, h, sigma = fit_covariance_components(
                model.l_eeg, band["ee"], white, model.n_ori, components,
                model.gamma * band["frac"], h0, self.n_iter_sbl)
            cross = sum(hk * c for hk, c in zip(h, model.crosses))
            cross = cross + (model.l_meg * np.repeat(gamma, model.n_ori)) @ model.l_eeg.T
            maps.append(linalg.solve(sigma, cross.T, assume_a="pos").T)
        return maps

    # ------------------------------------------------------------- fitting
    def _subject_stats(self, head: Head, eeg: np.ndarray, meg: np.ndarray) -> dict:
        st = super()._subject_stats(head, eeg, meg)
        x, y = _centred(head, eeg), np.asarray(meg, float)
        y = y - y.mean((0, 2), keepdims=True)
        st["bands"] = band_second_moments(
            x, y, band_masks(x.shape[-1], self.sfreq, self._edges)
        )
        return st

    def _score(self, prior, head: Head, st: Mapping, candidates) -> np.ndarray:
        # The held-out training subject's EEG adapts the model, its MEG scores.
        bands = st["bands"]
        total = sum(b["mm_diag"] for b in bands)
        scores = []
        for lam, seed in candidates:
            model = self.components(prior if seed == "learned" else None, head, st["ee"], lam)
            sse = 0.0
            for w, b in zip(self.band_maps(model, bands), bands):
                sse = sse + b["mm_diag"] - 2 * (w * b["me"]).sum(1) + ((w @ b["ee"]) * w).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                scores.append(np.nanmean(np.where(total > 0, 1 - sse / total, np.nan)))
        return np.array(scores)

    # ---------------------------------------------------------- prediction
    def map_for(self, head: Head, eeg: np.ndarray) -> np.ndarray:
        raise NotImplementedError("the spectral translator is a filter, not one map; use predict")

    def predict(self, eeg: np.ndarray, geometry=None) -> np.ndarray:
        """Translate each subject's windows band by band.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
            Pass a subject's windows together: its EEG covariances, over
            these windows, adapt the model.
        geometry : lead-field set, or form 3 of the :mod:`.physics` contract

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times), ``eeg``'s dtype
        """
        eeg = check_eeg(eeg)
        n_times = eeg.shape[2]
        masks = band_masks(n_times, self.sfreq, self._edges)
        out: np.ndarray | None = None
        for idx, h in self._heads_for(eeg, geometry):
            x = _centred(h, eeg[idx])
            prior = self.prior_ if self.seed_ == "learned" else None
            model = self.components(prior, h, h.eeg_cov(eeg[idx]), self.lambda_)
            maps = self.band_maps(model, band_second_moments(x, None, masks))
            fx = np.fft.rfft(x, axis=-1)
            fy = np.zeros((len(x), len(maps[0]), fx.shape[-1]), complex)
            for w, mask in zip(maps, masks):
                fy[..., mask] = np.einsum("me,wef->wmf", w, fx[..., mask])
            if out is None:
                out = np.zeros((eeg.shape[0], fy.shape[1], n_times), dtype=eeg.dtype)
            out[idx] = np.fft.irfft(fy, n=n_times, axis=-1)
        assert out is not None
        return out


def _centred(head: Head, eeg: np.ndarray) -> np.ndarray:
    """Referenced EEG windows minus the channel means over all windows (float64)."""
    x = np.einsum("ec,wct->wet", head.pre, np.asarray(eeg, float))
    return x - x.mean((0, 2), keepdims=True)
