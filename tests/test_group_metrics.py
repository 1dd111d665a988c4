"""Scores, references and folds of the group evaluation, against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from synaptech_bids.group import metrics
from synaptech_bids.group.evaluate import folds, summarise


def _rng():
    return np.random.default_rng(0)


def test_r2_closed_forms():
    rng = _rng()
    y = rng.standard_normal((10, 3, 200))
    assert np.allclose(metrics.r2_per_channel(y, y), 1.0)
    mean = y.mean(axis=(0, 2), keepdims=True)
    assert np.allclose(metrics.r2_per_channel(y, np.broadcast_to(mean, y.shape)), 0.0)
    # Adding independent noise of equal variance to a perfect prediction: R² ≈ 0,
    # and r ≈ 1/sqrt(2).
    noisy = y + rng.standard_normal(y.shape)
    assert np.allclose(metrics.r2_per_channel(y, noisy), 0.0, atol=0.05)
    assert np.allclose(metrics.pearson_per_channel(y, noisy), 1 / np.sqrt(2), atol=0.03)
    assert np.allclose(metrics.mse_per_channel(y, noisy), 1.0, atol=0.05)


def test_band_r2_separates_bands():
    sfreq = 250.0
    t = np.arange(1000) / sfreq
    alpha = np.sin(2 * np.pi * 10 * t)
    gamma = np.sin(2 * np.pi * 60 * t)
    y = (alpha + gamma)[None, None, :]
    pred = alpha[None, None, :]  # right in alpha, silent in gamma
    scores = metrics.band_r2(y, pred, sfreq)
    assert scores["alpha"][0] > 0.95
    assert scores["gamma"][0] < 0.05


def test_within_subject_optimum_recovers_linear_map():
    rng = _rng()
    eeg = rng.standard_normal((20, 8, 100))
    weights = rng.standard_normal((8, 4))
    meg = np.einsum("ec,wet->wct", weights, eeg)
    assert np.allclose(metrics.within_subject_optimum(eeg, meg), 1.0)
    # Half of the MEG variance unpredictable: the optimum is about 0.5.
    signal_var = meg.var(axis=(0, 2), keepdims=True)
    noisy = meg + rng.standard_normal(meg.shape) * np.sqrt(signal_var)
    assert np.allclose(metrics.within_subject_optimum(eeg, noisy), 0.5, atol=0.06)


def test_within_subject_optimum_matches_the_simulators_truth():
    # On a simulated subject (its folded cortex, networks, background and
    # sensor noise), the optimum estimated from 2 minutes of windows agrees
    # with the population optimum from the simulator's true covariance.
    from synaptech_bids.simulate.arrays import simulate_subject_arrays

    (subject,) = simulate_subject_arrays(0.0, 1, seed=3, n_windows=60, oracle=True)
    estimated = metrics.within_subject_optimum(subject["eeg"], subject["meg"])
    truth = subject["optimum_r2"]
    assert 0.1 < truth.mean() < 0.6
    assert abs(estimated.mean() - truth.mean()) < 0.03, (estimated.mean(), truth.mean())
    assert np.corrcoef(estimated, truth)[0, 1] > 0.9


def test_evoked_fidelity():
    rng = _rng()
    y = rng.standard_normal((6, 3, 50))
    conditions = np.array(["a", "a", "a", "b", "b", "b"])
    assert metrics.evoked_fidelity(y, y, conditions) == pytest.approx({"a": 1.0, "b": 1.0})


def test_folds_hold_out_whole_subjects():
    subjects = [f"{i:02d}" for i in range(1, 8)]
    out = folds(subjects, n_folds=3)
    assert len(out) == 3
    held_out = [s for _, test in out for s in test]
    assert sorted(held_out) == subjects  # each subject held out exactly once
    for train, test in out:
        assert not set(train) & set(test)
    assert len(folds(subjects[:3], n_folds=5)) == 3  # leave-one-out


def test_summary_share_of_optimum():
    import pandas as pd

    scores = pd.DataFrame({
        "model": ["m"] * 4, "subject": ["1", "1", "2", "2"],
        "r2": [0.2, 0.2, 0.3, 0.3], "pearson_r": [0.5] * 4,
        "within_subject_optimum_r2": [0.4, 0.4, 0.6, 0.6],
    })
    row = summarise(scores).iloc[0]
    assert row.share_of_optimum_mean == pytest.approx(0.5)
    assert row.r2_mean == pytest.approx(0.25)
    assert row.n_subjects == 2
