"""Translatability: the estimates against closed-form truths and the simulator's truth."""

from __future__ import annotations

import math
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, lfilter, sosfiltfilt
from threadpoolctl import threadpool_limits

from synaptech_bids.information.gcmi import gcmi_mi
from synaptech_bids.information.translatability import (
    _principal_components,
    linear_optimum_cv,
    multivariate_gcmi,
    predictable_share,
    share_from_mi,
    translatability,
)
from synaptech_bids.participant._07_translatability import (
    COLUMNS,
    group_table,
    run_translatability,
    subject_headlines,
    write_translatability,
)
from synaptech_bids.simulate import load_truth, simulate_dataset

SFREQ = 250.0


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # the estimators do small (n_eeg x n_eeg) algebra: BLAS threads only
    # contend on a loaded 2-core CI machine (60x slower there), never help
    with threadpool_limits(1):
        yield


def _ar1(rng: np.random.Generator, n_rows: int, n: int, phi: float = 0.9) -> np.ndarray:
    """Autocorrelated unit-variance noise: samples are not independent, as in M/EEG."""
    return lfilter([math.sqrt(1 - phi**2)], [1, -phi], rng.standard_normal((n_rows, n)), axis=1)


def _lead_field_world(seed: int = 0, n: int = 20000) -> dict:
    """More sources than electrodes, known lead fields, sensor noise: exact truth."""
    rng = np.random.default_rng(seed)
    n_src, n_eeg, n_meg = 300, 60, 102
    # a steep source spectrum: a few strong sources, many weak ones (as real data)
    src_sd = 3.0 * np.exp(-np.arange(n_src) / 20.0) + 0.5
    a_eeg = rng.standard_normal((n_eeg, n_src))
    a_meg = rng.standard_normal((n_meg, n_src)) * rng.uniform(0.3, 2.0, (n_meg, 1))
    noise_eeg, noise_meg = 1.0, 1.5
    sources = src_sd[:, None] * _ar1(rng, n_src, n)
    eeg = a_eeg @ sources + noise_eeg * _ar1(rng, n_eeg, n, 0.5)
    meg = a_meg @ sources + noise_meg * rng.standard_normal((n_meg, n))
    c_src = np.diag(src_sd**2)
    truth = predictable_share(
        a_eeg @ c_src @ a_eeg.T + noise_eeg**2 * np.eye(n_eeg),
        a_meg @ c_src @ a_eeg.T,
        a_meg @ c_src @ a_meg.T + noise_meg**2 * np.eye(n_meg),
    )
    # SI-like units: the estimate must not depend on them
    return {"eeg": 1e-6 * eeg, "meg": 1e-13 * meg, "truth": truth}


def test_cv_optimum_matches_population_optimum():
    world = _lead_field_world()
    truth = world["truth"]
    # a case where the answer is neither trivial nor zero
    assert 0.2 < truth["r2_overall"] < 0.8, truth["r2_overall"]
    res = linear_optimum_cv(world["eeg"], world["meg"], n_folds=5)
    assert abs(res["r2_overall"] - truth["r2_overall"]) < 0.05
    # per channel: estimation noise of a few minutes of autocorrelated data
    assert np.mean(np.abs(res["r2"] - truth["r2"])) < 0.03
    assert np.max(np.abs(res["r2"] - truth["r2"])) < 0.12
    # the overall share is the variance-weighted mean of the channel R²
    np.testing.assert_allclose(
        res["r2_overall"], np.sum(res["variance"] * res["r2"]) / res["variance"].sum())
    mi = multivariate_gcmi(world["eeg"], world["meg"])
    gaussian = share_from_mi(mi["mi"])
    weighted = np.sum(res["variance"] * gaussian) / res["variance"].sum()
    assert abs(weighted - truth["r2_overall"]) < 0.05


def test_pure_noise_predicts_nothing():
    rng = np.random.default_rng(1)
    n = 20000
    eeg, meg = _ar1(rng, 60, n), _ar1(rng, 102, n, 0.7)
    res = translatability(eeg, meg, SFREQ)
    assert abs(res["r2_overall"]) <= 0.02
    assert np.all(res["r2"] <= 0.02)
    for band, value in res["r2_bands_overall"].items():
        assert abs(value) <= 0.02, band
    # in-sample MI on autocorrelated noise: a small positive bias, no more
    assert abs(np.mean(res["mi"])) < 0.01
    assert np.max(res["mi"]) < 0.03


def test_gaussian_mi_closed_form():
    rng = np.random.default_rng(2)
    n, rho = 40000, 0.6
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    mi = multivariate_gcmi(x[None], y[None])["mi"][0]
    assert abs(mi - (-0.5 * math.log2(1 - rho**2))) < 0.01
    # multivariate: y = a·x + noise with R² = 0.5 exactly in the population
    xs = rng.standard_normal((4, n))
    a = np.array([1.0, -0.5, 0.5, 0.0])
    ys = a @ xs + math.sqrt(a @ a) * rng.standard_normal(n)
    res = multivariate_gcmi(xs, ys[None])
    assert res["n_components"] == 4
    assert abs(res["mi"][0] - 0.5) < 0.01  # -1/2 log2(1 - 0.5) = 0.5 bit
    assert abs(share_from_mi(res["mi"])[0] - 0.5) < 0.01


