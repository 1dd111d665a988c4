"""Head, sensor and head-position geometry of the simulated recordings.

Everything here is built from files that ship with MNE-Python, so nothing is
downloaded:

* MEG: the canonical Elekta Neuromag VectorView 306-channel array
  (:func:`mne.channels.read_meg_canonical_info`), renamed ``MEG 0113`` ->
  ``MEG0113`` as in OpenNeuro ds000117. Its sensor positions are given in
  *device* coordinates and its ``dev_head_t`` is the identity, so we place the
  head in the helmet ourselves (:func:`make_dev_head_t`).
* EEG: the 70-electrode ``mgh70`` montage (EEG001-EEG074 without
  EEG061-EEG064, the names ds000117 uses), shrunk to an average adult head and
  jittered per subject, with digitised fiducials and head-shape points.
* EEG061-EEG064: the auxiliary channels of ds000117 (HEOG, VEOG, ECG and an
  unconnected input), without positions.

Coordinates are in metres in the Neuromag *head* frame (x towards RPA, y towards
the nasion, z up) unless a name says otherwise.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import mne
import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "AUX_CHANNELS",
    "AUX_BIDS_TYPES",
    "STIM_CHANNEL",
    "SubjectGeometry",
    "make_subject_geometry",
    "make_dev_head_t",
    "make_info",
    "meg_canonical_info",
    "sensor_positions_head",
]

#: ds000117 auxiliary channels and the MNE channel type they really are.
AUX_CHANNELS: dict[str, str] = {
    "EEG061": "eog",  # HEOG
    "EEG062": "eog",  # VEOG
    "EEG063": "ecg",
    "EEG064": "misc",  # unconnected input
}
#: BIDS ``channels.tsv`` types of the auxiliary channels.
AUX_BIDS_TYPES: dict[str, str] = {
    "EEG061": "HEOG",
    "EEG062": "VEOG",
    "EEG063": "ECG",
    "EEG064": "MISC",
}
#: Trigger channel name (Neuromag).
STIM_CHANNEL = "STI101"

# The mgh70 template has a ~97 mm sphere radius, large for an adult head; the
# real ds000117 / MNE "sample" heads fit ~88-92 mm. Shrink it to a mean adult
# head and let subjects vary around it.
_HEAD_SCALE_MEAN = 0.93
_HEAD_SCALE_SD = 0.03
# Digitisation error of a Polhemus-style digitiser, per coordinate.
_DIG_JITTER_M = 0.0015
# How deep the head sits in the helmet: the device origin lies this far above
# the head origin (MNE "sample" recording: 64.7 mm; ds000117: 40-60 mm).
_DEV_Z_MEAN_M = 0.045
# Minimum clearance between any MEG coil and the scalp sphere; a real helmet
# keeps sensors ~1.5-3 cm from the scalp, and make_forward_solution refuses
# sensors inside the head.
_MIN_SCALP_CLEARANCE_M = 0.012


@functools.lru_cache(maxsize=1)
def _canonical_info_cached() -> mne.Info:
    info = mne.channels.read_meg_canonical_info("neuromag")
    mapping = {name: name.replace(" ", "") for name in info["ch_names"]}
    mne.rename_channels(info, mapping)
    return info


def meg_canonical_info() -> mne.Info:
    """Return the canonical Neuromag-306 info with ds000117 channel names.

    Returns
    -------
    info : mne.Info
        A fresh copy (callers may modify it) with channels named ``MEG0113``
        and so on, positions in device coordinates.
    """
    return copy.deepcopy(_canonical_info_cached())


@functools.lru_cache(maxsize=1)
def _mgh70_head() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Electrode names, positions and fiducials (nas, lpa, rpa) in head frame."""
    montage = mne.channels.make_standard_montage("mgh70")
    # Converting through an Info puts everything in the head frame defined by
    # the template's own fiducials.
    info = mne.create_info(montage.ch_names, 1000.0, "eeg")
    info.set_montage(montage)
    names = list(info["ch_names"])
    pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    fids = {}
    for d in info["dig"]:
        if d["kind"] == mne.io.constants.FIFF.FIFFV_POINT_CARDINAL:
            fids[int(d["ident"])] = np.array(d["r"])
    c = mne.io.constants.FIFF
    fid_arr = np.array(
        [fids[c.FIFFV_POINT_NASION], fids[c.FIFFV_POINT_LPA], fids[c.FIFFV_POINT_RPA]]
    )
    return names, pos, fid_arr


