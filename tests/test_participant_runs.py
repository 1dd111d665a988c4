"""A subject with several runs: heads and EOG projectors differ between runs."""

from __future__ import annotations

import json

from click.testing import CliRunner

from synaptech_bids.cli import app
from synaptech_bids.simulate import simulate_dataset


def test_two_runs_with_their_own_projectors(tmp_path):
    bids = simulate_dataset(tmp_path / "bids", n_subjects=1, n_runs=2, duration=30.0, seed=4,
                            sfreq=500.0)
    config = tmp_path / "config.toml"
    config.write_text("l_freq = 1.0\nn_surrogates = 20\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(bids), str(out), "participant", "--config",
                                      str(config)])
    assert result.exit_code == 0, result.output
    logs = sorted(out.rglob("*desc-preproc_log.json"))
    assert len(logs) == 2
    for log in logs:
        assert json.loads(log.read_text())["ICA"]["MEG"]["EOGProjectors"] == 2
    assert (out / "sub-01.html").stat().st_size > 10_000
