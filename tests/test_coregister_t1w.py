"""EEG electrodes placed in the T1w's scanner space from anatomical landmarks."""

from __future__ import annotations

import json
from pathlib import Path

import mne
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mne.io.constants import FIFF

from synaptech_bids.bids_io.read import find_runs, read_run
from synaptech_bids.config import Config
from synaptech_bids.errors import AppError
from synaptech_bids.participant._04_coregister import find_t1w, head_to_t1w
from synaptech_bids.participant.run import write_t1w_electrodes
from synaptech_bids.simulate import simulate_dataset

#: A T1w with 1.2 mm voxels, oblique: a rotation about z and an offset.
AFFINE = np.array([[1.2 * np.cos(0.3), -1.2 * np.sin(0.3), 0, -90.0],
                   [1.2 * np.sin(0.3), 1.2 * np.cos(0.3), 0, -110.0],
                   [0, 0, 1.2, -70.0],
                   [0, 0, 0, 1]])
#: Where the head frame sits in the scanner (metres): rotated and shifted.
HEAD_TO_SCANNER = mne.transforms.rotation(0.1, -0.05, 0.2) @ mne.transforms.translation(
    0.004, 0.012, 0.035)


def _write_t1w(root: Path, subject: str, info: mne.Info, drop: str | None = None) -> Path:
    """A small T1w whose landmarks are the digitised fiducials under HEAD_TO_SCANNER."""
    anat = root / f"sub-{subject}" / "ses-mri" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    path = anat / f"sub-{subject}_ses-mri_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), AFFINE), path)
    names = {1: "LPA", 2: "NAS", 3: "RPA"}
    landmarks = {}
    for d in info["dig"]:
        if d["kind"] == FIFF.FIFFV_POINT_CARDINAL and d["ident"] in names:
            scanner_mm = mne.transforms.apply_trans(HEAD_TO_SCANNER, d["r"]) * 1e3
            voxel = mne.transforms.apply_trans(np.linalg.inv(AFFINE), scanner_mm)
            landmarks[names[d["ident"]]] = voxel.tolist()
    if drop:
        landmarks.pop(drop)
    sidecar = {"AnatomicalLandmarkCoordinates": landmarks}
    (anat / f"sub-{subject}_ses-mri_T1w.json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    return simulate_dataset(tmp_path_factory.mktemp("t1w") / "bids", n_subjects=1, n_runs=1,
                            duration=5.0, seed=5, sfreq=500.0)


def test_head_to_t1w_recovers_the_transform(sim, tmp_path):
    info = read_run(find_runs(sim, "01")[0].bids_path, with_events=False).info
    t1w = _write_t1w(tmp_path, "01", info)
    assert find_t1w(tmp_path, "01") == t1w
    trans, error_mm = head_to_t1w(info, t1w)
    np.testing.assert_allclose(trans, HEAD_TO_SCANNER, atol=1e-6)
    assert error_mm < 1e-3


def test_missing_landmark_is_a_clear_error(sim, tmp_path):
    info = read_run(find_runs(sim, "01")[0].bids_path, with_events=False).info
    t1w = _write_t1w(tmp_path, "01", info, drop="NAS")
    with pytest.raises(AppError, match="NAS"):
        head_to_t1w(info, t1w)


def test_electrodes_written_in_t1w_space(sim, tmp_path):
    bids = tmp_path / "bids"
    import shutil

    shutil.copytree(sim, bids)
    run = find_runs(bids, "01")[0]
    info = read_run(run.bids_path, with_events=False).info
    t1w = _write_t1w(bids, "01", info)
    out = tmp_path / "out"
    write_t1w_electrodes("01", run, out, Config())
    meg_dir = out / "sub-01" / "ses-meg" / "meg"
    table = pd.read_csv(meg_dir / "sub-01_ses-meg_space-T1w_electrodes.tsv", sep="\t")
    coords = json.loads((meg_dir / "sub-01_ses-meg_space-T1w_coordsystem.json").read_text())
    assert coords["EEGCoordinateUnits"] == "m"
    assert coords["IntendedFor"] == "bids::" + t1w.relative_to(bids).as_posix()
    picks = mne.pick_types(info, meg=False, eeg=True)
    head = np.array([info["chs"][p]["loc"][:3] for p in picks])
    expected = mne.transforms.apply_trans(HEAD_TO_SCANNER, head)
    assert list(table["name"]) == [info.ch_names[p] for p in picks]
    # under 1 mm (the table is rounded to the micrometre)
    assert np.abs(table[["x", "y", "z"]].to_numpy() - expected).max() < 1e-3


def test_no_t1w_writes_nothing(sim, tmp_path):
    run = find_runs(sim, "01")[0]
    write_t1w_electrodes("01", run, tmp_path, Config())
    assert not list(tmp_path.rglob("*space-T1w*"))
