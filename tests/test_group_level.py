"""The group level end to end, as users run it: simulate → participant → group."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from synaptech_bids.cli import app
from synaptech_bids.config import Config
from synaptech_bids.group.gather import cache_subject, find_subject_derivatives
from synaptech_bids.group.report import lead_field_text, network_text
from synaptech_bids.simulate import simulate_dataset
from synaptech_bids.translators import load_translator

SUBJECTS = ("01", "02", "03")
# Cheap participant settings (ICA and its checks are tested in test_participant.py);
# a 1 Hz high-pass suits 30-s recordings.
CONFIG = """
l_freq = 1.0
ica = false
group_eeg = "clean"
n_surrogates = 20
translators = ["physics", "ridge", "synaptechnet"]
synaptechnet_width = 0.0625
max_epochs = 2
batch_size = 8
save_continuous = true
"""


@pytest.fixture(scope="module")
def group_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("group")
    bids = simulate_dataset(base / "bids", n_subjects=3, n_runs=1, duration=30.0, seed=3,
                            sfreq=500.0, save_forward=True)
    out = base / "derivatives"
    config = base / "config.toml"
    config.write_text(CONFIG)
    runner = CliRunner()
    result = runner.invoke(app, [str(bids), str(out), "participant", "--config", str(config),
                                 "--participant-label", *SUBJECTS])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [str(bids), str(out), "group", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return bids, out, config


def test_scores_every_model_on_every_held_out_subject(group_run):
    _, out, _ = group_run
    scores = pd.read_csv(out / "group" / "desc-translation_scores.tsv", sep="\t",
                         dtype={"subject": str})
    models = {"training-mean", "physics", "ridge", "synaptechnet"}
    assert set(scores["model"]) == models
    for model in models:
        rows = scores[scores["model"] == model]
        assert sorted(rows["subject"].unique()) == list(SUBJECTS)
        assert rows.groupby("subject")["meg_channel"].nunique().eq(102).all()
    assert np.isfinite(scores["r2"]).all()
    # simulated data: the noise ceiling from the truth is a share of variance
    assert scores["noise_ceiling_r2"].between(0, 1).all()
    sidecar = json.loads((out / "group" / "desc-translation_scores.json").read_text())
    assert sidecar["Subjects"] == list(SUBJECTS)
    transfer = pd.read_csv(out / "group" / "desc-transfer_scores.tsv", sep="\t")
    assert (transfer["head_distance_mean_mm"] > 0).all()
    assert (out / "group.html").stat().st_size > 10_000
    assert "No departure from the paper" in (out / "group.html").read_text()


def test_final_models_translate_eeg(group_run):
    _, out, _ = group_run
    for name in ("physics", "ridge", "synaptechnet"):
        model = load_translator(out / "group" / "models" / f"desc-{name}_model")
        assert model.name == name


def test_rerun_resumes_and_gives_the_same_scores(group_run):
    bids, out, config = group_run
    before = (out / "group" / "desc-translation_scores.tsv").read_text()
    (key,) = (out / "work" / "group" / "checkpoints").iterdir()
    checkpoints = sorted(p.name for p in key.iterdir())
    assert checkpoints == ["synaptechnet_final", "synaptechnet_fold-0", "synaptechnet_fold-1",
                           "synaptechnet_fold-2"]
    result = CliRunner().invoke(app, [str(bids), str(out), "group", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (out / "group" / "desc-translation_scores.tsv").read_text() == before


def test_changed_settings_train_afresh_and_force_clears(group_run, tmp_path):
    """Checkpoints belong to one set of inputs and settings: a run with another
    max_epochs starts its own instead of refusing the old ones, and --force
    clears every checkpoint and finished fold."""
    bids, out, config = group_run
    work = out / "work" / "group"
    other = tmp_path / "config.toml"
    other.write_text(config.read_text().replace("max_epochs = 2", "max_epochs = 1"))
    command = [str(bids), str(out), "group", "--config", str(other)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert len(list((work / "checkpoints").iterdir())) == 2
    assert len(list((work / "folds").iterdir())) == 2
    result = CliRunner().invoke(app, [*command, "--force"])
    assert result.exit_code == 0, result.output
    assert len(list((work / "checkpoints").iterdir())) == 1
    assert len(list((work / "folds").iterdir())) == 1


def test_group_only_options_reuse_participant_outputs(group_run, tmp_path):
    """Changing a translator setting neither re-runs nor refuses participant outputs."""
    bids, out, config = group_run
    other = tmp_path / "config.toml"
    other.write_text(config.read_text().replace('"physics", "ridge", "synaptechnet"',
                                                '"ridge"'))
    log = next(out.rglob("sub-01*desc-preproc_log.json"))
    stamp = log.stat().st_mtime_ns
    runner = CliRunner()
    result = runner.invoke(app, [str(bids), str(out), "participant", "--config", str(other),
                                 "--participant-label", "01"])
    assert result.exit_code == 0, result.output
    assert log.stat().st_mtime_ns == stamp, "participant outputs were recomputed"


def test_source_space_translators_read_the_subjects_forward_solutions(group_run, tmp_path):
    """forward_dir: the lead fields come from each subject's forward file (one
    the simulator wrote on its cortex), which the outputs and report name;
    a folder without them is a one-line error."""
    bids, out, config = group_run
    other = tmp_path / "config.toml"
    other.write_text(
        config.read_text().replace('"physics", "ridge", "synaptechnet"', '"physics", "adaptive"')
        + f'forward_dir = "{bids / "derivatives" / "forward"}"\n')
    # one BLAS thread: SBL's small matrices slow down 20-fold when two
    # threads share a core with the other test worker
    command = [str(bids), str(out), "group", "--config", str(other), "--omp-nthreads", "1"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "group" / "desc-translation_scores.tsv", sep="\t")
    assert set(scores["model"]) == {"training-mean", "physics", "adaptive"}
    assert np.isfinite(scores["r2"]).all()
    sidecar = json.loads((out / "group" / "desc-translation_scores.json").read_text())
    # no ICA in this configuration: the gains went through the Maxwell filter and
    # the average reference only
    assert sidecar["LeadFields"] == {
        s: f"sub-{s}_ses-meg_task-facerecognition_fwd.fif; cleaned as the data (EEG, MEG)"
        for s in SUBJECTS}
    assert "dipoles fixed along the cortical normals" in (out / "group.html").read_text()
    empty = tmp_path / "no_forwards"
    empty.mkdir()
    other.write_text(other.read_text().replace(str(bids / "derivatives" / "forward"),
                                               str(empty)))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 66
    assert "no forward solution for sub-01" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_pruned_channel_set_runs_end_to_end(group_run, tmp_path):
    """group_eeg_channels = "pruned" reads the participant pruning tables."""
    bids, out, config = group_run
    other = tmp_path / "config.toml"
    other.write_text(config.read_text().replace('"physics", "ridge", "synaptechnet"',
                                                '"ridge"') + 'group_eeg_channels = "pruned"\n')
    result = CliRunner().invoke(app, [str(bids), str(out), "group", "--config", str(other)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "group" / "desc-translation_scores.tsv", sep="\t")
    channels = json.loads((out / "group" / "models" / "desc-models_channels.json").read_text())
    assert set(scores["n_eeg_channels"]) <= set(range(1, 71))
    assert 1 <= len(channels["EEGChannels"]) <= 70
    assert len(channels["MEGChannels"]) == 102


def test_sliding_windows_skip_bad_segments_and_match_the_recording(group_run, tmp_path):
    """Each sliding window is the continuous recording's samples; none touches a BAD span."""
    import mne

    _, out, _ = group_run
    deriv = find_subject_derivatives(out, "01", "clean", windows="sliding")
    assert deriv is not None and len(deriv.files) == 1
    raw = mne.io.read_raw_fif(deriv.files[0], preload=True, verbose=False)
    sfreq = raw.info["sfreq"]
    # mark 3 s as bad, starting 10 s into the recording
    raw.annotations.append(raw.first_time + 10.0, 3.0, "BAD_test")
    raw.save(tmp_path / "run_meg.fif", verbose=False)
    deriv.files = [tmp_path / "run_meg.fif"]
    eeg_names = raw.copy().pick("eeg").ch_names
    mag_names = raw.copy().pick("mag").ch_names
    eeg, meg, conditions = cache_subject(deriv, eeg_names, mag_names, tmp_path / "arrays",
                                         window_length_s=2.0, window_step_s=0.5)
    n_window, step = int(round(2.0 * sfreq)), int(round(0.5 * sfreq))
    starts = np.arange(0, raw.n_times - n_window + 1, step)
    bad_start, bad_stop = int(round(10.0 * sfreq)), int(round(13.0 * sfreq))
    # MNE marks the half-open span [onset, onset + duration) as bad
    clean = starts[(starts + n_window <= bad_start) | (starts >= bad_stop)]
    assert len(eeg) == len(meg) == len(conditions) == len(clean)
    assert len(clean) < len(starts) - 8  # the bad span removed ~ (3 + 2) / 0.5 windows
    assert set(conditions) == {"n/a"}
    k = len(clean) // 2
    expected = raw.get_data(picks=mag_names, start=clean[k], stop=clean[k] + n_window) * 1e15
    np.testing.assert_allclose(meg[k], expected, rtol=1e-5, atol=1e-3)