@dataclass
class SubjectGeometry:
    """Geometry of one simulated subject (fixed across runs).

    Attributes
    ----------
    label : str
        Subject label without ``sub-`` (``"01"``).
    head_scale : float
        Isotropic scale applied to the template head.
    eeg_names : list of str
        EEG electrode names (EEG001...EEG074 without EEG061-064).
    eeg_pos : ndarray, shape (n_eeg, 3)
        Digitised electrode positions, head frame, metres.
    fiducials : ndarray, shape (3, 3)
        Nasion, LPA, RPA, head frame, metres.
    hsp : ndarray, shape (n_hsp, 3)
        Extra head-shape points, head frame, metres.
    sphere_origin : ndarray, shape (3,)
        Origin of the sphere fitted to the digitisation (head frame).
    sphere_radius : float
        Radius of that sphere (the scalp), metres.
    dev_head_t : ndarray, shape (4, 4)
        The subject's mean device-to-head transform; runs move around it.
    """

    label: str
    head_scale: float
    eeg_names: list[str]
    eeg_pos: np.ndarray
    fiducials: np.ndarray
    hsp: np.ndarray
    sphere_origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sphere_radius: float = 0.09
    dev_head_t: np.ndarray = field(default_factory=lambda: np.eye(4))

    def montage(self) -> mne.channels.DigMontage:
        """Return the digitisation as a head-frame :class:`~mne.channels.DigMontage`."""
        return mne.channels.make_dig_montage(
            ch_pos=dict(zip(self.eeg_names, self.eeg_pos)),
            nasion=self.fiducials[0],
            lpa=self.fiducials[1],
            rpa=self.fiducials[2],
            hsp=self.hsp,
            coord_frame="head",
        )


def _head_shape_points(
    pos: np.ndarray, fids: np.ndarray, rng: np.random.Generator, n: int = 60
) -> np.ndarray:
    """Head-shape points between electrodes and along the nose bridge.

    A digitiser operator sweeps the scalp; we mimic it with points interpolated
    between neighbouring electrodes (so they lie on the same scalp surface),
    plus a few points on the nose, which anchor the sphere fit as in real data.
    """
    centre = pos.mean(axis=0)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :3]
    i = rng.integers(0, len(pos), n)
    j = nearest[i, rng.integers(0, 3, n)]
    w = rng.uniform(0.3, 0.7, n)[:, None]
    pts = w * pos[i] + (1 - w) * pos[j]
    # Midpoints of a chord lie inside the scalp; push them back to the mean
    # radius of their two end points.
    r_end = 0.5 * (
        np.linalg.norm(pos[i] - centre, axis=1) + np.linalg.norm(pos[j] - centre, axis=1)
    )
    v = pts - centre
    pts = centre + v * (r_end / np.linalg.norm(v, axis=1))[:, None]
    nas = fids[0]
    nose = nas + np.outer(np.linspace(0.005, 0.03, 5), [0.0, 0.25, -1.0])
    return np.vstack([pts, nose])


