"""The participant level on a simulated dataset, checked against the simulator's truth."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mne_bids import BIDSPath, write_raw_bids
from scipy.signal import butter, resample_poly, sosfiltfilt

from synaptech_bids.bids_io.read import find_runs, read_run
from synaptech_bids.cli import app
from synaptech_bids.config import Config
from synaptech_bids.errors import ExitCode
from synaptech_bids.participant._01_preprocess import apply_maxwell_filter, preprocess_raw
from synaptech_bids.participant._02_ica import correlation_with, remove_artefacts
from synaptech_bids.simulate import load_truth, simulate_dataset

SFREQ = 500.0


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "bids"
    # evoked_scale=3: a 40-s run holds ~15 trials, where a realistic evoked
    # response is below the noise of the average (MEG SNR < 1); these tests
    # check what preprocessing does to an evoked response, so they need one
    # that ~15 trials can show. The simulator's default stays realistic.
    return simulate_dataset(root, n_subjects=2, n_runs=1, duration=40.0, seed=11,
                            sfreq=SFREQ, evoked_scale=3.0)


@pytest.fixture(scope="module")
def derivatives(sim, tmp_path_factory):
    """Run the participant level once for both subjects; check the input is untouched."""
    before = _tree_digest(sim)
    out = tmp_path_factory.mktemp("out") / "derivatives"
    result = CliRunner().invoke(app, [str(sim), str(out), "participant",
                                      "--participant-label", "01", "sub-02"])
    assert result.exit_code == 0, result.output
    assert _tree_digest(sim) == before, "the input dataset was modified"
    return out


def _meg_dir(out: Path, subject: str) -> Path:
    return out / f"sub-{subject}" / "ses-meg" / "meg"


def _stem(subject: str) -> str:
    return f"sub-{subject}_ses-meg_task-facerecognition_run-01"


def test_outputs_and_description(derivatives):
    description = json.loads((derivatives / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "synaptech-bids"
    for subject in ("01", "02"):
        meg_dir = _meg_dir(derivatives, subject)
        for suffix in ("desc-clean_epo.fif", "desc-ica_epo.fif", "desc-pairs_channels.tsv",
                       "desc-pairs_channels.json", "desc-preproc_log.json",
                       "desc-mi_connectivity.tsv", "desc-te_connectivity.tsv",
                       "desc-midistance_connectivity.tsv", "desc-pruned_channels.tsv"):
            assert (meg_dir / f"{_stem(subject)}_{suffix}").is_file(), suffix
        assert (derivatives / f"sub-{subject}.html").stat().st_size > 10_000
    assert not list(derivatives.rglob("*.part*")), "a temporary file was left behind"


def test_each_modalitys_ica_is_saved_with_the_components_it_removed(derivatives):
    """The group level cleans the lead fields with these (group.lead_fields.clean_gains)."""
    meg_dir = _meg_dir(derivatives, "01")
    log = json.loads((meg_dir / f"{_stem('01')}_desc-preproc_log.json").read_text())
    for modality, n_channels in (("meg", 306), ("eeg", 70)):
        ica = mne.preprocessing.read_ica(meg_dir / f"{_stem('01')}_desc-{modality}_ica.fif",
                                         verbose=False)
        assert len(ica.ch_names) == n_channels
        assert ica.exclude == log["ICA"][modality.upper()]["Excluded"]


def test_a_rerun_without_ica_removes_the_earlier_ica_files(sim, derivatives, tmp_path):
    out = tmp_path / "derivatives"
    shutil.copytree(derivatives, out)
    ica = _meg_dir(out, "01") / f"{_stem('01')}_desc-meg_ica.fif"
    assert ica.is_file()
    config = tmp_path / "config.toml"
    config.write_text("ica = false\n")
    result = CliRunner().invoke(app, [str(sim), str(out), "participant", "--config",
                                      str(config), "--participant-label", "01"])
    assert result.exit_code == 0, result.output
    assert not ica.exists() and not ica.with_name(ica.name.replace("meg_ica", "eeg_ica")).exists()


def test_group_level_cleans_the_lead_fields_as_the_data_were(sim, derivatives, tmp_path):
    """SSS, ICA and the EOG projectors, replayed on each subject's gains
    (group/cleaning.py), are named in the scores' provenance."""
    out = tmp_path / "derivatives"
    shutil.copytree(derivatives, out)
    config = tmp_path / "config.toml"
    config.write_text('translators = ["physics"]\n')
    result = CliRunner().invoke(app, [str(sim), str(out), "group", "--config", str(config)])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "group" / "desc-translation_scores.json").read_text())
    for subject in ("01", "02"):
        source = sidecar["LeadFields"][subject]
        assert "cleaned as the data (EEG, MEG)" in source, source
        assert "projected as the data (EOG-" in source, source
    assert "went through the linear cleaning its data went through" in (
        out / "group.html").read_text()


