"""Damaged input data: a clear one-line error, exit 65, nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from synaptech_bids.errors import ExitCode
from synaptech_bids.simulate import simulate_dataset


def test_truncated_recording_fails_cleanly(tmp_path):
    bids = simulate_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, duration=5.0, seed=2,
                            sfreq=500.0)
    damaged = tmp_path / "damaged"
    shutil.copytree(bids, damaged)
    (fif,) = damaged.glob("sub-01/ses-meg/meg/*_meg.fif")
    os.truncate(fif, fif.stat().st_size // 2)
    out = tmp_path / "out"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "synaptech-bids"), str(damaged), str(out), "participant",
         "--skip-bids-validator"],
        capture_output=True, text=True,
    )
    assert result.returncode == ExitCode.BAD_DATA
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and fif.name in errors[0]
    assert not list(Path(out).rglob("*_epo.fif")), "outputs were half-written"
