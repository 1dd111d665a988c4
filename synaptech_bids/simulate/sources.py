"""Brain sources of the simulation: a folded cortex, patches, networks, signals.

Source space
------------
A *cortex-like folded surface*, not a volume grid: a closed shell at ~78 % of
the scalp-sphere radius whose radius is modulated by a smooth random "gyral"
pattern (+/- 7 % of the radius, wavelength ~25 mm), sampled on a Fibonacci
lattice every ``spacing_mm`` and cut below the temporal poles. Each source is a
current dipole oriented along the local surface normal, so orientations vary
from radial (gyral crowns, seen mostly by EEG) to tangential (sulcal walls,
seen by both), and extended patches partly cancel, as cortex does. The template
is built once (cached) in units of the sphere radius and scaled to each
subject's fitted head sphere.

Components
----------
Activity is organised in *components*; each is one latent time course (in nAm,
the total dipole moment of the component) and a set of Gaussian patches of
cortex it drives. A component's sensor topography ("mixing" column) is
``sum_v w_v * G_v @ o_v`` over its sources ``v`` with weights ``w`` summing to
one per patch, lead field ``G_v`` and orientation ``o_v``.

* networks shared by subjects: posterior alpha (~10 Hz, bilateral occipital +
  medial parietal, one coherent time course), left and right sensorimotor mu +
  beta, frontal-midline theta;
* ``n_patches`` extra shared patches with 1/f activity;
* evoked components (P1, N/M170 face-specific, N250 familiarity, late
  parietal), active only around the events;
* a random 1/f background of ``n_background`` smaller patches (subject
  specific) covering the whole cortex.

Between-subject spread (``spread_mm``): every shared patch centre is moved by a
random 3-D displacement of RMS ``spread_mm`` (then snapped to the cortex), its
dipole orientations turned by a random rotation of RMS angle ``spread_deg``
(default ``2 * spread_mm`` degrees) and its amplitude scaled by a log-normal
factor (sigma ``spread_amp``); rhythm frequencies vary too (alpha 10 +/- 0.7
Hz).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import signal
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

__all__ = [
    "SourceSpace",
    "Patch",
    "Component",
    "cortex_template",
    "subject_source_space",
    "make_components",
    "component_mixing",
    "ContinuousSignals",
    "EvokedSignals",
    "CONDITION_GAINS",
]

# Shape of the template cortex, in units of the scalp-sphere radius.
_CORTEX_MEAN_R = 0.78
_CORTEX_FOLD_R = 0.07
_FOLD_WAVELENGTH_M = 0.025
_REF_RADIUS_M = 0.09
# Dipole moment amplitudes (nAm) of the ongoing activity. Calibrated on the
# real "sample" baseline covariance estimated as the real file was (docs/
# simulator.md, "Calibration"): average-referenced EEG ~5 uV in 200-ms
# baselines (real 4.1), 2.5-4 times less than an earlier tuning to "tens of
# uV" of raw EEG gave, which made every simulated baseline window fail the
# real file's 40 uV rejection.
_AMP_BACKGROUND = 6.4  # RMS per background component
_AMP_PATCH = 7.5  # RMS per extra shared 1/f patch
_AMP_ALPHA = 22.0  # RMS
_AMP_MU = 11.0
_AMP_THETA = 6.0


@dataclass
class SourceSpace:
    """Dipoles of one subject's cortex, in head coordinates (metres)."""

    rr: np.ndarray
    nn: np.ndarray

    @property
    def n_sources(self) -> int:
        """Number of dipoles."""
        return len(self.rr)