def test_report_shows_shared_information(derivatives):
    """The subject report holds the MI figures and the TE summary (issue 4)."""
    html = (derivatives / "sub-01.html").read_text()
    section = html[html.index("Shared information"):]
    # each figure is an embedded image (mne.Report puts the title in its alt text)
    for title in ("MI matrix", "MI topography", "MI vs EEG", "MI lag profile"):
        assert f'alt="{title}' in section, title
    assert "Transfer entropy" in section and "significant EEG" in section


def test_ds000117_sidecars_and_stim_type_read(sim, derivatives):
    """Session-level channels.tsv types EEG061-064; stim_type names the conditions."""
    assert (sim / "sub-01" / "ses-meg"
            / "sub-01_ses-meg_task-facerecognition_channels.tsv").is_file()
    epochs = mne.read_epochs(_meg_dir(derivatives, "01") / f"{_stem('01')}_desc-clean_epo.fif",
                             verbose=False)
    assert set(epochs.event_id) == {"Famous", "Unfamiliar", "Scrambled"}
    types = dict(zip(epochs.ch_names, epochs.get_channel_types()))
    assert types["EEG061"] == "eog" and types["EEG062"] == "eog" and types["EEG063"] == "ecg"
    assert sum(t == "eeg" for t in types.values()) == 70


def test_positions_match_truth(sim, derivatives):
    for subject in ("01", "02"):
        truth = load_truth(sim, subject, 1)
        names = list(truth["ch_names"])
        true_pos = np.asarray(truth["sensor_positions"])
        table = pd.read_csv(_meg_dir(derivatives, subject)
                            / f"{_stem(subject)}_space-head_desc-sensors_channels.tsv", sep="\t")
        for _, row in table.iterrows():
            expected = true_pos[names.index(row["name"])]
            error_mm = 1e3 * np.linalg.norm(row[["x", "y", "z"]].to_numpy(float) - expected)
            assert error_mm < 1.0, (row["name"], error_mm)


def test_pairs_follow_distance(derivatives):
    meg_dir = _meg_dir(derivatives, "01")
    positions = pd.read_csv(meg_dir / f"{_stem('01')}_space-head_desc-sensors_channels.tsv",
                            sep="\t").set_index("name")
    pairs = pd.read_csv(meg_dir / f"{_stem('01')}_desc-pairs_channels.tsv", sep="\t")
    eeg = positions[positions["type"] == "EEG"]
    mag = positions[positions["type"] == "MAG"]
    dist = 100 * np.linalg.norm(eeg[["x", "y", "z"]].to_numpy()[:, None]
                                - mag[["x", "y", "z"]].to_numpy()[None], axis=-1)
    expected = {(e, m) for i, e in enumerate(eeg.index) for j, m in enumerate(mag.index)
                if dist[i, j] <= Config().pair_max_distance_cm}
    assert set(zip(pairs["eeg_channel"], pairs["meg_channel"])) == expected
    assert len(expected) > 0


