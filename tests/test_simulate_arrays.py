"""The transfer benchmark's worlds and its references from the simulator's truth."""

import numpy as np
import pytest

from synaptech_bids.simulate.arrays import simulate_subject_arrays, truth_filter
from synaptech_bids.translators import r2_per_channel


def _r2(subject, pred) -> float:
    return float(np.mean(r2_per_channel(subject["meg"], pred)))


def test_truth_filter_with_flat_spectra_is_the_instantaneous_optimum():
    """White time courses: every bin's Wiener map is the one instantaneous map,
    so the filter scores the population optimum (up to the windows' noise)."""
    (subject,) = simulate_subject_arrays(5.0, 1, seed=1, n_windows=40, oracle=True)
    spectra = subject["truth"]["spectra"]
    assert spectra.shape == (len(subject["truth"]["kinds"]), 251)
    assert np.mean(spectra) == pytest.approx(500, rel=0.05)  # n_times per bin
    r2 = _r2(subject, truth_filter(subject["truth"], subject["eeg"], shared_only=False))
    assert r2 == pytest.approx(float(np.mean(subject["optimum_r2"])), abs=0.03)


def test_truth_filter_uses_time_and_knowing_less_costs():
    """With the recordings' spectra (1/f, alpha, mu/beta, theta), which differ
    between components, the filter beats every instantaneous map (the
    population optimum is the best of those), and not knowing where the
    background lies costs it."""
    (rhythmic,) = simulate_subject_arrays(5.0, 1, seed=1, n_windows=40, oracle=True,
                                          spectra=True)
    full = _r2(rhythmic, truth_filter(rhythmic["truth"], rhythmic["eeg"], shared_only=False))
    shared = _r2(rhythmic, truth_filter(rhythmic["truth"], rhythmic["eeg"], shared_only=True))
    optimum = float(np.mean(rhythmic["optimum_r2"]))
    assert full > 1.1 * optimum
    assert shared < full - 0.03