def test_vectorised_mi_equals_gcmi_mi_and_handles_rank_deficiency():
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((8, 3000))
    eeg -= eeg.mean(axis=0)  # average reference: rank 7
    meg = rng.standard_normal((3, 3)) @ eeg[:3] + rng.standard_normal((3, 3000))
    res = multivariate_gcmi(eeg, meg)
    assert res["n_components"] == 7
    pcs = _principal_components(eeg, None)
    expected = [gcmi_mi(pcs.T, meg[j]) for j in range(3)]
    np.testing.assert_allclose(res["mi"], expected, rtol=1e-8)
    assert np.all(res["mi"] > 0.1)


def test_epochs_and_continuous_agree():
    world = _lead_field_world(seed=4, n=12000)
    eeg, meg = world["eeg"], world["meg"]
    cont = linear_optimum_cv(eeg, meg, n_folds=5)
    # 60 epochs of 200 samples: the 5 blocks fall on the same samples
    ep = linear_optimum_cv(_to_epochs(eeg, 200), _to_epochs(meg, 200), n_folds=5)
    np.testing.assert_allclose(ep["r2"], cont["r2"], rtol=1e-8)
    with pytest.raises(ValueError, match="share epochs"):
        linear_optimum_cv(eeg, meg[:, :-1])


def _to_epochs(x: np.ndarray, n_times: int) -> np.ndarray:
    return x.reshape(x.shape[0], -1, n_times).transpose(1, 0, 2)


def test_simulated_recording_matches_truth(tmp_path: Path):
    """The estimate on a simulated recording against the simulator's true sources."""
    root = simulate_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, duration=60.0,
                            seed=2, sfreq=SFREQ, artifacts=False, line_noise=False,
                            style="mne-bids")
    truth = load_truth(root, 1, 1)
    fif = next(root.rglob("*_meg.fif"))
    raw = mne.io.read_raw_fif(fif, preload=True, verbose=False)
    assert raw.ch_names == truth["ch_names"]
    types = np.asarray(truth["meta"]["TrueChannelTypes"])
    picks = np.r_[np.flatnonzero(types == "eeg"), np.flatnonzero(types == "mag")]
    n_eeg = int(np.sum(types == "eeg"))
    # the same linear filter on data and sources keeps data = mixing @ sources
    sos = butter(4, (1.0, 100.0), btype="bandpass", fs=SFREQ, output="sos")
    data = sosfiltfilt(sos, raw.get_data()[picks], axis=1)
    sources = sosfiltfilt(sos, np.asarray(truth["brain_timeseries"], float), axis=1)
    mixing = truth["brain_mixing"][picks]
    # population source covariance: the components are independent, except
    # the evoked ones, which are all time-locked to the same stimuli
    c_src = np.cov(sources)
    evoked = (truth["brain_components"]["kind"] == "evoked").to_numpy()
    c_pop = np.diag(np.diag(c_src))
    c_pop[np.ix_(evoked, evoked)] = c_src[np.ix_(evoked, evoked)]
    # sensor noise (the recording minus its brain part; the truth does not
    # store it) is independent between EEG and MEG
    c_noise = np.cov(data - mixing @ sources)
    c_noise[:n_eeg, n_eeg:] = c_noise[n_eeg:, :n_eeg] = 0.0
    cov = mixing @ c_pop @ mixing.T + c_noise
    true = predictable_share(cov[:n_eeg, :n_eeg], cov[n_eeg:, :n_eeg], cov[n_eeg:, n_eeg:])
    est = linear_optimum_cv(data[:n_eeg], data[n_eeg:], n_folds=5)
    assert abs(est["r2_overall"] - true["r2_overall"]) < 0.05, (est["r2_overall"], true)


def test_participant_step_tables(tmp_path: Path):
    world = _lead_field_world(seed=5, n=6000)
    n_eeg, n_meg = len(world["eeg"]), len(world["meg"])
    names = [f"EEG{i:03d}" for i in range(n_eeg)] + [f"MEG{i:04d}" for i in range(n_meg)]
    info = mne.create_info(names, SFREQ, ["eeg"] * n_eeg + ["mag"] * n_meg)
    raw = mne.io.RawArray(np.vstack([world["eeg"], world["meg"]]), info, verbose=False)
    raw.info["bads"] = ["EEG000", "MEG0000"]
    result = run_translatability(raw)
    table = result["table"]
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == n_meg - 1 and "MEG0000" not in set(table["meg_channel"])
    assert result["meta"]["Method"]["NEEGChannels"] == n_eeg - 1
    meg_dir = tmp_path / "sub-01" / "meg"
    meg_dir.mkdir(parents=True)
    write_translatability(
        result, meg_dir / "sub-01_task-x_run-01_desc-translatability_channels.tsv")
    head = subject_headlines(tmp_path, ["01", "02"])
    assert list(head["subject"]) == ["01"]
    assert head.loc[0, "r2_cv"] == pytest.approx(result["summary"]["r2_cv"])
    scores = pd.DataFrame({"model": ["ridge", "ridge"], "subject": ["01", "01"],
                           "r2": [0.1, 0.3], "within_subject_optimum_r2": [0.4, 0.6]})
    row = group_table(tmp_path, scores).iloc[0]
    assert row["held-out R² ridge"] == pytest.approx(0.2)
    assert row["translatability R² (share of variance)"] == pytest.approx(
        result["summary"]["r2_cv"])