def _evoked_r(measured: mne.io.BaseRaw | mne.Epochs, truth: mne.io.BaseRaw,
              epochs_ref: mne.Epochs, ch_type: str) -> float:
    """Correlation of a measured average with the noiseless one (0.1-20 Hz)."""
    def average(inst):
        if isinstance(inst, mne.BaseEpochs):
            return inst.average(picks=ch_type).filter(None, 20, verbose=False).data
        inst = inst.copy().filter(0.1, 20, verbose=False).resample(
            epochs_ref.info["sfreq"], verbose=False)
        events = mne.events_from_annotations(inst, event_id=epochs_ref.event_id,
                                             verbose=False)[0]
        epochs = mne.Epochs(inst, events, epochs_ref.event_id, -0.5, 1.5,
                            baseline=(-0.5, 0), preload=True, verbose=False)
        epochs.drop([i for i, s in enumerate(epochs.selection)
                     if s not in set(epochs_ref.selection)], verbose=False)
        return epochs.average(picks=ch_type).data
    a, b = average(measured), average(truth)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_evoked_survives_preprocessing(sim, derivatives):
    """The cleaned average follows the noiseless evoked response as well as the
    unprocessed recording's average does (minus a small margin).

    ~15 trials leave the average noisy (so the correlation with the truth is
    far from 1 even before any processing); the test is that preprocessing
    and ICA do not lose the evoked response relative to that baseline.
    """
    truth_arrays = load_truth(sim, "01", 1)
    names = list(truth_arrays["meta"]["ComponentNames"])
    rows = [i for i, n in enumerate(names) if n.startswith("evoked")]
    raw = read_run(find_runs(sim, "01")[0].bids_path).load_data()
    raw.set_eeg_reference("average", verbose=False)
    order = [list(truth_arrays["ch_names"]).index(c) for c in raw.ch_names]
    # mixing is in V (T) per nAm and time courses in nAm: the product is V (T)
    noiseless = (np.asarray(truth_arrays["brain_mixing"])[:, rows]
                 @ np.asarray(truth_arrays["brain_timeseries"])[rows])[order]
    truth = mne.io.RawArray(noiseless, raw.info, first_samp=raw.first_samp, verbose=False)
    truth.set_annotations(raw.annotations)
    truth.set_eeg_reference("average", verbose=False)
    epochs = mne.read_epochs(_meg_dir(derivatives, "01") / f"{_stem('01')}_desc-ica_epo.fif",
                             verbose=False)
    # The magnetometers' reference is the recording with only the room's field
    # removed (Maxwell filtering): that field is not brain signal, and in the
    # raw recording it swamps a ~15-trial average.
    references = {"eeg": raw, "mag": apply_maxwell_filter(raw.copy())[0]}
    for ch_type in ("eeg", "mag"):
        baseline = _evoked_r(references[ch_type], truth, epochs, ch_type)
        cleaned = _evoked_r(epochs, truth, epochs, ch_type)
        assert baseline > 0.3, (ch_type, baseline)  # there is an evoked response
        assert cleaned > baseline - 0.1, (ch_type, cleaned, baseline)


