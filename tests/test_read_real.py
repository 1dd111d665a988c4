"""A real recording read through the same loading code as the pipeline's."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
from mne_bids import BIDSPath, write_raw_bids

from synaptech_bids.bids_io.read import find_runs, read_events_tsv, read_run
from synaptech_bids.participant._04_coregister import sensor_positions
from synaptech_bids.participant._05_pairing import pair_sensors

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
SAMPLE = REAL / "sample_audvis_trunc_raw_sss.fif"


@pytest.fixture(scope="module")
def real_bids(tmp_path_factory):
    assert SAMPLE.is_file(), f"the real test recording is missing: {SAMPLE}"
    raw = mne.io.read_raw_fif(SAMPLE, verbose=False)
    root = tmp_path_factory.mktemp("real") / "bids"
    bids_path = BIDSPath(subject="01", session="meg", task="audvis", run="01",
                         datatype="meg", root=root)
    write_raw_bids(raw, bids_path, overwrite=True, verbose=False, allow_preload=False)
    return root, raw


def test_real_recording_reads_through_pipeline_loader(real_bids):
    root, original = real_bids
    runs = find_runs(root, "01")
    assert len(runs) == 1
    run = runs[0]
    assert run.n_meg == 306 and run.n_eeg == 60
    raw = read_run(run.bids_path)
    assert raw.info["sfreq"] == pytest.approx(original.info["sfreq"])
    np.testing.assert_allclose(raw.info["dev_head_t"]["trans"],
                               original.info["dev_head_t"]["trans"])
    # Data identical to the file's (the loader changes nothing but metadata).
    np.testing.assert_array_equal(raw.get_data(picks="meg"), original.get_data(picks="meg"))


def test_real_positions_in_head_coordinates(real_bids):
    root, original = real_bids
    raw = read_run(find_runs(root, "01")[0].bids_path)
    positions = sensor_positions(raw.info)
    assert positions.eeg_source == "digitisation"
    # Electrodes on the scalp (6–15 cm from the head origin, which lies
    # between the ears, below the head's centre) ...
    eeg_r = np.linalg.norm(positions.eeg_pos, axis=1)
    assert np.all((eeg_r > 0.06) & (eeg_r < 0.15))
    mags = np.array([t == "mag" for t in positions.meg_types])
    assert mags.sum() == 102
    # ... and magnetometers in the helmet, off the scalp: none within 1.5 cm
    # of an electrode, all within 10 cm of one.
    gap = np.linalg.norm(
        positions.meg_pos[mags][:, None] - positions.eeg_pos[None], axis=-1).min(axis=1)
    assert gap.min() > 0.015 and gap.max() < 0.10
    # MEG coils moved with dev_head_t: identical to MNE's own transform.
    picks = mne.pick_types(original.info, meg=True)
    expected = mne.transforms.apply_trans(
        original.info["dev_head_t"],
        np.array([original.info["chs"][p]["loc"][:3] for p in picks]))
    np.testing.assert_allclose(positions.meg_pos, expected, atol=1e-9)
    pairs = pair_sensors(positions, max_distance_cm=6.0)
    assert pairs["distance"].between(0, 6.0).all()
    # a magnetometer over the vertex has electrodes below it within 6 cm
    assert pairs["meg_channel"].nunique() > 20


def test_events_tsv_stim_type_and_trial_type(tmp_path):
    """ds000117 names conditions in stim_type; current BIDS in trial_type."""
    ds = tmp_path / "ds000117_events.tsv"
    ds.write_text("onset\tduration\ttrigger\tstim_type\n1.5\t0\t5\tFamous\n3.0\t0\t17\tScrambled\n")
    annotations = read_events_tsv(ds)
    assert list(annotations.description) == ["Famous", "Scrambled"]
    np.testing.assert_allclose(annotations.onset, [1.5, 3.0])
    bids = tmp_path / "bids_events.tsv"
    bids.write_text("onset\tduration\ttrial_type\tvalue\n2.0\t0\tUnfamiliar\t13\n")
    assert list(read_events_tsv(bids).description) == ["Unfamiliar"]
    codes = tmp_path / "codes_events.tsv"
    codes.write_text("onset\tduration\ttrigger\n2.0\t0\t13\n")
    assert list(read_events_tsv(codes).description) == ["13"]