def test_group_on_sliding_windows(group_run, tmp_path):
    """group_windows = "sliding" trains and scores on the continuous recordings."""
    bids, out, config = group_run
    copy = tmp_path / "derivatives"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("group", "work", "*.html"))
    other = tmp_path / "config.toml"
    other.write_text(config.read_text().replace('"physics", "ridge", "synaptechnet"',
                                                '"ridge"') + 'group_windows = "sliding"\n')
    result = CliRunner().invoke(app, [str(bids), str(copy), "group", "--config", str(other)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(copy / "group" / "desc-translation_scores.tsv", sep="\t",
                         dtype={"subject": str})
    assert set(scores["model"]) == {"training-mean", "ridge"}
    assert sorted(scores["subject"].unique()) == list(SUBJECTS)
    ridge = scores[scores["model"] == "ridge"].groupby("subject")["r2"].mean()
    assert (ridge > 0).all(), ridge  # EEG predicts some of the MEG on unseen subjects
    sidecar = json.loads((copy / "group" / "desc-translation_scores.json").read_text())
    assert sidecar["Windows"].startswith("2-s windows every 1 s")
    evoked = pd.read_csv(copy / "group" / "desc-evoked_fidelity.tsv", sep="\t")
    assert "evoked_r" in evoked and len(evoked) == 0  # no conditions, no evoked responses


def test_sliding_windows_need_continuous_recordings(group_run, tmp_path):
    bids, out, config = group_run
    copy = tmp_path / "derivatives"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("group", "work", "*_meg.fif"))
    other = tmp_path / "config.toml"
    other.write_text(config.read_text() + 'group_windows = "sliding"\n')
    result = CliRunner().invoke(app, [str(bids), str(copy), "group", "--config", str(other)])
    assert result.exit_code == 66, result.output
    assert "save_continuous" in result.output


def test_subject_with_too_few_windows_is_refused(group_run, tmp_path):
    """A subject left with fewer than 4 windows: one clear line, exit 65, no traceback."""
    import mne

    bids, out, config = group_run
    copy = tmp_path / "derivatives"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("group", "work", "*.html"))
    epo = next(copy.rglob("sub-02_*desc-clean_epo.fif"))
    mne.read_epochs(epo, verbose=False)[:2].save(epo, overwrite=True, verbose=False)
    result = CliRunner().invoke(app, [str(bids), str(copy), "group", "--config", str(config)])
    assert result.exit_code == 65, result.output
    assert "sub-02 has 2 windows" in result.output