def test_rerun_skips_and_force_redoes(sim, derivatives):
    log = _meg_dir(derivatives, "01") / f"{_stem('01')}_desc-preproc_log.json"
    epochs = _meg_dir(derivatives, "01") / f"{_stem('01')}_desc-clean_epo.fif"
    mtime = epochs.stat().st_mtime_ns
    args = [str(sim), str(derivatives), "participant", "--participant-label", "01"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert epochs.stat().st_mtime_ns == mtime  # up to date: skipped
    first = json.loads(log.read_text())
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    assert epochs.stat().st_mtime_ns != mtime
    second = json.loads(log.read_text())
    # deterministic: same input hash, same ICA choices, same epoch counts
    assert first["InputHash"] == second["InputHash"]
    assert first["ICA"] == second["ICA"] and first["Epochs"] == second["Epochs"]


def test_ica_removes_blinks_and_keeps_brain(sim):
    run = find_runs(sim, "01")[0]
    config = Config()
    raw, _ = preprocess_raw(read_run(run.bids_path), config)
    raw, raw_ica, log, _ = remove_artefacts(raw, config, seed=0)
    assert log["EEG"]["EOGComponents"] and log["MEG"]["EOGComponents"]
    truth = load_truth(sim, "01", 1)
    names = list(truth["artifacts_names"]) if "artifacts_names" in truth else list(
        truth["artifact_names"])
    blink = np.asarray(truth["artifacts_timeseries"])[names.index("blink")]
    # the truth at the simulated rate, through the same band and rate as the data
    sos = butter(4, (1.0, 40.0), btype="bandpass", fs=SFREQ, output="sos")
    blink = resample_poly(sosfiltfilt(sos, blink), 1, int(SFREQ // config.resample_sfreq))
    n = min(len(blink), raw.n_times)
    sos_out = butter(4, (1.0, 40.0), btype="bandpass", fs=config.resample_sfreq, output="sos")

    def blink_r(data):
        return correlation_with(blink[:n], sosfiltfilt(sos_out, data[:, :n], axis=-1))

    before_eeg = blink_r(raw.get_data(picks="eeg"))  # raw: EEG not ICA-cleaned
    after_eeg = blink_r(raw_ica.get_data(picks="eeg"))
    before_meg = blink_r(read_and_preprocess(sim, config).get_data(picks="mag"))
    after_meg = blink_r(raw_ica.get_data(picks="mag"))
    assert before_eeg.max() > 0.3  # the blinks were there
    assert after_eeg.max() < 0.1
    # MEG: ICA, then one EOG projector per sensor type (see _02_ica.py)
    assert before_meg.max() > 0.3
    assert after_meg.max() < 0.1
    assert log["MEG"]["EOGProjectors"] == 2


def test_iclabel_cleans_eeg_of_a_recording_without_eog_and_ecg(sim):
    """Without EOG/ECG channels, ICLabel finds the blink in the EEG; MEG is left alone."""
    run = find_runs(sim, "01")[0]
    config = Config()
    raw, _ = preprocess_raw(read_run(run.bids_path), config)
    artefact_channels = raw.copy().pick(["eog", "ecg"]).ch_names
    veog = "EEG062"  # the simulator's vertical EOG, which carries the blinks
    raw.set_channel_types({ch: "misc" for ch in artefact_channels}, on_unit_change="ignore")
    meg_before = raw.get_data(picks="meg")
    raw, raw_ica, log, icas = remove_artefacts(raw, config, seed=0)
    assert "ICLabel" in log["EEG"] and log["EEG"]["EOGComponents"], log["EEG"]
    assert log["MEGSkipped"] and set(icas) == {"eeg"}
    np.testing.assert_array_equal(raw_ica.get_data(picks="meg"), meg_before)
    sos = butter(4, (1.0, 40.0), btype="bandpass", fs=config.resample_sfreq, output="sos")
    blink = sosfiltfilt(sos, raw.get_data(picks=[veog])[0])  # now a misc channel

    def blink_r(data):
        return correlation_with(blink, sosfiltfilt(sos, data, axis=-1))

    assert blink_r(raw.get_data(picks="eeg")).max() > 0.3
    assert blink_r(raw_ica.get_data(picks="eeg")).max() < 0.15
    # never, and the recording keeps its blinks
    _, kept, log_never, _ = remove_artefacts(raw.copy(), Config(ica_icalabel="never"), seed=0)
    assert log_never["Skipped"] and blink_r(kept.get_data(picks="eeg")).max() > 0.3


def read_and_preprocess(sim: Path, config: Config) -> mne.io.BaseRaw:
    raw, _ = preprocess_raw(read_run(find_runs(sim, "01")[0].bids_path), config)
    return raw


def test_missing_digitisation_fails_unless_montage_allowed(sim, tmp_path):
    raw = read_run(find_runs(sim, "01")[0].bids_path, with_events=False)
    raw.load_data().set_annotations(None)
    with raw.info._unlock():
        raw.info["dig"] = None
    for ch in raw.info["chs"]:
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH:
            ch["loc"][:] = np.nan
    root = tmp_path / "nodig"
    events, event_id = mne.events_from_annotations(
        read_run(find_runs(sim, "01")[0].bids_path), verbose=False)
    write_raw_bids(raw, BIDSPath(subject="01", session="meg", task="facerecognition",
                                 run="01", datatype="meg", root=root),
                   events=events, event_id=event_id, allow_preload=True, format="FIF",
                   verbose=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(root), str(out), "participant"])
    assert result.exit_code == ExitCode.BAD_DATA
    assert "EEG electrode positions are missing" in result.output
    config = tmp_path / "config.toml"
    config.write_text('allow_standard_montage = "mgh70"\n')
    result = CliRunner().invoke(app, [str(root), str(out), "participant", "--config",
                                      str(config)])
    assert result.exit_code == 0, result.output
    pairs_json = next(out.rglob("*desc-pairs_channels.json"))
    assert json.loads(pairs_json.read_text())["EEGPositionSource"] == "standard-montage:mgh70"
