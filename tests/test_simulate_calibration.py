"""Calibration of the simulator against a real EEG + MEG covariance (issue 6).

The real covariance (``../shared/data/real/sample_audvis_trunc-cov.fif``) is
read from the shared data; it is never copied into the project. The
simulated statistics are estimated as the real ones were (29 baseline
windows, ``calibration.baseline_statistics``) and compared, medians over
draws and subjects, with the issue's tolerances; the population statistics
come analytically from the simulator's truth (see
``synaptech_bids.simulate.calibration``), and the analytic covariance is
itself checked against the covariance of a simulated recording.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from synaptech_bids.simulate import calibration as cal
from synaptech_bids.simulate import load_truth, simulate_dataset, source_variance_share

REPO = Path(__file__).resolve().parents[1]
REAL_COV = REPO / cal.REAL_COV
SIM = dict(seed=3, duration=40.0, sfreq=300.0)


def test_real_statistics_reproduce_the_issue() -> None:
    real = cal.real_statistics(REAL_COV)
    assert real["n_eeg"] == 60 and real["n_mag"] == 102
    assert real["eeg_counts"] == [3, 15, 34]
    assert real["mag_counts"] == [2, 12, 51]
    assert real["predictable_share"] == pytest.approx(0.295, abs=0.005)


def test_statistics_of_a_known_covariance() -> None:
    # EEG and magnetometers driven by one shared source plus independent
    # noise of equal total power: half of the magnetometer variance is
    # predictable from the EEG (population covariance, no estimation).
    rng = np.random.default_rng(0)
    names = [f"MEG{k:03d}1" for k in range(1, 21)] + [f"EEG{k:03d}" for k in range(1, 11)]
    a = rng.standard_normal(30)
    a[20:] -= a[20:].mean()  # survive the average reference
    mag_noise = np.sum(a[:20] ** 2) / 20  # per channel: equal to the shared power
    cov = np.outer(a, a) + np.diag(np.r_[np.full(20, mag_noise), np.full(10, 1e-9)])
    stats = cal.calibration_statistics(cov, names)
    assert stats["predictable_share"] == pytest.approx(0.5, abs=1e-6)
    assert stats["eeg_counts"][0] == 1


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib") / "bids"
    return simulate_dataset(
        root, n_subjects=1, n_runs=1, evoked=False, artifacts=False, save_leadfield=False, **SIM
    )


def test_analytic_covariance_matches_a_recording(recording: Path) -> None:
    cov, names = cal.simulated_covariance(band=None, artifacts=False, **SIM)
    truth = load_truth(recording, 1, 1)
    raw = mne.io.read_raw_fif(
        recording / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif",
        verbose=False,
    )
    types = truth["meta"]["TrueChannelTypes"]
    for kind in ("mag", "grad", "eeg"):
        picks = [n for n, t in zip(truth["ch_names"], types) if t == kind]
        idx = [names.index(n) for n in picks]
        data = raw.get_data(picks=picks)
        emp = np.cov(data)
        ana = cov[np.ix_(idx, idx)]
        ratio = np.diag(emp) / np.diag(ana)
        # 40 s of 1/f and alpha activity: channel variances within ~15 %.
        assert 0.85 < np.median(ratio) < 1.15, (kind, np.median(ratio))
        off = ~np.eye(len(idx), dtype=bool)
        assert np.corrcoef(emp[off], ana[off])[0, 1] > 0.9, kind


def test_source_variance_share_is_the_brain_share(recording: Path) -> None:
    share = source_variance_share(recording, "01")
    assert share == source_variance_share(recording, 1, run=1)  # the only run
    mags = [k for k in share if k != "mean"]
    assert len(mags) == 102 and all(0.0 < share[k] < 1.0 for k in mags)
    brain, names = cal.simulated_covariance(band=None, artifacts=False, noise=False, **SIM)
    total, _ = cal.simulated_covariance(band=None, artifacts=False, **SIM)
    idx = [names.index(k) for k in mags]
    expected = np.diag(brain)[idx] / np.diag(total)[idx]
    got = np.array([share[k] for k in mags])
    assert share["mean"] == pytest.approx(got.mean())
    assert abs(got.mean() - expected.mean()) < 0.05
    assert np.corrcoef(got, expected)[0, 1] > 0.9


def test_source_variance_share_without_noise_is_one(tmp_path: Path) -> None:
    root = simulate_dataset(
        tmp_path / "bids",
        n_subjects=1,
        n_runs=1,
        duration=10.0,
        sfreq=200.0,
        artifacts=False,
        line_noise=False,
        sensor_noise=False,
        save_leadfield=False,
    )
    share = source_variance_share(root, 1, l_freq=1.0, h_freq=40.0)
    assert share["mean"] == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------
# simulated vs real, side by side (the issue's tolerances)

_SUBJECTS = (1, 2, 3)


@pytest.fixture(scope="module")
def comparison() -> dict:
    """Real statistics and, per simulated subject, the median over baselines
    estimated as the real file was (``calibration.baseline_statistics``)."""
    real = cal.real_statistics(REAL_COV)
    draws = [cal.baseline_statistics(REAL_COV, subject=s) for s in _SUBJECTS]
    population = [cal.simulated_statistics(REAL_COV, subject=s) for s in _SUBJECTS]
    cols = {"real": real}
    for s, d, pop in zip(_SUBJECTS, draws, population):
        cols[f"sub-{s:02d}"] = {
            k: np.median([x[k] for x in d], axis=0).tolist() for k in d[0] if k != "n_eeg"
        }
        cols[f"sub-{s:02d} population"] = pop
    print("\n" + cal.statistics_table(cols).to_string())  # shown with pytest -s
    return {"real": real, "draws": draws, "population": population}


def _median(comparison: dict, key: str, i: int | None = None) -> float:
    values = [x[key] if i is None else x[key][i] for d in comparison["draws"] for x in d]
    return float(np.median(values))


def test_baseline_estimate_is_biased_like_the_real_one(comparison: dict) -> None:
    # 29 windows of 200 ms: the in-sample share of so small an estimate is
    # far above the population share of the same world (0.04-0.06, its room
    # field included).
    for d, pop in zip(comparison["draws"], comparison["population"]):
        shares = [x["predictable_share"] for x in d]
        assert min(shares) > pop["predictable_share"] + 0.05, (shares, pop)
        # Each window's mean is removed: a high-pass that takes away the slow
        # part of the 1/f activity and of the room's field.
        assert np.mean([x["mag_rms"] for x in d]) < pop["mag_rms"]


@pytest.mark.parametrize(
    "key, i",
    [
        pytest.param("eeg_counts", 0, id="eeg50"),
        pytest.param("eeg_counts", 1, id="eeg90"),
        pytest.param("eeg_counts", 2, id="eeg99"),
        pytest.param("mag_counts", 0, id="mag50"),
        pytest.param("mag_counts", 1, id="mag90"),
        pytest.param("mag_counts", 2, id="mag99"),
    ],
)
def test_component_counts_match_real(comparison: dict, key: str, i: int) -> None:
    real = comparison["real"][key][i]
    sim = _median(comparison, key, i)
    assert abs(sim - real) <= cal.TOLERANCE_COUNTS * real, (key, i, sim, real)


def test_predictable_share_matches_real(comparison: dict) -> None:
    real = comparison["real"]["predictable_share"]
    sim = _median(comparison, "predictable_share")
    assert abs(sim - real) <= cal.TOLERANCE_SHARE, (sim, real)


def test_baselines_pass_the_real_rejection(comparison: dict) -> None:
    # The real windows passed a 40 uV peak-to-peak EEG rejection (and 4 pT,
    # 2000 fT/cm on MEG, projected); most simulated windows must too (with the
    # earlier ongoing amplitudes, three times these, none did).
    assert _median(comparison, "kept") >= 0.5