def test_force_in_one_fold_task_clears_that_fold_only(tmp_path):
    """`--fold 2 --force` in a job array must not delete its siblings' work."""
    from synaptech_bids.group.run import _clear

    work = tmp_path / "group"
    for k in (0, 1, 10):
        (work / "checkpoints" / "key" / f"synaptechnet_fold-{k}").mkdir(parents=True)
        (work / "folds" / "key").mkdir(parents=True, exist_ok=True)
        (work / "folds" / "key" / f"fold-{k}_scores.tsv").write_text("x")
    _clear(work, "key", fold=2)  # 1-based, as on the command line: fold index 1
    assert sorted(p.name for p in (work / "checkpoints" / "key").iterdir()) == [
        "synaptechnet_fold-0", "synaptechnet_fold-10"]
    assert sorted(p.name for p in (work / "folds" / "key").iterdir()) == [
        "fold-0_scores.tsv", "fold-10_scores.tsv"]
    _clear(work, "key", fold=None)
    assert not (work / "checkpoints").exists() and not (work / "folds").exists()


def test_group_report_states_every_departure_from_the_paper():
    assert "No departure" in network_text(Config())
    text = network_text(Config(synaptechnet_norm="batch", synaptechnet_input_skip=True,
                               synaptechnet_ensemble=3, weight_decay=1e-3))
    for part in ("batch instead of instance", "input skip", "mean of 3 networks",
                 "weight decay 0.001"):
        assert part in text


def test_report_says_how_spectral_weights_its_bands():
    files = {"01": "sub-01_fwd.fif"}
    each = lead_field_text(Config(translators=("spectral",), spectral_band_sources=True), files)
    shared = lead_field_text(Config(translators=("spectral",)), files)
    assert "one variance per kept cortical patch" in each
    assert "one weight per frequency band" in shared
    assert "spectral:" not in lead_field_text(Config(translators=("ridge",)), files)
