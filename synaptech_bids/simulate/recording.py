"""One simulated run: events, forward model, artefacts, noise, chunked synthesis.

The recording is the sum of

``brain_mixing @ brain_timeseries`` (brain components, see
:mod:`~synaptech_bids.simulate.sources`)
+ ``artifact_mixing @ artifact_timeseries`` (blinks, saccades, heartbeat,
environmental magnetic field)
+ line noise (50 Hz and harmonics, per-channel amplitude and phase)
+ sensor noise (white, plus 1/f on EEG electrodes),

with the trigger channel STI101 set at the events. The first two terms are the
ground truth written beside the dataset; the last two are random and only
described (levels in the truth JSON).

Synthesis goes chunk by chunk (``chunk_s`` seconds) with carried filter states,
so the latent signals of a long run never sit in memory together: only the
float64 sensor array that :class:`mne.io.RawArray` needs is allocated whole,
and the latent time courses stream into a ``.npy`` memory map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mne
import numpy as np
from scipy import signal

from .geometry import AUX_CHANNELS, STIM_CHANNEL, SubjectGeometry
from .sources import (
    Component,
    ContinuousSignals,
    EvokedSignals,
    SourceSpace,
    _pink_sos,
    _unit_variance,
    component_mixing,
)

__all__ = [
    "TRIGGERS",
    "EVENT_ID",
    "Events",
    "make_events",
    "compute_gain",
    "ARTIFACT_NAMES",
    "artifact_mixing",
    "RunSynthesizer",
]

#: ds000117 trigger codes: first presentation, immediate repeat, delayed repeat.
TRIGGERS: dict[str, tuple[int, int, int]] = {
    "Famous": (5, 6, 7),
    "Unfamiliar": (13, 14, 15),
    "Scrambled": (17, 18, 19),
}
_REPEAT = ("First", "Immediate", "Delayed")
#: MNE-BIDS ``event_id``: ``"Famous/First": 5`` etc.
EVENT_ID: dict[str, int] = {
    f"{cond}/{rep}": code for cond, codes in TRIGGERS.items() for rep, code in zip(_REPEAT, codes)
}
_STIM_PREFIX = {"Famous": "f", "Unfamiliar": "u", "Scrambled": "s"}
_TRIGGER_PULSE_S = 0.034


@dataclass
class Events:
    """Events of one run.

    Attributes
    ----------
    samples : ndarray of int
        Onset samples (``first_samp`` is 0).
    triggers : ndarray of int
        ds000117 trigger codes.
    stim_type : list of str
        ``Famous``, ``Unfamiliar`` or ``Scrambled``.
    repetition : list of str
        ``First``, ``Immediate`` or ``Delayed``.
    stim_file : list of str
        Stimulus image, ds000117 style (``meg/f012.bmp``).
    duration : ndarray
        Stimulus duration (s), 0.8-1.0 s as in ds000117.
    """

    samples: np.ndarray
    triggers: np.ndarray
    stim_type: list[str]
    repetition: list[str]
    stim_file: list[str]
    duration: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def mne_events(self) -> np.ndarray:
        """Return the ``(n, 3)`` MNE events array."""
        return np.c_[self.samples, np.zeros_like(self.samples), self.triggers].astype(int)


def make_events(duration: float, sfreq: float, rng: np.random.Generator) -> Events:
    """Draw a ds000117-like trial sequence.

    Trials come every 2-3 s (uniform). Each new image (Famous, Unfamiliar or
    Scrambled, equiprobable) is shown once more, either on the next trial
    (immediate repeat) or 5-15 trials later (delayed repeat), as in the
    Wakeman & Henson (2015) design.

    Parameters
    ----------
    duration : float
        Run duration (s).
    sfreq : float
        Sampling frequency (Hz).
    rng : numpy.random.Generator
        Generator of the run.

    Returns
    -------
    events : Events
    """
    onsets: list[float] = []
    t = 2.0 + rng.uniform(0.0, 0.5)
    while t + 1.5 < duration:
        onsets.append(t)
        t += rng.uniform(2.0, 3.0)
    counters = {c: 0 for c in TRIGGERS}
    pending: list[tuple[int, str, int]] = []  # (due trial, condition, item)
    immediate: tuple[str, int] | None = None
    conds, reps, files = [], [], []
    for i in range(len(onsets)):
        due = [p for p in pending if p[0] <= i]
        if immediate is not None:
            cond, item = immediate
            rep = "Immediate"
            immediate = None
        elif due:
            pending.remove(due[0])
            _, cond, item = due[0]
            rep = "Delayed"
        else:
            cond = list(TRIGGERS)[int(rng.integers(0, 3))]
            counters[cond] += 1
            item = counters[cond]
            rep = "First"
            if rng.random() < 0.5:
                immediate = (cond, item)
            else:
                pending.append((i + int(rng.integers(5, 16)), cond, item))
        conds.append(cond)
        reps.append(rep)
        files.append(f"meg/{_STIM_PREFIX[cond]}{item:03d}.bmp")
    samples = np.round(np.asarray(onsets) * sfreq).astype(int)
    triggers = np.array([TRIGGERS[c][_REPEAT.index(r)] for c, r in zip(conds, reps)], dtype=int)
    return Events(
        samples=samples,
        triggers=triggers,
        stim_type=conds,
        repetition=reps,
        stim_file=files,
        duration=np.round(rng.uniform(0.8, 1.0, len(samples)), 3),
    )


def _fwd_picks(info: mne.Info) -> np.ndarray:
    """MEG channels and EEG electrodes with a position (not EEG061-064)."""
    return np.array(
        [
            k
            for k, ch in enumerate(info["chs"])
            if ch["kind"] == mne.io.constants.FIFF.FIFFV_MEG_CH
            or (
                ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH
                and ch["ch_name"] not in AUX_CHANNELS
            )
        ]
    )


def artifact_dipoles(geom: SubjectGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent dipoles of the eyes (vertical, horizontal) and the heart.

    The sphere model only allows sources inside the brain sphere, so the
    artefact generators are represented by dipoles just inside it, in the
    direction of the eyes (front, low) and of the heart (bottom, back). This
    gives artefact topographies with the right gross shape (frontal for
    blinks, low / neck sensors for the heart); their amplitudes are then
    calibrated on the EOG / ECG scale (see :func:`artifact_mixing`). The
    blink dipole points forward, as the eyes' corneo-retinal dipole does, so
    that the potential peaks at the frontopolar electrodes and fades towards
    the back, as real blinks do (ICLabel labels the component an eye blink
    with probability ~1; an upward dipole made a focal, brain-like pattern
    that it took for brain).

    Returns
    -------
    rr, nn : ndarray, shape (3, 3)
        Positions (head frame, m) and unit orientations.
    """
    o, r = geom.sphere_origin, geom.sphere_radius
    eye_dir = np.array([0.0, 0.8, -0.6])
    heart_dir = np.array([0.0, -0.35, -0.94])
    eye = o + 0.8 * r * eye_dir / np.linalg.norm(eye_dir)
    heart = o + 0.8 * r * heart_dir / np.linalg.norm(heart_dir)
    rr = np.array([eye, eye, heart])
    nn = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.3, -0.95]])
    return rr, nn / np.linalg.norm(nn, axis=1, keepdims=True)


