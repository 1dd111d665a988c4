"""Step 4: EEG electrode and MEG sensor positions in one frame, per run.

EEG electrodes are fixed to the head; MEG sensors are fixed to the helmet,
and the head moves between runs. Both are expressed in the Neuromag *head*
frame (origin between the pre-auricular points, x towards the right ear, y
towards the nasion) using each run's own device-to-head transform, so a
distance between an electrode and a magnetometer is a distance in the same
head, in the same run.

EEG positions come from, in order: the FIF's digitisation (what mne-bids
puts in ``info['chs']``), ``electrodes.tsv`` (also read by mne-bids), or —
only when the user allows it — a named standard montage, flagged in every
output that uses it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from mne.io.constants import FIFF

from ..errors import AppError, ExitCode

logger = logging.getLogger(__name__)


@dataclass
class SensorPositions:
    """Sensor positions of one run in head coordinates (metres).

    Attributes
    ----------
    eeg_names, meg_names : list of str
        EEG electrodes and MEG sensors (magnetometers and gradiometers).
    eeg_pos : ndarray, shape (n_eeg, 3)
    meg_pos, meg_ori : ndarray, shape (n_meg, 3)
        Sensor centres and coil normals.
    meg_types : list of str
        ``"mag"`` or ``"grad"`` per MEG sensor.
    eeg_source : str
        ``"digitisation"`` or ``"standard-montage:NAME"``.
    dev_head_t : ndarray, shape (4, 4)
    """

    eeg_names: list[str]
    eeg_pos: np.ndarray
    meg_names: list[str]
    meg_pos: np.ndarray
    meg_ori: np.ndarray
    meg_types: list[str]
    eeg_source: str
    dev_head_t: np.ndarray

    def to_table(self) -> pd.DataFrame:
        """All sensors as one table (name, type, x, y, z, nx, ny, nz in metres)."""
        eeg = pd.DataFrame(self.eeg_pos, columns=["x", "y", "z"])
        eeg.insert(0, "type", "EEG")
        eeg.insert(0, "name", self.eeg_names)
        meg = pd.DataFrame(self.meg_pos, columns=["x", "y", "z"])
        meg[["nx", "ny", "nz"]] = self.meg_ori
        meg.insert(0, "type", [t.upper() for t in self.meg_types])
        meg.insert(0, "name", self.meg_names)
        table = pd.concat([eeg, meg], ignore_index=True)
        table["position_source"] = [self.eeg_source] * len(eeg) + ["dev_head_t"] * len(meg)
        return table


def sensor_positions(info: mne.Info, standard_montage: str | None = None) -> SensorPositions:
    """Return the run's EEG and MEG sensor positions in head coordinates.

    Parameters
    ----------
    info : mne.Info
        The run's measurement info (EEG positions in head coordinates, MEG
        coil positions in device coordinates, ``dev_head_t``).
    standard_montage : str | None
        Fallback montage name when EEG positions are missing; ``None`` makes
        missing positions an error.

    Raises
    ------
    AppError
        65 when EEG positions or the device-to-head transform are missing
        and no fallback is allowed.
    """
    eeg_picks = mne.pick_types(info, meg=False, eeg=True, exclude=[])
    eeg_names = [info.ch_names[p] for p in eeg_picks]
    eeg_pos = np.array([info["chs"][p]["loc"][:3] for p in eeg_picks])
    eeg_source = "digitisation"
    if not _has_positions(eeg_pos):
        if standard_montage is None:
            raise AppError(
                "EEG electrode positions are missing (no digitisation in the file "
                "and no electrodes.tsv); pass a standard montage in the config "
                "(allow_standard_montage) to use template positions",
                ExitCode.BAD_DATA,
            )
        info = info.copy()
        montage = mne.channels.make_standard_montage(standard_montage)
        missing = sorted(set(eeg_names) - set(montage.ch_names))
        if missing:
            raise AppError(
                f"standard montage {standard_montage!r} lacks EEG channels "
                f"{', '.join(missing[:5])}",
                ExitCode.BAD_DATA,
            )
        with info._unlock():
            info.set_montage(montage, on_missing="ignore")
        eeg_pos = np.array([info["chs"][p]["loc"][:3] for p in eeg_picks])
        eeg_source = f"standard-montage:{standard_montage}"
        logger.warning("EEG positions taken from the standard montage %s", standard_montage)

    if info["dev_head_t"] is None:
        raise AppError("the run has no device-to-head transform", ExitCode.BAD_DATA)
    dev_head_t = info["dev_head_t"]["trans"]
    meg_picks = mne.pick_types(info, meg=True, exclude=[])
    locs = np.array([info["chs"][p]["loc"] for p in meg_picks])
    meg_pos = mne.transforms.apply_trans(dev_head_t, locs[:, :3])
    # The coil normal is the third column of the coil's rotation (loc[9:12]).
    meg_ori = locs[:, 9:12] @ dev_head_t[:3, :3].T
    meg_types = [mne.channel_type(info, p) for p in meg_picks]
    return SensorPositions(
        eeg_names=eeg_names,
        eeg_pos=eeg_pos,
        meg_names=[info.ch_names[p] for p in meg_picks],
        meg_pos=meg_pos,
        meg_ori=meg_ori,
        meg_types=meg_types,
        eeg_source=eeg_source,
        dev_head_t=dev_head_t,
    )


def _has_positions(pos: np.ndarray) -> bool:
    """True when every electrode has a finite, non-zero position."""
    return bool(
        len(pos) and np.all(np.isfinite(pos)) and np.all(np.linalg.norm(pos, axis=1) > 0)
    )


def head_movement_mm(dev_head_ts: list[np.ndarray]) -> np.ndarray:
    """Displacement of the head origin between each run and the first, in mm.

    The device position of the head origin is ``inv(dev_head_t) @ 0``.
    """
    origins = np.array([np.linalg.inv(t)[:3, 3] for t in dev_head_ts])
    return 1e3 * np.linalg.norm(origins - origins[0], axis=1)


# ----------------------------------------------------------------- T1w space
#: Digitised cardinal points (FIFF idents) and the BIDS landmark names they match.
_CARDINALS = {1: "LPA", 2: "NAS", 3: "RPA"}


def find_t1w(bids_root: Path, subject: str) -> Path | None:
    """The subject's T1w image whose sidecar has anatomical landmarks, if any.

    ds000117 keeps it in ``ses-mri/anat`` with ``AnatomicalLandmarkCoordinates``
    (voxel indices of NAS, LPA and RPA) in its JSON sidecar.
    """
    for path in sorted(Path(bids_root).glob(f"sub-{subject}/**/anat/*_T1w.nii*")):
        sidecar = Path(str(path).split(".nii")[0] + ".json")
        if sidecar.is_file() and "AnatomicalLandmarkCoordinates" in json.loads(
            sidecar.read_text()
        ):
            return path
    return None


def head_to_t1w(info: mne.Info, t1w: Path) -> tuple[np.ndarray, float]:
    """Rigid transform from the head frame to the T1w's scanner space (metres).

    The head frame is defined by the digitised nasion and pre-auricular
    points; the same points marked on the T1w (voxel indices, mapped to
    scanner RAS with the image's affine by nibabel) fix where that frame
    sits in the scanner. The rotation and translation are fitted by least
    squares (:func:`mne.coreg.fit_matched_points`, no scaling); the residual
    says how well the digitised and the MRI landmarks agree.

    Returns
    -------
    trans : ndarray, shape (4, 4)
        Head coordinates (m) → T1w scanner RAS (m).
    error_mm : float
        RMS distance of the fitted landmarks from the MRI landmarks.
    """
    import nibabel as nib

    landmarks = json.loads(Path(str(t1w).split(".nii")[0] + ".json").read_text())[
        "AnatomicalLandmarkCoordinates"
    ]
    head = {
        _CARDINALS[d["ident"]]: d["r"] for d in (info["dig"] or [])
        if d["kind"] == FIFF.FIFFV_POINT_CARDINAL and d["ident"] in _CARDINALS
        and d["coord_frame"] == FIFF.FIFFV_COORD_HEAD
    }
    missing = sorted(set(_CARDINALS.values()) - set(head))
    missing += sorted(set(_CARDINALS.values()) - set(landmarks))
    if missing:
        raise AppError(f"cannot place the head in {Path(t1w).name}: landmark(s) "
                       f"{', '.join(sorted(set(missing)))} missing", ExitCode.BAD_DATA)
    affine = nib.load(t1w).affine
    names = sorted(_CARDINALS.values())
    src = np.array([head[n] for n in names])
    tgt = mne.transforms.apply_trans(affine, np.array([landmarks[n] for n in names])) * 1e-3
    trans = mne.coreg.fit_matched_points(src, tgt, out="trans")
    error = np.sqrt(np.mean(np.sum((mne.transforms.apply_trans(trans, src) - tgt) ** 2, 1)))
    return trans, float(error * 1e3)
