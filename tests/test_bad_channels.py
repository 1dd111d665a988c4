"""Automatic bad channels and autoreject epoch rejection, on a simulated run.

The broken channels are made in memory, on the loaded recording (the input
files are never touched): one EEG electrode very noisy, one flat (stuck at a
DC level, as a disconnected electrode), one magnetometer noisy.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from synaptech_bids.bids_io.read import find_runs, read_run
from synaptech_bids.config import Config, ConfigError, load_config
from synaptech_bids.participant._01_preprocess import (
    find_bad_channels_eeg,
    mark_auto_bad_channels,
    preprocess_raw,
)
from synaptech_bids.participant._03_epochs import make_epochs
from synaptech_bids.participant.report import methods_text
from synaptech_bids.simulate import simulate_dataset

AUTO = Config(auto_bad_channels=True)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    # 60 s hold ~20 trials: enough for autoreject's 5-fold cross-validation
    root = tmp_path_factory.mktemp("badsim") / "bids"
    return simulate_dataset(root, n_subjects=1, n_runs=1, duration=60.0, seed=5, sfreq=500.0)


def _read(sim: Path) -> mne.io.BaseRaw:
    return read_run(find_runs(sim, "01")[0].bids_path).load_data()


def _broken(sim: Path) -> tuple[mne.io.BaseRaw, dict[str, str]]:
    """The run with one noisy and one flat EEG electrode and one noisy magnetometer."""
    raw = _read(sim)
    eeg = mne.pick_types(raw.info, meg=False, eeg=True, exclude="bads")
    mag = mne.pick_types(raw.info, meg="mag", exclude="bads")
    noisy_eeg, flat_eeg, noisy_mag = eeg[10], eeg[30], mag[20]
    rng = np.random.default_rng(0)
    for pick in (noisy_eeg, noisy_mag):
        # white noise ten times the channel's own standard deviation
        scale = 10 * raw._data[pick].std()
        raw._data[pick] += rng.normal(0.0, scale, raw.n_times)
    raw._data[flat_eeg] = 2e-6  # a DC level and nothing else
    names = {"noisy_eeg": raw.ch_names[noisy_eeg], "flat_eeg": raw.ch_names[flat_eeg],
             "noisy_mag": raw.ch_names[noisy_mag]}
    return raw, names


def _found(log: dict, modality: str) -> set[str]:
    entry = log["AutoBadChannels"][modality]["Channels"]
    return {ch for chs in entry.values() for ch in chs}


@pytest.fixture(scope="module")
def clean(sim):
    """The untouched run, preprocessed with the automatic search on."""
    return preprocess_raw(_read(sim), AUTO)


@pytest.fixture(scope="module")
def broken(sim):
    raw, names = _broken(sim)
    raw, log = preprocess_raw(raw, AUTO)
    return raw, log, names


def test_clean_run_has_no_bad_channels(clean):
    """The simulated sensors are all good: nothing may be flagged (no false positives)."""
    _, log = clean
    assert _found(log, "MEG") == set() and _found(log, "EEG") == set()
    assert log["InterpolatedEEGChannels"] == []


def test_broken_channels_found_and_named(broken):
    """Exactly the broken channels are found, each by the right criterion.

    Exactly, not "at least": the clean run flags nothing (test above), and a
    noisy channel adds to the average only after it has been interpolated,
    so it cannot make good ones look bad.
    """
    _, log, names = broken
    eeg = log["AutoBadChannels"]["EEG"]["Channels"]
    assert eeg["Flat"] == [names["flat_eeg"]]
    assert eeg["Noisy"] == [names["noisy_eeg"]]
    assert set(eeg["Uncorrelated"]) <= {names["noisy_eeg"]}
    assert _found(log, "EEG") == {names["noisy_eeg"], names["flat_eeg"]}
    meg = log["AutoBadChannels"]["MEG"]
    assert meg["Channels"] == {"Noisy": [names["noisy_mag"]], "Flat": []}
    assert "find_bad_channels_maxwell" in meg["Method"]


def test_bad_eeg_interpolated_bad_meg_marked(broken, clean):
    raw, log, names = broken
    assert sorted(log["InterpolatedEEGChannels"]) == sorted(
        [names["noisy_eeg"], names["flat_eeg"]])
    assert log["MarkedBadMEGChannels"] == [names["noisy_mag"]]
    assert raw.info["bads"] == [names["noisy_mag"]]
    # the interpolated electrodes follow what they recorded before they broke
    reference = clean[0]
    for name in (names["noisy_eeg"], names["flat_eeg"]):
        r = np.corrcoef(raw.get_data(picks=name)[0], reference.get_data(picks=name)[0])[0, 1]
        assert r > 0.8, (name, r)
    # and nothing else changed much: the other electrodes are as before
    others = [c for c in raw.copy().pick("eeg").ch_names
              if c not in (names["noisy_eeg"], names["flat_eeg"])]
    diff = raw.get_data(picks=others) - reference.get_data(picks=others)
    assert np.abs(diff).max() < 0.2 * reference.get_data(picks=others).std()


def test_off_by_default_leaves_channels_alone(sim):
    raw, names = _broken(sim)
    raw, log = preprocess_raw(raw, Config())
    assert "AutoBadChannels" not in log
    assert log["InterpolatedEEGChannels"] == [] and log["MarkedBadMEGChannels"] == []
    assert raw.info["bads"] == []
    eeg = raw.get_data(picks="eeg").std(axis=1)
    noisy = raw.ch_names.index(names["noisy_eeg"])
    assert raw.get_data(picks=noisy).std() > 3 * np.median(eeg)  # still noisy


def test_eeg_detector_robust_to_equal_amplitudes():
    """Electrodes of near-equal amplitude: one only 30 % louder is not noisy."""
    info = mne.create_info([f"E{i}" for i in range(20)], 250.0, "eeg")
    rng = np.random.default_rng(1)
    common = rng.normal(0, 1e-5, 5000)
    data = common + rng.normal(0, 2e-6, (20, 5000))
    data[3] *= 1.3
    found = find_bad_channels_eeg(mne.io.RawArray(data, info, verbose=False))
    assert found == {"Flat": [], "Noisy": [], "Uncorrelated": []}


def test_real_recording_known_bad_electrode():
    """On 1 s of real EEG (MNE's sample subject), the one electrode MNE's sample
    data set lists as bad, EEG 053, is found, and no other. Its MEG is already
    Maxwell-filtered, so the MEG search is skipped, and says so."""
    path = REAL / "sample_audvis_trunc_raw_sss.fif"
    assert path.is_file(), f"the real test recording is missing: {path}"
    raw = mne.io.read_raw_fif(path, preload=True, verbose=False)
    raw.info["bads"] = []
    # as recorded (online band-pass 0.1-80 Hz): a 1-s file is too short for
    # the pipeline's 0.1-Hz high-pass
    found = mark_auto_bad_channels(raw)
    assert found["EEG"]["Channels"] == {"Flat": [], "Noisy": [], "Uncorrelated": ["EEG 053"]}
    assert "Maxwell-filtered" in found["MEG"]["Skipped"] and found["MEG"]["Channels"] == {}
    assert raw.info["bads"] == ["EEG 053"]


def _with_artefact(raw: mne.io.BaseRaw, sample: int) -> mne.io.BaseRaw:
    """A 2-mV, 100-ms jump on five electrodes, 300 ms after the event at ``sample``."""
    dirty = raw.copy()
    start = sample - raw.first_samp + int(0.3 * raw.info["sfreq"])
    stop = start + int(0.1 * raw.info["sfreq"])
    dirty._data[mne.pick_types(raw.info, meg=False, eeg=True)[:5], start:stop] += 2e-3
    return dirty


def test_autoreject_thresholds_drop_the_artefact(clean):
    raw = clean[0]
    config = Config(reject="autoreject")
    epochs, log = make_epochs(raw, config, seed=3)
    assert log["RejectMethod"].startswith("autoreject")
    thresholds = log["RejectPeakToPeak"]
    assert set(thresholds) == {"eeg", "mag", "grad"}
    assert all(np.isfinite(v) and v > 0 for v in thresholds.values())
    assert thresholds["eeg"] < 1e-3  # well below the artefact
    sample = int(epochs.events[2, 0])  # a kept epoch
    dirty_epochs, dirty_log = make_epochs(_with_artefact(raw, sample), config, seed=3)
    assert sample not in dirty_epochs.events[:, 0]
    assert dirty_log["RejectedByReason"].get("eeg", 0) >= 1


def test_autoreject_is_deterministic(clean):
    raw = clean[0]
    config = Config(reject="autoreject")
    first, first_log = make_epochs(raw, config, seed=7)
    second, second_log = make_epochs(raw, config, seed=7)
    assert first_log["RejectPeakToPeak"] == second_log["RejectPeakToPeak"]
    assert np.array_equal(first.selection, second.selection)


def test_ptp_is_the_default(clean):
    _, log = make_epochs(clean[0], Config())
    assert log["RejectMethod"] == "fixed"
    assert log["RejectPeakToPeak"]["eeg"] == pytest.approx(250e-6)


@pytest.mark.parametrize("options", [
    {"reject": "autoreject_global"},
    {"reject": "peak-to-peak"},
    {"auto_bad_channels": "yes"},
])
def test_bad_rejection_options(options):
    with pytest.raises(ConfigError):
        Config(**options)


def test_bad_reject_in_config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('reject = "global"\n')
    with pytest.raises(ConfigError, match="reject"):
        load_config(path)
    path.write_text('reject = "autoreject"\nauto_bad_channels = true\n')
    config = load_config(path)
    assert config.reject == "autoreject" and config.auto_bad_channels
    assert "reject" in config.participant_dict()
    assert "auto_bad_channels" in config.participant_dict()


def test_methods_text_says_what_was_done():
    log = {"Preprocessing": {"NotchFrequencies": [50.0]}}
    default = methods_text(Config(), log)
    assert "channels.tsv" in default and "autoreject" not in default
    assert "find_bad_channels_maxwell" not in default
    text = methods_text(Config(auto_bad_channels=True, reject="autoreject"), log)
    assert "find_bad_channels_maxwell" in text and "autoreject" in text