def _make_forward(
    info: mne.Info,
    geom: SubjectGeometry,
    rr: np.ndarray,
    nn: np.ndarray,
    meg: bool,
    eeg: bool,
    mindist_mm: float,
) -> mne.Forward:
    # Head and "MRI" frames coincide: the source space is defined in head
    # coordinates, so the transform is the identity.
    vsrc = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), verbose=False)
    sphere = mne.make_sphere_model(geom.sphere_origin, geom.sphere_radius, info, verbose=False)
    fwd = mne.make_forward_solution(
        info,
        mne.transforms.Transform("head", "mri"),
        vsrc,
        sphere,
        meg=meg,
        eeg=eeg,
        mindist=mindist_mm,
        n_jobs=1,
        verbose=False,
    )
    if fwd["nsource"] != len(rr):
        raise RuntimeError(
            f"forward model dropped {len(rr) - fwd['nsource']} sources outside the "
            "inner skull; the cortex template does not fit this head"
        )
    return fwd


def _forward(info: mne.Info, geom: SubjectGeometry, rr: np.ndarray, nn: np.ndarray,
             meg: bool, eeg: bool, mindist_mm: float) -> np.ndarray:
    return _make_forward(info, geom, rr, nn, meg, eeg, mindist_mm)["sol"]["data"]