@functools.lru_cache(maxsize=4)
def cortex_template(spacing_mm: float = 6.0, seed: int = 20090409) -> tuple[np.ndarray, np.ndarray]:
    """Folded cortical surface of a unit-radius head (cached, shared anatomy).

    Parameters
    ----------
    spacing_mm : float
        Approximate distance between neighbouring sources for a 90 mm head.
    seed : int
        Seed of the folding pattern (anatomy is a template: keep it fixed).

    Returns
    -------
    rr : ndarray, shape (n, 3)
        Positions relative to the sphere origin, in units of its radius.
    nn : ndarray, shape (n, 3)
        Unit outward normals.
    """
    r_m = _CORTEX_MEAN_R * _REF_RADIUS_M
    n_full = int(np.ceil(4 * np.pi * r_m**2 / (spacing_mm / 1000.0) ** 2))
    # Fibonacci lattice: near-uniform, deterministic.
    i = np.arange(n_full) + 0.5
    z = 1 - 2 * i / n_full
    phi = np.pi * (1 + 5**0.5) * i
    rho = np.sqrt(1 - z**2)
    u = np.c_[rho * np.cos(phi), rho * np.sin(phi), z]
    # Cut below the temporal lobes, and higher in front (orbits, sinuses).
    keep = (u[:, 2] > -0.45) & ~((u[:, 1] > 0.4) & (u[:, 2] < -0.2))
    u = u[keep]
    rng = np.random.default_rng(seed)
    n_waves = 8
    k = 2 * np.pi * r_m / _FOLD_WAVELENGTH_M  # radians per unit of u
    omega = rng.standard_normal((n_waves, 3))
    omega /= np.linalg.norm(omega, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    norm = np.sqrt(n_waves / 2.0)
    arg = k * u @ omega.T + phase  # (n, n_waves)
    g = np.sin(arg).sum(axis=1) / norm
    grad_g = (np.cos(arg) * k) @ omega / norm  # (n, 3)
    f = np.tanh(1.5 * g)  # flat crowns and fundi, steep walls
    grad_f = (1.5 * (1 - f**2))[:, None] * grad_g
    rho_u = _CORTEX_MEAN_R + _CORTEX_FOLD_R * f
    grad_t = _CORTEX_FOLD_R * (grad_f - (grad_f * u).sum(1, keepdims=True) * u)
    nn = u - grad_t / rho_u[:, None]
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    return rho_u[:, None] * u, nn


def subject_source_space(origin: np.ndarray, radius: float, spacing_mm: float = 6.0) -> SourceSpace:
    """Scale the template cortex into one subject's head sphere.

    Parameters
    ----------
    origin : ndarray, shape (3,)
        Sphere origin (head frame, metres).
    radius : float
        Scalp-sphere radius (metres).
    spacing_mm : float
        Template spacing (see :func:`cortex_template`).

    Returns
    -------
    src : SourceSpace
    """
    rr, nn = cortex_template(float(spacing_mm))
    return SourceSpace(rr=np.asarray(origin) + radius * rr, nn=nn.copy())


@dataclass
class Patch:
    """A Gaussian patch of cortex."""

    centre: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray
    orientations: np.ndarray
    gain: float = 1.0


@dataclass
class Component:
    """One latent time course driving one or more patches.

    Attributes
    ----------
    name : str
        Unique name (``alpha_posterior``, ``evoked_N170_right``, ``bg_017``).
    kind : str
        ``network``, ``patch``, ``evoked`` or ``background``.
    signal : str
        Generator: ``band`` (band-passed noise), ``mu_beta``, ``pink`` or
        ``evoked``.
    amplitude : float
        RMS (continuous) or peak (evoked, gain 1) dipole moment, nAm.
    patches : list of Patch
        Cortex driven by the component.
    params : dict
        Signal parameters (frequencies, latency, width, condition gains).
    """

    name: str
    kind: str
    signal: str
    amplitude: float
    patches: list[Patch] = field(default_factory=list)
    params: dict = field(default_factory=dict)


# Condition gains of the evoked components; keys are the ds000117 stim_type.
CONDITION_GAINS: dict[str, dict[str, float]] = {
    "P1": {"Famous": 1.0, "Unfamiliar": 1.0, "Scrambled": 1.1},
    "N170": {"Famous": 1.0, "Unfamiliar": 1.0, "Scrambled": 0.35},
    "N250": {"Famous": 1.0, "Unfamiliar": 0.6, "Scrambled": 0.2},
    "P300": {"Famous": 0.9, "Unfamiliar": 0.8, "Scrambled": 0.6},
}

# Shared template: (name, kind, signal, directions of patches, sigma_mm,
# amplitude nAm, params). Directions are in the head frame relative to the
# sphere origin and get snapped onto the cortex.
_NETWORKS: list[tuple] = [
    (
        "alpha_posterior",
        "network",
        "band",
        [(-0.3, -0.9, 0.25), (0.3, -0.9, 0.25), (0.0, -0.7, 0.7)],
        15.0,
        _AMP_ALPHA,
        {"freq": 10.0, "bandwidth": 2.5},
    ),
    (
        "sensorimotor_left",
        "network",
        "mu_beta",
        [(-0.65, -0.05, 0.75)],
        12.0,
        _AMP_MU,
        {"freq": 11.0, "beta_freq": 20.0},
    ),
    (
        "sensorimotor_right",
        "network",
        "mu_beta",
        [(0.65, -0.05, 0.75)],
        12.0,
        _AMP_MU,
        {"freq": 11.0, "beta_freq": 20.0},
    ),
    (
        "theta_frontal",
        "network",
        "band",
        [(0.0, 0.55, 0.8)],
        12.0,
        _AMP_THETA,
        {"freq": 6.0, "bandwidth": 2.0},
    ),
    (
        "evoked_P1_left",
        "evoked",
        "evoked",
        [(-0.45, -0.85, 0.05)],
        10.0,
        75.0,
        {"component": "P1", "latency": 0.100, "width": 0.018},
    ),
    (
        "evoked_P1_right",
        "evoked",
        "evoked",
        [(0.45, -0.85, 0.05)],
        10.0,
        75.0,
        {"component": "P1", "latency": 0.105, "width": 0.018},
    ),
    (
        "evoked_N170_left",
        "evoked",
        "evoked",
        [(-0.65, -0.55, -0.3)],
        10.0,
        100.0,
        {"component": "N170", "latency": 0.170, "width": 0.022},
    ),
    (
        "evoked_N170_right",
        "evoked",
        "evoked",
        [(0.65, -0.55, -0.3)],
        10.0,
        130.0,
        {"component": "N170", "latency": 0.165, "width": 0.022},
    ),
    (
        "evoked_N250_right",
        "evoked",
        "evoked",
        [(0.8, 0.0, -0.35)],
        12.0,
        65.0,
        {"component": "N250", "latency": 0.260, "width": 0.040},
    ),
    (
        "evoked_P300_parietal",
        "evoked",
        "evoked",
        [(0.0, -0.55, 0.8)],
        15.0,
        75.0,
        {"component": "P300", "latency": 0.400, "width": 0.080},
    ),
]


def _snap(src: SourceSpace, tree: cKDTree, point: np.ndarray) -> int:
    return int(tree.query(point)[1])


def _make_patch(
    src: SourceSpace,
    tree: cKDTree,
    centre_idx: int,
    sigma_mm: float,
    rot: np.ndarray | None = None,
    gain: float = 1.0,
) -> Patch:
    sigma = sigma_mm / 1000.0
    c = src.rr[centre_idx]
    idx = np.asarray(tree.query_ball_point(c, 2.5 * sigma), dtype=int)
    idx.sort()
    d2 = ((src.rr[idx] - c) ** 2).sum(axis=1)
    w = np.exp(-d2 / (2 * sigma**2))
    w /= w.sum()
    ori = src.nn[idx]
    if rot is not None:
        ori = ori @ rot.T
    return Patch(centre=c.copy(), vertices=idx, weights=w, orientations=ori, gain=gain)


def _random_rotation(rng: np.random.Generator, rms_deg: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.normal(0.0, rms_deg))
    return Rotation.from_rotvec(axis * angle).as_matrix()


def make_components(
    src: SourceSpace,
    origin: np.ndarray,
    radius: float,
    shared_rng: np.random.Generator,
    subject_rng: np.random.Generator,
    spread_mm: float = 5.0,
    spread_deg: float | None = None,
    spread_amp: float = 0.2,
    n_patches: int = 6,
    n_background: int = 300,
    background_sigma_mm: float = 8.0,
    evoked_scale: float = 1.0,
) -> list[Component]:
    """Build one subject's brain components.

    Parameters
    ----------
    src : SourceSpace
        The subject's cortex.
    origin, radius : ndarray, float
        The subject's head sphere (template directions are scaled into it).
    shared_rng : numpy.random.Generator
        Generator shared by all subjects of a dataset (same seed, same
        state): it places the extra shared patches.
    subject_rng : numpy.random.Generator
        The subject's generator (spread, background, rhythm frequencies).
    spread_mm : float
        RMS 3-D displacement of shared patch centres between subjects (mm).
    spread_deg : float or None
        RMS rotation of shared patch orientations (degrees); default
        ``2 * spread_mm``.
    spread_amp : float
        Sigma of the log-normal amplitude factor of shared components.
    n_patches : int
        Number of extra shared 1/f patches.
    n_background : int
        Number of background 1/f components (subject-specific locations).
    background_sigma_mm : float
        Gaussian width of background patches.
    evoked_scale : float
        Factor on the evoked components' dipole moments.

    Returns
    -------
    components : list of Component
    """
    if spread_deg is None:
        spread_deg = 2.0 * spread_mm
    tree = cKDTree(src.rr)
    origin = np.asarray(origin, float)
    cortex_r = _CORTEX_MEAN_R * radius
    comps: list[Component] = []

    def shared_patch(direction, sigma_mm: float) -> Patch:
        d = np.asarray(direction, float)
        d /= np.linalg.norm(d)
        template_idx = _snap(src, tree, origin + cortex_r * d)
        moved = src.rr[template_idx] + subject_rng.normal(0, spread_mm / 1000 / np.sqrt(3), 3)
        idx = _snap(src, tree, moved)
        return _make_patch(src, tree, idx, sigma_mm, _random_rotation(subject_rng, spread_deg))

    # Subject-specific rhythm frequencies (individual alpha frequency).
    iaf = float(np.clip(subject_rng.normal(10.0, 0.7), 8.5, 12.0))
    for name, kind, sig, dirs, sigma_mm, amp, params in _NETWORKS:
        p = dict(params)
        if sig == "band" and name.startswith("alpha"):
            p["freq"] = iaf
        elif sig == "mu_beta":
            p["freq"] = iaf + float(subject_rng.normal(1.0, 0.3))
            p["beta_freq"] = float(subject_rng.normal(20.0, 1.5))
        elif sig == "band":
            p["freq"] = float(p["freq"] + subject_rng.normal(0.0, 0.3))
        elif sig == "evoked":
            p["latency"] = float(p["latency"] + subject_rng.normal(0.0, 0.006))
            p["gains"] = dict(CONDITION_GAINS[p["component"]])
        scale = float(np.exp(subject_rng.normal(0.0, spread_amp)))
        if sig == "evoked":
            scale *= evoked_scale
        patches = [shared_patch(d, sigma_mm) for d in dirs]
        comps.append(Component(name, kind, sig, amp * scale, patches, p))

    # Extra shared patches: locations from the dataset-level generator so all
    # subjects share them (before their own spread).
    dirs = shared_rng.standard_normal((n_patches, 3))
    dirs[:, 2] = np.abs(dirs[:, 2])  # keep them on the upper (well-sampled) cortex
    for j, d in enumerate(dirs):
        scale = float(np.exp(subject_rng.normal(0.0, spread_amp)))
        comps.append(
            Component(
                f"patch_{j:02d}",
                "patch",
                "pink",
                _AMP_PATCH * scale,
                [shared_patch(d, 12.0)],
                {"exponent": 1.0},
            )
        )

    # Background: random, subject-specific, tiling the cortex.
    centres = subject_rng.choice(
        src.n_sources, size=min(n_background, src.n_sources), replace=n_background > src.n_sources
    )
    for j, c in enumerate(centres):
        comps.append(
            Component(
                f"bg_{j:03d}",
                "background",
                "pink",
                _AMP_BACKGROUND,
                [_make_patch(src, tree, int(c), background_sigma_mm)],
                {"exponent": 1.0},
            )
        )
    return comps


def component_mixing(components: list[Component], gain_free: np.ndarray) -> np.ndarray:
    """Sensor topographies of components from a free-orientation lead field.

    Parameters
    ----------
    components : list of Component
        Components of the subject.
    gain_free : ndarray, shape (n_channels, 3 * n_sources)
        Free-orientation lead field (head-frame x, y, z per source) in SI
        units per A*m (V, T or T/m).

    Returns
    -------
    mixing : ndarray, shape (n_channels, n_components)
        Sensor data per nAm of each component's time course.
    """
    n_ch = gain_free.shape[0]
    g = gain_free.reshape(n_ch, -1, 3)
    mixing = np.zeros((n_ch, len(components)))
    for k, comp in enumerate(components):
        for p in comp.patches:
            # sum_v w_v * G_v @ o_v, in SI per A*m -> per nAm
            col = np.einsum("cvk,vk,v->c", g[:, p.vertices], p.orientations, p.weights)
            mixing[:, k] += p.gain * col * 1e-9
    return mixing


# --------------------------------------------------------------------------
# Time courses, generated chunk by chunk with carried filter states so that a
# long recording never needs all latent signals in memory at once.


def _unit_variance(sos: np.ndarray, n: int) -> np.ndarray:
    """Rescale an SOS filter so white unit-variance input gives unit variance."""
    imp = np.zeros(n)
    imp[0] = 1.0
    h = signal.sosfilt(sos, imp)
    sos = sos.copy()
    sos[0, :3] /= np.sqrt((h**2).sum())
    return sos


@functools.lru_cache(maxsize=32)
def _pink_sos(sfreq: float) -> np.ndarray:
    """1/f (pink) noise filter: sum of first-order low-passes.

    Corners log-spaced from 0.5 to 128 Hz with power weights 1/f_k give a 1/f
    power spectrum over that range, flat below (no runaway drift) and 1/f^2
    above (as scalp spectra steepen).
    """
    corners = np.array([0.5, 2.0, 8.0, 32.0, 128.0])
    corners = corners[corners < 0.45 * sfreq]
    a = np.exp(-2 * np.pi * corners / sfreq)
    c = 1.0 / np.sqrt(corners)
    # H(z) = sum_k c_k (1 - a_k) / (1 - a_k z^-1) over a common denominator.
    den = np.array([1.0])
    for ak in a:
        den = np.convolve(den, [1.0, -ak])
    num = np.zeros(len(a))
    for k, ak in enumerate(a):
        part = np.array([c[k] * (1 - ak)])
        for j, aj in enumerate(a):
            if j != k:
                part = np.convolve(part, [1.0, -aj])
        num += part
    zeros = np.roots(num)
    sos = signal.zpk2sos(zeros, a, num[0])
    n = int(sfreq * 12.0 / (2 * np.pi * corners[0])) + 1
    return _unit_variance(sos, n)


@functools.lru_cache(maxsize=64)
def _band_sos(sfreq: float, freq: float, bandwidth: float) -> np.ndarray:
    lo = max(freq - bandwidth / 2, 0.5)
    hi = min(freq + bandwidth / 2, 0.45 * sfreq)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sfreq, output="sos")
    return _unit_variance(sos, int(sfreq * 20 / bandwidth) + 1)


