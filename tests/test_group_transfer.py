"""Head-position distances between subjects and the transfer table."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from synaptech_bids.group.transfer import (
    head_distances_mm,
    magnetometer_positions_head,
    transfer_figure,
    transfer_table,
)

NAMES = ["MEG0111", "MEG0121", "MEG0131"]


def _info(shift_mm: tuple[float, float, float]) -> mne.Info:
    info = mne.create_info(NAMES, 250.0, "mag")
    for i, ch in enumerate(info["chs"]):
        ch["loc"][:3] = [0.01 * i, 0.02, 0.1]
    trans = np.eye(4)
    trans[:3, 3] = np.asarray(shift_mm) * 1e-3
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", trans)
    return info


def test_distance_is_the_head_shift_and_runs_are_averaged():
    positions = {
        "01": magnetometer_positions_head([_info((0, 0, 0))], NAMES),
        "02": magnetometer_positions_head([_info((3, 0, 0)), _info((5, 0, 0))], NAMES),
        "03": magnetometer_positions_head([_info((0, 0, -2))], NAMES),
    }
    distances = head_distances_mm(positions)
    assert distances.loc["01", "02"] == pytest.approx(4.0)
    assert distances.loc["01", "03"] == pytest.approx(2.0)
    assert distances.loc["02", "03"] == pytest.approx(np.hypot(4, 2))
    np.testing.assert_allclose(np.diag(distances), 0)


def test_transfer_table_uses_the_fold_training_subjects():
    distances = pd.DataFrame([[0, 4, 2], [4, 0, 5], [2, 5, 0]], index=["01", "02", "03"],
                             columns=["01", "02", "03"], dtype=float)
    scores = pd.DataFrame({
        "model": ["ridge"] * 6, "fold": [0, 0, 1, 1, 2, 2],
        "subject": ["01", "01", "02", "02", "03", "03"],
        "r2": [0.2, 0.4, 0.1, 0.1, -0.1, -0.1],
        "within_subject_optimum_r2": [0.6, 0.6, 0.2, 0.2, -0.05, -0.05],
    })
    table = transfer_table(scores, distances).set_index("subject")
    assert table.loc["01", "head_distance_mean_mm"] == pytest.approx(3.0)
    assert table.loc["01", "head_distance_nearest_mm"] == pytest.approx(2.0)
    assert table.loc["02", "head_distance_mean_mm"] == pytest.approx(4.5)
    assert table.loc["01", "share_of_optimum"] == pytest.approx(0.5)
    assert np.isnan(table.loc["03", "share_of_optimum"])  # no share of a negative optimum
    transfer_figure(table.reset_index())