def make_subject_geometry(
    label: str, rng: np.random.Generator, dev_spread_mm: float = 3.5
) -> SubjectGeometry:
    """Draw one subject's head size, digitisation and mean head position.

    Parameters
    ----------
    label : str
        Subject label (``"01"``).
    rng : numpy.random.Generator
        Random generator of this subject.
    dev_spread_mm : float
        RMS per-axis spread of the head position in the helmet between
        subjects, in mm (rotations get the same number in degrees / 1.5).

    Returns
    -------
    geom : SubjectGeometry
    """
    names, pos0, fids0 = _mgh70_head()
    scale = float(np.clip(rng.normal(_HEAD_SCALE_MEAN, _HEAD_SCALE_SD), 0.86, 1.0))
    # The head frame is defined by the fiducials, so scaling about the head
    # origin keeps it valid; anisotropy (long vs. round heads) via a small
    # extra scale of the antero-posterior axis.
    ap = 1.0 + rng.normal(0.0, 0.02)
    s = np.array([1.0, ap, 1.0]) * scale
    pos = pos0 * s + rng.normal(0.0, _DIG_JITTER_M, pos0.shape)
    fids = fids0 * s + rng.normal(0.0, _DIG_JITTER_M / 2, fids0.shape)
    # Head frame is defined by the (digitised) fiducials: LPA and RPA on the
    # x axis, nasion on y. Re-express everything in the frame they define so
    # that the digitisation is self-consistent, as a real digitiser's would be.
    pos, fids = _refit_head_frame(pos, fids)
    hsp = _head_shape_points(pos, fids, rng)
    geom = SubjectGeometry(
        label=label,
        head_scale=scale,
        eeg_names=list(names),
        eeg_pos=pos,
        fiducials=fids,
        hsp=hsp,
    )
    # Use MNE's own sphere fit (the one a pipeline calling
    # make_sphere_model("auto", "auto", info) gets), so the simulated head and
    # an analysis of the data agree on the sphere.
    tmp = mne.create_info(geom.eeg_names, 1000.0, "eeg")
    tmp.set_montage(geom.montage())
    radius, origin, _ = mne.bem.fit_sphere_to_headshape(
        tmp, dig_kinds="auto", units="m", verbose=False
    )
    geom.sphere_origin = np.asarray(origin, float)
    geom.sphere_radius = float(radius)
    geom.dev_head_t = _mean_dev_head_t(geom, rng, dev_spread_mm)
    return geom