class ContinuousSignals:
    """Stateful generator of the ongoing (non-evoked) component time courses.

    Parameters
    ----------
    components : list of Component
        All components; only the continuous ones get rows here.
    sfreq : float
        Sampling frequency (Hz).
    rng : numpy.random.Generator
        Generator of the run.
    warmup_s : float
        Seconds of signal generated and discarded first, so the recording
        starts in the filters' steady state rather than from silence.
    """

    def __init__(
        self,
        components: list[Component],
        sfreq: float,
        rng: np.random.Generator,
        warmup_s: float = 4.0,
    ) -> None:
        self.rng = rng
        # (component rows, sos, filter state, amplitudes) per filter group
        self.filters: list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]] = []
        pink_rows = [k for k, c in enumerate(components) if c.signal == "pink"]
        # Pink components share one filter: one vectorised sosfilt call.
        if pink_rows:
            self._add(pink_rows, _pink_sos(float(sfreq)), components)
        for k, c in enumerate(components):
            if c.signal == "band":
                sos = _band_sos(
                    float(sfreq), round(c.params["freq"], 3), c.params.get("bandwidth", 2.0)
                )
                self._add([k], sos, components)
            elif c.signal == "mu_beta":
                # mu and beta bands from independent noise, beta at 60 % of mu
                mu = _band_sos(float(sfreq), round(c.params["freq"], 3), 2.0)
                beta = _band_sos(float(sfreq), round(c.params["beta_freq"], 3), 6.0)
                self._add([k], mu, components, weight=np.sqrt(1 / 1.36))
                self._add([k], beta, components, weight=0.6 * np.sqrt(1 / 1.36))
        self.n_components = len(components)
        if warmup_s > 0:
            self.next(int(warmup_s * sfreq))

    def _add(
        self, rows: list[int], sos: np.ndarray, comps: list[Component], weight: float = 1.0
    ) -> None:
        amp = np.array([comps[r].amplitude for r in rows]) * weight
        zi = np.zeros((sos.shape[0], len(rows), 2))
        self.filters.append((rows, sos, zi, amp))

    def next(self, n: int) -> np.ndarray:
        """Next ``n`` samples of every component (zeros for evoked rows).

        Returns
        -------
        tc : ndarray, shape (n_components, n), float32
            Dipole moments in nAm.
        """
        out = np.zeros((self.n_components, n), np.float32)
        for i, (rows, sos, zi, amp) in enumerate(self.filters):
            e = self.rng.standard_normal((len(rows), n), dtype=np.float32)
            y, zi = signal.sosfilt(sos, e, axis=-1, zi=zi)
            self.filters[i] = (rows, sos, zi, amp)
            out[rows] += (amp[:, None] * y).astype(np.float32)
        return out


