"""The BIDS-App contract: arguments, options and a one-line error for each bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from synaptech_bids import __version__
from synaptech_bids.cli import MultiValueCommand, app, default_n_threads
from synaptech_bids.errors import ExitCode


def _fake_bids(root: Path, subjects=("01", "02")) -> Path:
    """A minimal valid BIDS tree (no data): enough for argument checks."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "fake", "BIDSVersion": "1.9.0"})
    )
    (root / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{s}\n" for s in subjects)
    )
    for s in subjects:
        (root / f"sub-{s}" / "ses-meg" / "meg").mkdir(parents=True)
    (root / "sub-emptyroom").mkdir()
    return root


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def fake_bids(tmp_path):
    return _fake_bids(tmp_path / "bids")


def test_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for option in ("--participant-label", "--skip-bids-validator", "--work-dir",
                   "--n-jobs", "--omp-nthreads", "--config", "--seed", "--device",
                   "--verbose", "--version", "--session-label", "--task"):
        assert option in result.output
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_participant_labels_space_separated():
    """``--participant-label 01 sub-02`` becomes repeated flags before parsing."""
    cmd = MultiValueCommand(
        "x", params=app.params, callback=lambda **kw: kw
    )
    ctx = cmd.make_context("x", ["in", "out", "participant", "--participant-label",
                                 "01", "sub-02", "--seed", "3", "--task", "a", "b"])
    assert ctx.params["participant_labels"] == ("01", "sub-02")
    assert ctx.params["tasks"] == ("a", "b")
    assert ctx.params["seed"] == 3
    ctx = cmd.make_context("x", ["in", "out", "group", "--participant-label", "01",
                                 "--participant-label", "02"])
    assert ctx.params["participant_labels"] == ("01", "02")


def test_not_a_directory(tmp_path):
    result = invoke(tmp_path / "missing", tmp_path / "out", "participant")
    assert result.exit_code == ExitCode.NO_INPUT
    assert "is not a directory" in result.output
    assert not (tmp_path / "out").exists()


def test_not_bids(tmp_path):
    (tmp_path / "notbids").mkdir()
    result = invoke(tmp_path / "notbids", tmp_path / "out", "participant")
    assert result.exit_code == ExitCode.VALIDATION_FAILED
    assert "not a BIDS dataset" in result.output
    assert not (tmp_path / "out").exists()


def test_validator_rejects_misnamed_files(fake_bids, tmp_path):
    (fake_bids / "sub-01" / "ses-meg" / "meg" / "recording.fif").write_bytes(b"")
    result = invoke(fake_bids, tmp_path / "out", "participant")
    assert result.exit_code == ExitCode.VALIDATION_FAILED
    assert "recording.fif" in result.output
    # The same dataset passes the argument checks with the validator off
    # (and then fails later, for lack of runs, with its own code).
    result = invoke(fake_bids, tmp_path / "out", "participant", "--skip-bids-validator")
    assert result.exit_code == ExitCode.NOTHING_SELECTED


def test_unknown_level(fake_bids, tmp_path):
    result = invoke(fake_bids, tmp_path / "out", "subject")
    assert result.exit_code == ExitCode.UNKNOWN_LEVEL
    assert "unknown analysis level" in result.output


def test_unknown_labels(fake_bids, tmp_path):
    result = invoke(fake_bids, tmp_path / "out", "participant",
                    "--participant-label", "01", "sub-99", "emptyroom")
    assert result.exit_code == ExitCode.NOTHING_SELECTED
    assert "99" in result.output and "emptyroom" in result.output
    assert "01," not in result.output.split("available")[0]
    assert not (tmp_path / "out").exists()


def test_output_inside_bids_dir(fake_bids):
    result = invoke(fake_bids, fake_bids / "out", "participant")
    assert result.exit_code == ExitCode.USAGE
    assert "inside BIDS_DIR" in result.output
    assert not (fake_bids / "out").exists()


def test_output_in_derivatives_is_allowed(fake_bids):
    # Passes the output check, then stops for lack of runs (exit 18, not 64).
    result = invoke(fake_bids, fake_bids / "derivatives" / "synaptech", "participant")
    assert result.exit_code == ExitCode.NOTHING_SELECTED, result.output


def test_output_under_a_file(fake_bids, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke(fake_bids, blocker / "out", "participant")
    assert result.exit_code == ExitCode.CANNOT_CREATE_OUTPUT
    assert "cannot write to OUTPUT_DIR" in result.output


def test_bad_config(fake_bids, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("l_freqq = 1.0\n")
    result = invoke(fake_bids, tmp_path / "out", "participant", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    assert "l_freqq" in result.output
    config.write_text("l_freq = 50.0\nh_freq = 40.0\n")
    result = invoke(fake_bids, tmp_path / "out", "participant", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    assert "l_freq < h_freq" in result.output


def test_bad_option_value_is_usage_error(fake_bids, tmp_path):
    result = invoke(fake_bids, tmp_path / "out", "participant", "--n-jobs", "0")
    assert result.exit_code == ExitCode.USAGE


def test_default_threads_follow_slurm(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert default_n_threads() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "100000")
    assert default_n_threads() <= (os.cpu_count() or 1)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert 1 <= default_n_threads() <= (os.cpu_count() or 1)


def _console_script() -> str:
    script = Path(sys.executable).parent / "synaptech-bids"
    assert script.exists(), "the console script is not installed (pip install -e .)"
    return str(script)


def test_subprocess_errors_are_one_line(fake_bids, tmp_path):
    """As a real process: one line on stderr, the code, nothing on stdout."""
    proc = subprocess.run(
        [_console_script(), str(fake_bids), str(tmp_path / "out"), "participant",
         "--participant-label", "42"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == ExitCode.NOTHING_SELECTED
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synaptech-bids: error:")
    assert "Traceback" not in proc.stderr


def test_unwritable_output_as_unprivileged_user(fake_bids, tmp_path):
    """Tests run as root, where chmod does not deny writes: drop privileges."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    # The unprivileged user must reach the dataset (pytest's folders are 0700).
    for folder in (tmp_path, *tmp_path.parents[:-1]):
        os.chmod(folder, os.stat(folder).st_mode | 0o005)
    cmd = [_console_script(), str(fake_bids), str(locked / "out"), "participant"]
    if os.geteuid() == 0:
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == ExitCode.CANNOT_CREATE_OUTPUT, proc.stderr
    assert "cannot write to OUTPUT_DIR" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