def _refit_head_frame(pos: np.ndarray, fids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express points in the Neuromag head frame defined by noisy fiducials."""
    nas, lpa, rpa = fids
    t = mne.transforms.get_ras_to_neuromag_trans(nas, lpa, rpa)
    return (
        mne.transforms.apply_trans(t, pos),
        mne.transforms.apply_trans(t, fids),
    )


def _meg_coil_centres_device() -> np.ndarray:
    info = _canonical_info_cached()
    return np.array([ch["loc"][:3] for ch in info["chs"]])


def _clearance(geom: SubjectGeometry, t: np.ndarray) -> float:
    """Smallest distance between a MEG coil centre and the scalp sphere."""
    r = mne.transforms.apply_trans(t, _meg_coil_centres_device())
    return float(np.linalg.norm(r - geom.sphere_origin, axis=1).min() - geom.sphere_radius)


def _rigid(rotvec_deg: np.ndarray, trans_m: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = Rotation.from_rotvec(np.deg2rad(rotvec_deg)).as_matrix()
    t[:3, 3] = trans_m
    return t


def _lift_to_clearance(geom: SubjectGeometry, t: np.ndarray) -> np.ndarray:
    """Move the head down in the helmet until every coil clears the scalp.

    Expressed as the device origin moving up (+z in head coordinates), which
    is what a subject sitting lower in the chair does.
    """
    t = t.copy()
    for _ in range(200):
        if _clearance(geom, t) >= _MIN_SCALP_CLEARANCE_M:
            break
        t[2, 3] += 0.001
    return t


def _mean_dev_head_t(
    geom: SubjectGeometry, rng: np.random.Generator, spread_mm: float
) -> np.ndarray:
    # Translation of the device origin in head coordinates: centred over the
    # sphere origin in x, slightly anterior in y (heads sit back in the
    # helmet), ~4.5 cm above the head origin; rotations of a few degrees.
    trans = np.array([0.0, 0.0, _DEV_Z_MEAN_M]) + rng.normal(0.0, spread_mm / 1000, 3)
    rot = rng.normal(0.0, spread_mm / 1.5, 3)  # degrees
    return _lift_to_clearance(geom, _rigid(rot, trans))


def make_dev_head_t(
    geom: SubjectGeometry, rng: np.random.Generator, run_spread_mm: float = 1.0
) -> np.ndarray:
    """Device-to-head transform of one run: the subject's mean plus a small move.

    Parameters
    ----------
    geom : SubjectGeometry
        The subject (its ``dev_head_t`` is the mean head position).
    rng : numpy.random.Generator
        Random generator of this run.
    run_spread_mm : float
        RMS per-axis displacement between runs, in mm (rotations: the same
        number in degrees / 2).

    Returns
    -------
    trans : ndarray, shape (4, 4)
        Device -> head rigid transform.
    """
    delta = _rigid(
        rng.normal(0.0, run_spread_mm / 2.0, 3), rng.normal(0.0, run_spread_mm / 1000, 3)
    )
    return _lift_to_clearance(geom, delta @ geom.dev_head_t)


def make_info(
    geom: SubjectGeometry,
    dev_head_t: np.ndarray,
    sfreq: float,
    line_freq: float = 50.0,
    aux_as_eeg: bool = True,
) -> mne.Info:
    """Measurement info of one run: MEG + EEG + EEG061-064 + STI101.

    Parameters
    ----------
    geom : SubjectGeometry
        Subject digitisation.
    dev_head_t : ndarray, shape (4, 4)
        Device-to-head transform of the run.
    sfreq : float
        Sampling frequency in Hz.
    line_freq : float
        Power-line frequency written to the info (and by MNE-BIDS to the
        sidecar as ``PowerLineFrequency``).
    aux_as_eeg : bool
        If True, EEG061-EEG064 are stored as EEG channels in the FIF, as in
        the real ds000117 files (only ``channels.tsv`` says what they are).
        If False they get their true types (EOG, EOG, ECG, MISC).

    Returns
    -------
    info : mne.Info
        Channel order: 306 MEG, the EEG electrodes with EEG061-064 inserted at
        their numeric place, then STI101.
    """
    meg = meg_canonical_info()
    eeg_all = sorted(geom.eeg_names + list(AUX_CHANNELS))
    names = list(meg["ch_names"]) + eeg_all + [STIM_CHANNEL]
    types = ["mag"] * len(meg["ch_names"])  # overwritten below from the canonical chs
    for name in eeg_all:
        types.append(AUX_CHANNELS[name] if (name in AUX_CHANNELS and not aux_as_eeg) else "eeg")
    types.append("stim")
    info = mne.create_info(names, sfreq, types)
    with info._unlock():
        for ch, src in zip(info["chs"], meg["chs"]):
            ch.update(copy.deepcopy(src))
        info["line_freq"] = float(line_freq)
        info["lowpass"] = sfreq / 2.0
        info["highpass"] = 0.0
    info.set_montage(geom.montage(), on_missing="ignore")
    with info._unlock():
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", dev_head_t)
    return info


def sensor_positions_head(info: mne.Info) -> tuple[np.ndarray, np.ndarray]:
    """Sensor centres and normals of every channel, in head coordinates.

    Parameters
    ----------
    info : mne.Info
        Info with a device-to-head transform.

    Returns
    -------
    pos : ndarray, shape (n_channels, 3)
        MEG coil centres / EEG electrode positions (metres); NaN for
        channels without a position (EOG, ECG, MISC, STI).
    normals : ndarray, shape (n_channels, 3)
        MEG coil normals (unit vectors); NaN for non-MEG channels.
    """
    t = info["dev_head_t"]["trans"]
    pos = np.full((info["nchan"], 3), np.nan)
    nrm = np.full((info["nchan"], 3), np.nan)
    for k, ch in enumerate(info["chs"]):
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_MEG_CH:
            pos[k] = mne.transforms.apply_trans(t, ch["loc"][:3])
            nrm[k] = t[:3, :3] @ ch["loc"][9:12]
        elif ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH and np.any(ch["loc"][:3]):
            pos[k] = ch["loc"][:3]
    return pos, nrm