def cortex_forward(info: mne.Info, geom: SubjectGeometry, src: SourceSpace,
                   mindist_mm: float = 2.0) -> mne.Forward:
    """The MNE forward solution of the cortex alone (MEG and EEG), free orientations.

    The same model as :func:`compute_gain` (sources with their normals, the
    subject's sphere), kept as an :class:`mne.Forward` to be written out.
    """
    return _make_forward(mne.pick_info(info, _fwd_picks(info)), geom, src.rr, src.nn,
                         True, True, mindist_mm)


def compute_gain(
    info: mne.Info,
    geom: SubjectGeometry,
    src: SourceSpace,
    mindist_mm: float = 2.0,
    eeg_cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-orientation lead fields of the cortex and the artefact dipoles.

    :func:`mne.make_forward_solution` with the sphere model fitted to the
    subject's digitisation. The MEG part is computed for every run, because
    the head moves in the helmet; the EEG part depends only on the head and
    is computed once per subject when ``eeg_cache`` is given.

    Parameters
    ----------
    info : mne.Info
        Info of the run (with its ``dev_head_t``).
    geom : SubjectGeometry
        Subject (sphere model).
    src : SourceSpace
        Cortex of the subject.
    mindist_mm : float
        Minimum distance of sources from the inner skull.
    eeg_cache : dict or None
        Per-subject cache of the EEG lead field (keyed by subject label).

    Returns
    -------
    gain : ndarray, shape (n_fwd_channels, 3 * n_sources)
        Cortex lead field (SI units per A*m), x/y/z per source (head frame).
    gain_art : ndarray, shape (n_fwd_channels, 3)
        Fixed-orientation lead fields of the 3 artefact dipoles.
    picks : ndarray of int
        Rows of ``info`` the lead fields belong to (MEG, then EEG).
    """
    picks = _fwd_picks(info)
    art_rr, art_nn = artifact_dipoles(geom)
    rr = np.vstack([src.rr, art_rr])
    nn = np.vstack([src.nn, art_nn])
    types = np.array(info.get_channel_types())[picks]
    meg_picks = picks[types != "eeg"]
    eeg_picks = picks[types == "eeg"]
    if not np.array_equal(np.r_[meg_picks, eeg_picks], picks):
        raise RuntimeError("MEG channels must precede EEG channels in the info")
    g_meg = _forward(mne.pick_info(info, meg_picks), geom, rr, nn, True, False, mindist_mm)
    key = geom.label
    if eeg_cache is not None and key in eeg_cache:
        g_eeg = eeg_cache[key]
    else:
        g_eeg = _forward(mne.pick_info(info, eeg_picks), geom, rr, nn, False, True, mindist_mm)
        if eeg_cache is not None:
            eeg_cache.clear()  # one subject at a time: keep memory flat
            eeg_cache[key] = g_eeg
    g = np.vstack([g_meg, g_eeg])
    n_src = src.n_sources
    g_art = np.einsum("ckx,kx->ck", g[:, 3 * n_src :].reshape(len(picks), 3, 3), art_nn)
    return g[:, : 3 * n_src], g_art, picks


#: Artefact components, in this order in the ground truth.
ARTIFACT_NAMES = (
    "blink",
    "saccade",
    "heartbeat",
    "environment_x",
    "environment_y",
    "environment_z",
)
# Calibration of artefact topographies (SI units per unit of time course).
_BLINK_VEOG = 250e-6
_BLINK_HEOG = 15e-6
_BLINK_EEG_MAX = 80e-6  # peak at the most frontal electrode
_SACCADE_HEOG = 60e-6
_SACCADE_VEOG = 5e-6
_SACCADE_EEG_MAX = 20e-6
_ECG_AMP = 1.0e-3
_HEART_EEG_MAX = 4e-6
_HEART_MAG_MAX = 1.0e-12
_EOG_MAG_MAX = 1.5e-12
#: EEG electrode noise (V): white, and 1/f (median over electrodes);
#: calibrated with the ongoing moments (docs/simulator.md, "Calibration").
EEG_WHITE_NOISE = 0.75e-6
EEG_PINK_NOISE = 1e-6

# The room's field: three distant magnetic dipoles fixed in the room (device
# frame), so their fields carry gradients that an empty-room SSP leaves
# behind, as the real "sample" magnetometers show (calibration, docs); 1/f
# in time, so it reaches the evoked band. RMS over magnetometers per source.
_ENV_FIELD = 0.35e-12
_ENV_DISTANCE_M = 2.0
_ENV_SEED = 19  # the room is one room for every subject
_GRAD_BASELINE_M = 0.0168  # VectorView planar gradiometer


def _room_field(info: mne.Info) -> np.ndarray:
    """Field of the room's three dipoles at each MEG channel (T or T/m).

    Returns
    -------
    field : ndarray, shape (n_channels, 3)
        Zero for non-MEG channels; each column has RMS :data:`_ENV_FIELD`
        over the magnetometers.
    """
    rng = np.random.default_rng(_ENV_SEED)
    where = rng.standard_normal((3, 3))
    where *= _ENV_DISTANCE_M / np.linalg.norm(where, axis=1, keepdims=True)
    moments = rng.standard_normal((3, 3))

    def b_normal(r: np.ndarray, normal: np.ndarray) -> np.ndarray:
        # dipole field up to mu0 / 4 pi (scaled away below), along the normal
        d = where - r  # (3 sources, 3)
        dn = np.linalg.norm(d, axis=1, keepdims=True)
        dh = d / dn
        b = (3 * (dh * moments).sum(1, keepdims=True) * dh - moments) / dn**3
        return b @ normal

    types = info.get_channel_types()
    field = np.zeros((info["nchan"], 3))
    for k, ch in enumerate(info["chs"]):
        loc = ch["loc"]
        if types[k] == "mag":
            field[k] = b_normal(loc[:3], loc[9:12])
        elif types[k] == "grad":
            # planar gradient along the coil's x axis, by its two loops
            step = loc[3:6] * _GRAD_BASELINE_M / 2
            field[k] = (b_normal(loc[:3] + step, loc[9:12]) - b_normal(loc[:3] - step, loc[9:12]))
            field[k] /= _GRAD_BASELINE_M
    mags = [k for k, t in enumerate(types) if t == "mag"]
    return field * (_ENV_FIELD / np.sqrt(np.mean(field[mags] ** 2, axis=0)))


def artifact_mixing(info: mne.Info, picks: np.ndarray, gain_art: np.ndarray) -> np.ndarray:
    """Sensor topographies of the artefact components of one run.

    Eye and heart topographies come from the equivalent dipoles of
    :func:`artifact_dipoles`, scaled so the EEG peak has a realistic size
    (blink: ~80 uV on frontal electrodes for 250 uV VEOG) and the MEG peak
    too (blink 1.5 pT, heart 1 pT on magnetometers); the EOG and ECG channels
    get fixed gains. The environmental field is that of three magnetic dipoles
    2 m away in the room (:func:`_room_field`): nearly homogeneous over the
    helmet, with the gradients that planar gradiometers see a little of.

    Returns
    -------
    mixing : ndarray, shape (n_channels, 6)
        Columns in :data:`ARTIFACT_NAMES` order.
    """
    n_ch = info["nchan"]
    mix = np.zeros((n_ch, len(ARTIFACT_NAMES)))
    types = np.array(info.get_channel_types())
    fwd_types = types[picks]
    is_eeg = fwd_types == "eeg"
    is_meg = np.isin(fwd_types, ["mag", "grad"])
    is_mag = fwd_types == "mag"
    for col, eeg_max, meg_max in [
        (0, _BLINK_EEG_MAX, _EOG_MAG_MAX),
        (1, _SACCADE_EEG_MAX, _EOG_MAG_MAX / 3),
        (2, _HEART_EEG_MAX, _HEART_MAG_MAX),
    ]:
        g = gain_art[:, col]
        topo = np.zeros(len(picks))
        topo[is_eeg] = g[is_eeg] * eeg_max / np.abs(g[is_eeg]).max()
        # One MEG scale for magnetometers and gradiometers keeps their
        # physical ratio.
        topo[is_meg] = g[is_meg] * meg_max / np.abs(g[is_mag]).max()
        mix[picks, col] = topo
    names = info["ch_names"]
    mix[names.index("EEG062"), 0] = _BLINK_VEOG
    mix[names.index("EEG061"), 0] = _BLINK_HEOG
    mix[names.index("EEG061"), 1] = _SACCADE_HEOG
    mix[names.index("EEG062"), 1] = _SACCADE_VEOG
    mix[names.index("EEG063"), 2] = _ECG_AMP
    # coil positions and normals in device coordinates: fixed to the room
    mix[:, 3:6] = _room_field(info)
    return mix


def _ecg_wave(t: np.ndarray) -> np.ndarray:
    """PQRST complex (R peak = 1 at t = 0), sum of Gaussians."""
    out = np.zeros_like(t)
    for t0, a, s in [
        (-0.2, 0.12, 0.025),
        (-0.03, -0.12, 0.008),
        (0.0, 1.0, 0.01),
        (0.03, -0.25, 0.01),
        (0.25, 0.3, 0.045),
    ]:
        out += a * np.exp(-0.5 * ((t - t0) / s) ** 2)
    return out


def _blink_wave(t: np.ndarray) -> np.ndarray:
    """Blink shape (peak 1 at 0.12 s after onset), gamma-like, ~0.5 s long."""
    tau = 0.06
    x = np.clip(t, 0.0, None) / tau
    return (x / 2.0) ** 2 * np.exp(2.0 - x)


class ArtifactSignals:
    """Time courses of blinks, saccades, heartbeat and the room's field.

    Parameters
    ----------
    n_times : int
        Run length in samples.
    sfreq : float
        Sampling frequency.
    rng : numpy.random.Generator
        Generator of the run.
    """

    def __init__(self, n_times: int, sfreq: float, rng: np.random.Generator) -> None:
        self.sfreq = sfreq
        dur = n_times / sfreq
        # Blinks ~15 / min, at least 1 s apart, amplitude 0.7-1.3.
        gaps = rng.exponential(4.0, int(dur / 1.0) + 2) + 1.0
        self.blinks = np.cumsum(gaps)
        self.blinks = self.blinks[self.blinks < dur]
        self.blink_amp = rng.uniform(0.7, 1.3, len(self.blinks))
        # Saccades: horizontal eye position, piecewise constant.
        gaps = rng.uniform(1.5, 6.0, int(dur / 1.5) + 2)
        self.sacc = np.cumsum(gaps)
        self.sacc = self.sacc[self.sacc < dur]
        self.sacc_pos = np.r_[0.0, rng.normal(0.0, 0.6, len(self.sacc))]
        # Heartbeat 68 +/- 6 bpm with 4 % beat-to-beat variability.
        rr = 60.0 / float(np.clip(rng.normal(68.0, 6.0), 50, 90))
        beats = np.cumsum(rr * (1 + 0.04 * rng.standard_normal(int(dur / rr) + 4)))
        self.beats = beats - rng.uniform(0.0, rr)
        # Environmental field: 1/f, like the other slow noises of a shielded
        # room; the real "sample" baselines (200-ms windows) keep a strong
        # room-like component, which a 0.2 Hz low-pass would not.
        self.env_sos = _unit_variance(_pink_sos(float(sfreq)), int(sfreq * 60) + 1)
        self.env_zi = np.zeros((self.env_sos.shape[0], 3, 2))
        self.rng = rng
        warm = int(30 * sfreq)
        self._env(warm)

    def _env(self, n: int) -> np.ndarray:
        e = self.rng.standard_normal((3, n))
        y, self.env_zi = signal.sosfilt(self.env_sos, e, axis=-1, zi=self.env_zi)
        return y

    def next(self, start: int, n: int) -> np.ndarray:
        """Artefact time courses for samples ``start:start + n``.

        Returns
        -------
        tc : ndarray, shape (6, n), float32
            Unitless; multiply by :func:`artifact_mixing`.
        """
        t = (start + np.arange(n)) / self.sfreq
        out = np.zeros((len(ARTIFACT_NAMES), n))
        t0, t1 = t[0], t[-1]
        for tb, a in zip(self.blinks, self.blink_amp):
            if tb - 0.1 <= t1 and tb + 0.7 >= t0:
                out[0] += a * _blink_wave(t - tb)
        # Eye position: smooth 30 ms transitions between fixations.
        k = np.searchsorted(self.sacc, t, side="right")
        prev = self.sacc_pos[k]
        k0 = np.maximum(k - 1, 0)
        before = self.sacc_pos[k0]
        since = np.where(k > 0, t - self.sacc[k0], np.inf)
        ramp = np.clip(since / 0.03, 0.0, 1.0)
        ramp = ramp * ramp * (3 - 2 * ramp)
        out[1] = np.where(k > 0, before + (prev - before) * ramp, prev)
        for tb in self.beats:
            if tb - 0.3 <= t1 and tb + 0.45 >= t0:
                out[2] += _ecg_wave(t - tb)
        out[3:6] = self._env(n)
        return out.astype(np.float32)


class _SensorNoise:
    """Line noise and sensor noise of every channel, chunk by chunk."""

    def __init__(
        self,
        info: mne.Info,
        rng: np.random.Generator,
        line_freq: float,
        line_noise: bool,
        sensor_noise: bool,
    ) -> None:
        self.sfreq = info["sfreq"]
        self.rng = rng
        self.line_noise = line_noise
        self.sensor_noise = sensor_noise
        types = np.array(info.get_channel_types())
        names = info["ch_names"]
        n = len(types)
        fs = self.sfreq
        # White noise SD per channel: MEG from the VectorView noise floor
        # (~3 fT/sqrt(Hz), ~3 fT/cm/sqrt(Hz)) over the Nyquist band; EEG
        # amplifier + electrode noise.
        white = np.zeros(n)
        white[types == "mag"] = 3e-15 * np.sqrt(fs / 2)
        white[types == "grad"] = 3e-13 * np.sqrt(fs / 2)
        white[types == "eeg"] = EEG_WHITE_NOISE
        white[types == "eog"] = 3e-6
        white[types == "ecg"] = 10e-6
        white[types == "misc"] = 20e-6
        for name, kind in AUX_CHANNELS.items():  # also when stored as "eeg"
            white[names.index(name)] = {"eog": 3e-6, "ecg": 10e-6, "misc": 20e-6}[kind]
        white *= np.exp(rng.normal(0.0, 0.2, n))
        self.white = white
        # Slow electrode noise (1/f) on EEG electrodes only.
        self.pink_rows = np.nonzero((types == "eeg") & ~np.isin(names, list(AUX_CHANNELS)))[0]
        self.pink_sd = EEG_PINK_NOISE * np.exp(rng.normal(0.0, 0.3, len(self.pink_rows)))
        self.pink_sos = _pink_sos(float(fs))
        self.pink_zi = np.zeros((self.pink_sos.shape[0], len(self.pink_rows), 2))
        # Line noise: fundamental + harmonics below Nyquist, random phase.
        line = np.zeros(n)
        line[types == "mag"] = 150e-15
        line[types == "grad"] = 5e-13
        line[types == "eeg"] = 6e-6
        for name in AUX_CHANNELS:
            line[names.index(name)] = 8e-6
        line[types == "stim"] = 0.0
        self.line_amp = line * np.exp(rng.normal(0.0, 0.5, n))
        self.harmonics = [
            (h, g) for h, g in [(1, 1.0), (2, 0.3), (3, 0.15)] if h * line_freq < fs / 2
        ]
        self.line_freq = line_freq
        self.line_phase = rng.uniform(0, 2 * np.pi, (len(self.harmonics), n))
        self.stim = types == "stim"
        self.white[self.stim] = 0.0

    def describe(self) -> dict:
        return {
            "white_sd": "per channel; MEG ~3 fT/sqrt(Hz) and 3 fT/cm/sqrt(Hz) "
            "floor, EEG 1.5 uV, EOG 3 uV, ECG 10 uV, MISC 20 uV (x log-normal 0.2)",
            "eeg_pink_sd_V": "2e-6 x log-normal(0.3), 1/f 0.5-128 Hz",
            "line_amplitude": "50 Hz: mag 150 fT, grad 5 fT/cm, EEG 6 uV "
            "(x log-normal 0.5); harmonics 0.3, 0.15",
            "line_freq": self.line_freq,
        }

    def add(self, x: np.ndarray, start: int) -> None:
        """Add line and sensor noise to the chunk ``x`` (in place)."""
        n = x.shape[1]
        if self.line_noise:
            t = (start + np.arange(n)) / self.sfreq
            for (h, g), ph in zip(self.harmonics, self.line_phase):
                # A sin(wt + ph) = A cos(ph) sin(wt) + A sin(ph) cos(wt): two
                # rank-one products instead of a sine per channel and sample.
                wt = 2 * np.pi * h * self.line_freq * t
                amp = g * self.line_amp
                x += np.c_[amp * np.cos(ph), amp * np.sin(ph)] @ np.vstack([np.sin(wt), np.cos(wt)])
        if self.sensor_noise:
            e = self.rng.standard_normal(x.shape, dtype=np.float32)
            e *= self.white[:, None].astype(np.float32)
            x += e
            e = self.rng.standard_normal((len(self.pink_rows), n))
            y, self.pink_zi = signal.sosfilt(self.pink_sos, e, axis=-1, zi=self.pink_zi)
            x[self.pink_rows] += self.pink_sd[:, None] * y


@dataclass
class RunSynthesizer:
    """Synthesise the sensor data of one run chunk by chunk.

    Parameters
    ----------
    info : mne.Info
        Info of the run.
    components : list of Component
        Brain components of the subject.
    brain_mixing : ndarray, shape (n_channels, n_components)
        From :func:`~synaptech_bids.simulate.sources.component_mixing`, rows in
        ``info`` order (zero for channels without a lead field).
    art_mixing : ndarray, shape (n_channels, 6)
        From :func:`artifact_mixing`.
    events : Events
        Events of the run.
    n_times : int
        Number of samples.
    rng : numpy.random.Generator
        Generator of the run.
    options : dict
        ``evoked``, ``ongoing``, ``artifacts``, ``line_noise``,
        ``sensor_noise`` (bool), ``line_freq`` (float).
    """

    info: mne.Info
    components: list[Component]
    brain_mixing: np.ndarray
    art_mixing: np.ndarray
    events: Events
    n_times: int
    rng: np.random.Generator
    options: dict

    def run(
        self,
        out: np.ndarray,
        brain_sink: np.ndarray | None = None,
        art_sink: np.ndarray | None = None,
        chunk_s: float = 10.0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Fill ``out`` (n_channels, n_times) with the recording.

        Parameters
        ----------
        out : ndarray, float64
            Destination (the RawArray buffer).
        brain_sink, art_sink : ndarray or None
            Where the latent brain / artefact time courses go (float32, e.g. a
            ``.npy`` memory map), or None.
        chunk_s : float
            Chunk length (s).
        progress : callable or None
            Called with the number of samples done.
        """
        sfreq = self.info["sfreq"]
        opts = self.options
        # Independent streams so that switching one part off does not change
        # the random numbers of the others (noise-free and noisy simulations
        # of one seed share their brain and artefact signals).
        ss = np.random.SeedSequence(int(self.rng.integers(2**63)))
        r_cont, r_evk, r_art, r_noise = (np.random.default_rng(s) for s in ss.spawn(4))
        cont = ContinuousSignals(self.components, sfreq, r_cont)
        evk = EvokedSignals(
            self.components, self.events.samples, self.events.stim_type, sfreq, r_evk
        )
        ongoing_rows = np.array([c.signal != "evoked" for c in self.components])
        art = ArtifactSignals(self.n_times, sfreq, r_art)
        noise = _SensorNoise(
            self.info, r_noise, opts["line_freq"], opts["line_noise"], opts["sensor_noise"]
        )
        stim_idx = self.info["ch_names"].index(STIM_CHANNEL)
        pulse = max(1, int(round(_TRIGGER_PULSE_S * sfreq)))
        chunk = max(1, int(chunk_s * sfreq))
        mix = np.ascontiguousarray(self.brain_mixing)
        for start in range(0, self.n_times, chunk):
            n = min(chunk, self.n_times - start)
            tc = cont.next(n)
            if not opts["ongoing"]:
                tc[ongoing_rows] = 0.0
            if opts["evoked"]:
                evk.fill(tc, start)
            x = mix @ tc.astype(np.float64)
            if brain_sink is not None:
                brain_sink[:, start : start + n] = tc
            at = art.next(start, n)
            if not opts["artifacts"]:
                at[:] = 0.0
            if art_sink is not None:
                art_sink[:, start : start + n] = at
            x += self.art_mixing @ at.astype(np.float64)
            noise.add(x, start)
            x[stim_idx] = 0.0
            sel = (self.events.samples < start + n) & (self.events.samples + pulse > start)
            for s, trig in zip(self.events.samples[sel], self.events.triggers[sel]):
                lo, hi = max(s, start), min(s + pulse, start + n)
                x[stim_idx, lo - start : hi - start] = trig
            out[:, start : start + n] = x
            if progress is not None:
                progress(start + n)
        self.noise_description = noise.describe()


def brain_mixing_full(
    info: mne.Info, picks: np.ndarray, components: list[Component], gain: np.ndarray
) -> np.ndarray:
    """Brain mixing with one row per channel of ``info`` (zeros off-picks)."""
    mix = np.zeros((info["nchan"], len(components)))
    mix[picks] = component_mixing(components, gain)
    return mix
