"""Tests of the information estimators against closed forms and simulations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from synaptech_bids.information import (
    best_lag,
    binned_mi,
    copnorm,
    fit_decay,
    gcmi_lagged,
    gcmi_mi,
    ksg_mi,
    max_stat_p_values,
    mi_distance_curve,
    mutual_information,
    surrogate_max_test,
    te_surrogate_test,
    transfer_entropy,
    transfer_entropy_pairs,
)

_BASELINE_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_per_pair_baseline.py"


def _load_baseline():
    spec = importlib.util.spec_from_file_location("_per_pair_baseline", _BASELINE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gauss_mi(rho: float) -> float:
    return -0.5 * np.log2(1.0 - rho**2)


def _correlated(rng, n, rho):
    a = rng.standard_normal(n)
    return a, rho * a + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)


def _ar1(rng, shape, phi=0.8):
    """Autocorrelated noise (as EEG/MEG are), via a first-order recursion."""
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], rng.standard_normal(shape), axis=-1)


# ----------------------------------------------------------------- GCMI ---


def test_copnorm_gives_normal_quantiles_in_rank_order():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(3, 501))
    c = copnorm(x)
    assert c.shape == x.shape
    # same order as the input, and exactly the normal quantiles
    np.testing.assert_array_equal(np.argsort(c, -1), np.argsort(x, -1))
    np.testing.assert_allclose(np.sort(c[0]), np.sort(c[1]))
    assert abs(c.mean()) < 1e-12
    # along another axis
    np.testing.assert_allclose(copnorm(x.T, axis=0), c.T)


def test_gcmi_matches_gaussian_closed_form():
    rng = np.random.default_rng(1)
    for rho in (0.2, 0.5, 0.8):
        a, b = _correlated(rng, 200_000, rho)
        mi, lags = gcmi_lagged(a[None], b[None], sfreq=100.0, lags=[0])
        assert lags.tolist() == [0]
        assert mi.shape == (1, 1, 1)
        # sampling SD of the estimate is < 0.003 bits at this n
        assert mi[0, 0, 0] == pytest.approx(_gauss_mi(rho), abs=0.01)
        assert gcmi_mi(a, b) == pytest.approx(mi[0, 0, 0], abs=1e-9)


def test_gcmi_is_invariant_to_monotonic_transforms():
    rng = np.random.default_rng(2)
    a, b = _correlated(rng, 5000, 0.6)
    mi1, _ = gcmi_lagged(a[None], b[None], 100.0, lags=[-2, 0, 2])
    mi2, _ = gcmi_lagged(np.exp(a)[None], (b**3)[None], 100.0, lags=[-2, 0, 2])
    np.testing.assert_allclose(mi1, mi2, atol=1e-12)


def test_bias_correction_centres_independent_mi_near_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 300))
    y = rng.standard_normal((20, 300))
    mi_c, _ = gcmi_lagged(x, y, 100.0, lags=[0], bias_correct=True)
    mi_r, _ = gcmi_lagged(x, y, 100.0, lags=[0], bias_correct=False)
    # plug-in MI of independent data is ~ 1/(2 n ln 2) bits too high
    assert mi_r.mean() > 0.5 / (2 * 300 * np.log(2))
    assert abs(mi_c.mean()) < abs(mi_r.mean()) / 3


@pytest.mark.parametrize("delay", [7, -4])
def test_best_lag_recovers_known_delay(delay):
    rng = np.random.default_rng(4)
    n = 4000
    src = _ar1(rng, n + 40, phi=0.5)
    eeg = src[20 : 20 + n] + 0.5 * rng.standard_normal(n)
    # meg(t) = src(t - delay): MEG lags EEG by `delay` samples
    meg = src[20 - delay : 20 - delay + n] + 0.5 * rng.standard_normal(n)
    mi, lags = gcmi_lagged(eeg[None], meg[None], sfreq=250.0, lags_s=(-0.05, 0.05))
    assert lags[0] == -12 and lags[-1] == 12  # 0.05 s * 250 Hz = 12.5 -> 12
    bmi, blag = best_lag(mi, lags)
    assert blag[0, 0] == delay
    assert bmi[0, 0] == mi.max()
    _, blag_s = best_lag(mi, lags / 250.0)
    assert blag_s[0, 0] == pytest.approx(delay / 250.0)


def test_vectorised_gcmi_equals_per_pair_baseline():
    base = _load_baseline()
    rng = np.random.default_rng(5)
    eeg = _ar1(rng, (4, 1500))
    meg = _ar1(rng, (5, 1500)) + 0.4 * eeg[[0, 1, 2, 3, 0]]
    lags = np.arange(-6, 7, 3)
    mi, _ = gcmi_lagged(eeg, meg, 250.0, lags=lags)
    ref = base.gcmi_per_pair(
        base.copnorm_numpy(eeg), base.copnorm_numpy(meg), lags, use_frites=False
    )
    np.testing.assert_allclose(mi.reshape(-1, lags.size), ref, atol=1e-6, rtol=0)


def test_epochs_concatenate_lagged_segments_within_epochs():
    base = _load_baseline()
    rng = np.random.default_rng(7)
    eeg = rng.standard_normal((6, 2, 80))
    meg = rng.standard_normal((6, 3, 80))
    meg[:, 0, 3:] += eeg[:, 1, :-3]  # within-epoch coupling at lag +3
    lags = np.array([-3, 0, 3])
    mi, _ = gcmi_lagged(eeg, meg, 100.0, lags=lags)
    assert mi.shape == (2, 3, 3)
    # copula-normalise each channel over all its samples, as gcmi_lagged does
    ceeg = copnorm(eeg.transpose(1, 0, 2).reshape(2, -1)).reshape(2, 6, 80)
    cmeg = copnorm(meg.transpose(1, 0, 2).reshape(3, -1)).reshape(3, 6, 80)
    ref = base.gcmi_per_pair(
        ceeg.transpose(1, 0, 2), cmeg.transpose(1, 0, 2), lags, use_frites=False
    )
    np.testing.assert_allclose(mi.reshape(-1, 3), ref, atol=1e-9)
    assert best_lag(mi, lags)[1][1, 0] == 3


def test_pairs_sharing_a_source_have_higher_mi():
    rng = np.random.default_rng(8)
    n, n_src = 5000, 4
    src = _ar1(rng, (n_src, n), phi=0.6)
    # each sensor sees mainly one source: sensor k <- source k % 4
    mix_e = np.eye(n_src)[np.arange(6) % n_src] + 0.05 * rng.standard_normal((6, n_src))
    mix_m = np.eye(n_src)[np.arange(8) % n_src] + 0.05 * rng.standard_normal((8, n_src))
    eeg = mix_e @ src + 1.0 * rng.standard_normal((6, n))
    meg = mix_m @ src + 1.0 * rng.standard_normal((8, n))
    mi, lags = gcmi_lagged(eeg, meg, 250.0, lags=np.arange(-3, 4))
    bmi, _ = best_lag(mi, lags)
    shared = (np.arange(6)[:, None] % n_src) == (np.arange(8)[None, :] % n_src)
    assert bmi[shared].min() > 5 * bmi[~shared].max()


def _toy_geometry(rng, n=3000, lam=0.03):
    """EEG and MEG sensors on a 2-D sheet; mixing weights decay with distance."""
    src_pos = rng.uniform(-0.1, 0.1, size=(40, 2))
    eeg_pos = rng.uniform(-0.08, 0.08, size=(8, 2))
    meg_pos = rng.uniform(-0.08, 0.08, size=(12, 2))
    src = _ar1(rng, (40, n), phi=0.5)

    def mix(pos):
        d = np.linalg.norm(pos[:, None] - src_pos[None], axis=-1)
        return np.exp(-d / lam)

    eeg = mix(eeg_pos) @ src + 0.3 * rng.standard_normal((8, n))
    meg = mix(meg_pos) @ src + 0.3 * rng.standard_normal((12, n))
    dist = np.linalg.norm(eeg_pos[:, None] - meg_pos[None], axis=-1)
    return eeg, meg, dist


def test_mi_falls_with_distance_and_distance_curve():
    rng = np.random.default_rng(9)
    eeg, meg, dist = _toy_geometry(rng)
    mi, lags = gcmi_lagged(eeg, meg, 250.0, lags=[-1, 0, 1])
    bmi, _ = best_lag(mi, lags)
    rho, _ = spearmanr(dist.ravel(), bmi.ravel())
    assert rho < -0.6
    curve = mi_distance_curve(bmi, dist, bins_cm=np.arange(0, 26, 2))
    assert curve["mean"].shape == (8, 12)
    assert curve["pooled_count"].sum() + curve["n_outside"] == bmi.size
    assert curve["count"].sum() == curve["pooled_count"].sum()
    filled = curve["pooled_count"] > 0
    pooled = curve["pooled_mean"][filled]
    assert spearmanr(curve["bin_centers_cm"][filled], pooled)[0] < -0.6
    # pooled mean of a bin is the mean of its pairs
    b = np.digitize(dist * 100, curve["bin_edges_cm"]) - 1
    k = int(np.flatnonzero(filled)[0])
    assert curve["pooled_mean"][k] == pytest.approx(bmi[b == k].mean())


def test_mi_distance_curve_validates_shapes():
    with pytest.raises(ValueError, match="same"):
        mi_distance_curve(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="increasing"):
        mi_distance_curve(np.zeros((2, 3)), np.zeros((2, 3)), bins_cm=[2, 1])


# ------------------------------------------------------------ surrogates ---


def test_fast_surrogates_equal_direct_recomputation():
    rng = np.random.default_rng(10)
    eeg = _ar1(rng, (3, 1200))
    meg = _ar1(rng, (4, 1200))
    lags = np.arange(-5, 6)
    res = surrogate_max_test(eeg, meg, 100.0, lags, n_surrogates=6, seed=3, min_shift_s=1.0)
    direct = [
        gcmi_lagged(eeg, np.roll(meg, int(s), axis=-1), 100.0, lags=lags)[0].max()
        for s in res["shifts"]
    ]
    np.testing.assert_allclose(res["null_max"], direct, rtol=0, atol=1e-10)
    assert np.all((res["shifts"] >= 100) & (res["shifts"] <= 1100))


def test_surrogates_detect_coupling_and_p_value_formula():
    rng = np.random.default_rng(11)
    eeg = _ar1(rng, (3, 3000))
    meg = _ar1(rng, (4, 3000))
    meg[2, 4:] += 0.5 * eeg[1, :-4]
    res = surrogate_max_test(eeg, meg, 250.0, lags_s=(-0.02, 0.02), n_surrogates=99)
    assert res["p_values"].shape == (3, 4)
    assert res["null_max"].shape == (99,)
    assert res["p_values"][1, 2] == pytest.approx(1 / 100)
    assert res["best_lag"][1, 2] == 4
    assert res["significant"].sum() == 1
    obs = res["best_mi"]
    expected = (1 + (res["null_max"][None, None, :] >= obs[..., None]).sum(-1)) / 100
    np.testing.assert_allclose(res["p_values"], expected)
    assert np.array_equal(res["significant"], obs > res["threshold"])


def test_max_stat_threshold_is_consistent_with_p_values():
    null = np.arange(1.0, 201.0)
    obs = np.array([190.0, 190.5, 191.0, 200.5])
    p, thr = max_stat_p_values(obs, null, alpha=0.05)
    assert np.array_equal(p <= 0.05, obs > thr)
    assert max_stat_p_values(obs, null[:5], alpha=0.05)[1] == np.inf


def test_surrogates_on_epochs():
    rng = np.random.default_rng(12)
    eeg = rng.standard_normal((20, 2, 100))
    meg = rng.standard_normal((20, 2, 100))
    meg[:, 1] += 0.8 * eeg[:, 0]
    res = surrogate_max_test(eeg, meg, 100.0, lags=[-1, 0, 1], n_surrogates=19, min_shift_s=1.0)
    assert res["significant"][0, 1] and res["significant"].sum() == 1


def test_false_positive_rate_of_independent_signals():
    """Family-wise rejection rate on independent data stays at alpha."""
    rng = np.random.default_rng(13)
    n_datasets, alpha = 200, 0.05
    rejections = 0
    for _ in range(n_datasets):
        eeg = _ar1(rng, (3, 600), phi=0.7)
        meg = _ar1(rng, (3, 600), phi=0.7)
        res = surrogate_max_test(
            eeg,
            meg,
            100.0,
            lags=np.arange(-3, 4),
            n_surrogates=39,
            seed=rng,
            min_shift_s=0.5,
            alpha=alpha,
        )
        rejections += bool(res["significant"].any())
    # binomial(200, 0.05): mean 10, SD 3.1; alpha + 0.05 is > 3 SD above
    assert rejections / n_datasets <= alpha + 0.05


def test_surrogate_rejects_too_small_min_shift():
    x = np.zeros((1, 1000)) + np.arange(1000)
    with pytest.raises(ValueError, match="min_shift"):
        surrogate_max_test(x, x, 100.0, lags=np.arange(-10, 11), min_shift_s=0.1)


# --------------------------------------------------------- other MI -------


def test_ksg_agrees_with_gaussian_closed_form():
    rng = np.random.default_rng(14)
    a, b = _correlated(rng, 3000, 0.7)
    assert ksg_mi(a, b, k=4) == pytest.approx(_gauss_mi(0.7), abs=0.05)
    c = rng.standard_normal(3000)
    assert abs(ksg_mi(a, c, k=4)) < 0.03


def test_mutual_information_dispatch():
    rng = np.random.default_rng(15)
    a, b = _correlated(rng, 3000, 0.6)
    truth = _gauss_mi(0.6)
    for method in ("gcmi", "ksg", "binned"):
        assert mutual_information(a, b, method=method) == pytest.approx(truth, abs=0.06)
    assert binned_mi(a, b, n_bins=8) > 0
    with pytest.raises(ValueError, match="unknown MI method"):
        mutual_information(a, b, method="nope")
    # multivariate GCMI: I((a, noise); b) equals I(a; b) within sampling error
    ab = np.c_[a, rng.standard_normal(3000)]
    assert gcmi_mi(ab, b) == pytest.approx(gcmi_mi(a, b), abs=0.01)


# ------------------------------------------------------- transfer entropy --


def _directed_pair(rng, n=3000, delay=3, coupling=0.5):
    """x drives y with a delay (and y has its own memory)."""
    x = _ar1(rng, n, phi=0.5)
    e = rng.standard_normal(n)
    y = e.copy()  # no exact ties (zeros) at the start: copnorm ranks ties
    for t in range(delay, n):
        y[t] = 0.4 * y[t - 1] + coupling * x[t - delay] + e[t]
    return x, y


def test_te_detects_direction_of_coupling():
    rng = np.random.default_rng(16)
    x, y = _directed_pair(rng)
    eeg = np.vstack([x, _ar1(rng, 3000)])
    meg = np.vstack([_ar1(rng, 3000), y])
    pairs = [(0, 1), (1, 0)]
    res = te_surrogate_test(eeg, meg, pairs, sfreq=250.0, history=4, n_surrogates=49)
    assert res["te_eeg_to_meg"][0] > 5 * max(res["te_meg_to_eeg"][0], 1e-3)
    assert res["p_eeg_to_meg"][0] == pytest.approx(1 / 50)
    assert res["p_meg_to_eeg"][0] > 0.05
    assert res["p_eeg_to_meg"][1] > 0.05 and res["p_meg_to_eeg"][1] > 0.05
    te_f, te_b = transfer_entropy_pairs(eeg, meg, pairs, history=4)
    np.testing.assert_allclose(te_f, res["te_eeg_to_meg"])
    np.testing.assert_allclose(te_b, res["te_meg_to_eeg"])


def test_te_equals_half_granger_log_ratio():
    rng = np.random.default_rng(17)
    x, y = _directed_pair(rng, n=1500)
    p, delay = 3, 2
    t0 = max(p, delay + p - 1)
    t = np.arange(t0, x.size)
    restricted = np.column_stack([np.ones(t.size)] + [y[t - k] for k in range(1, p + 1)])
    full = np.column_stack([restricted] + [x[t - delay - k] for k in range(p)])

    def rss(design):
        beta = np.linalg.lstsq(design, y[t], rcond=None)[0]
        r = y[t] - design @ beta
        return r @ r

    granger = 0.5 * np.log2(rss(restricted) / rss(full))
    te = transfer_entropy(x, y, p, delay=delay, copula=False, bias_correct=False)
    assert te == pytest.approx(granger, rel=1e-9)


def test_te_surrogates_equal_direct_recomputation():
    rng = np.random.default_rng(18)
    x, y = _directed_pair(rng, n=800)
    res = te_surrogate_test(
        x[None], y[None], [(0, 0)], sfreq=100.0, history=2, n_surrogates=4, seed=1
    )
    direct = []
    for s in res["shifts"]:
        f = transfer_entropy(np.roll(x, int(s)), y, 2)
        b = transfer_entropy(np.roll(y, int(s)), x, 2)
        direct.append(max(f, b))
    np.testing.assert_allclose(res["null_max"], direct, atol=1e-10)


# ------------------------------------------------------------ decay fits --


def test_fit_decay_picks_the_generating_model():
    rng = np.random.default_rng(19)
    d = np.linspace(1.0, 20.0, 20)
    y_exp = 0.1 * np.exp(-d / 3.0) + 0.01 + rng.normal(0, 0.001, d.size)
    y_pow = 0.2 * d**-1.5 + rng.normal(0, 0.001, d.size)
    fe, fp = fit_decay(d, y_exp), fit_decay(d, y_pow)
    assert fe["best"] == "exponential"
    assert fe["exponential"]["lambda"] == pytest.approx(3.0, rel=0.15)
    assert fp["best"] == "power_law"
    assert fp["power_law"]["b"] == pytest.approx(1.5, rel=0.1)
    assert fp["power_law"]["r2"] > 0.95
