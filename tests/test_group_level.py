"""The group level end to end, as users run it: simulate → participant → group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from synaptech_bids.cli import app
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
"""


@pytest.fixture(scope="module")
def group_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("group")
    bids = simulate_dataset(base / "bids", n_subjects=3, n_runs=1, duration=30.0, seed=3,
                            sfreq=500.0)
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


def test_final_models_translate_eeg(group_run):
    _, out, _ = group_run
    for name in ("physics", "ridge", "synaptechnet"):
        model = load_translator(out / "group" / "models" / f"desc-{name}_model")
        assert model.name == name


def test_rerun_resumes_and_gives_the_same_scores(group_run):
    bids, out, config = group_run
    before = (out / "group" / "desc-translation_scores.tsv").read_text()
    checkpoints = sorted(p.name for p in (out / "work" / "group" / "checkpoints").iterdir())
    assert checkpoints == ["synaptechnet_final", "synaptechnet_fold-0", "synaptechnet_fold-1",
                           "synaptechnet_fold-2"]
    result = CliRunner().invoke(app, [str(bids), str(out), "group", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (out / "group" / "desc-translation_scores.tsv").read_text() == before


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