class EvokedSignals:
    """Evoked component time courses: a Gaussian bump per trial.

    Each trial's peak is scaled by the component's condition gain times a
    trial factor (log-normal, sigma 0.25) and shifted by a latency jitter (SD
    8 ms), so averages are smeared as real ERPs are.

    Parameters
    ----------
    components : list of Component
        All components; only ``signal == "evoked"`` rows are filled.
    onsets : ndarray of int
        Event onset samples.
    conditions : list of str
        ``Famous`` / ``Unfamiliar`` / ``Scrambled`` per event.
    sfreq : float
        Sampling frequency.
    rng : numpy.random.Generator
        Generator of the run.
    """

    def __init__(
        self,
        components: list[Component],
        onsets: np.ndarray,
        conditions: list[str],
        sfreq: float,
        rng: np.random.Generator,
    ) -> None:
        self.sfreq = sfreq
        self.rows = [k for k, c in enumerate(components) if c.signal == "evoked"]
        self.n_components = len(components)
        n_ev = len(onsets)
        self.onsets = np.asarray(onsets, int)
        self.peak = np.zeros((len(self.rows), n_ev))
        self.latency = np.zeros((len(self.rows), n_ev))
        self.width = np.zeros(len(self.rows))
        for i, k in enumerate(self.rows):
            c = components[k]
            gains = np.array([c.params["gains"][cond] for cond in conditions])
            trial = np.exp(rng.normal(0.0, 0.25, n_ev))
            self.peak[i] = c.amplitude * gains * trial
            self.latency[i] = c.params["latency"] + rng.normal(0.0, 0.008, n_ev)
            self.width[i] = c.params["width"]

    def fill(self, out: np.ndarray, start: int) -> None:
        """Add evoked activity for samples ``start:start + out.shape[1]``.

        Parameters
        ----------
        out : ndarray, shape (n_components, n)
            Buffer from :meth:`ContinuousSignals.next`, modified in place.
        start : int
            First sample of the buffer.
        """
        n = out.shape[1]
        for i, k in enumerate(self.rows):
            half = int(np.ceil(4 * self.width[i] * self.sfreq))
            centres = self.onsets + np.round(self.latency[i] * self.sfreq).astype(int)
            for j in np.nonzero((centres + half >= start) & (centres - half < start + n))[0]:
                t0 = self.onsets[j] / self.sfreq + self.latency[i, j]
                lo = max(centres[j] - half, start)
                hi = min(centres[j] + half + 1, start + n)
                t = np.arange(lo, hi) / self.sfreq
                bump = np.exp(-0.5 * ((t - t0) / self.width[i]) ** 2)
                out[k, lo - start : hi - start] += (self.peak[i, j] * bump).astype(np.float32)
