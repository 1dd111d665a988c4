"""Tests of the EEG-to-MEG translators (array level, no BIDS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from torch import nn

from synaptech_bids.translators import (
    TRANSLATORS,
    HybridTranslator,
    PhysicsTranslator,
    RidgeTranslator,
    SynaptechNet,
    SynaptechNetTranslator,
    Translator,
    get_translator,
    lead_fields_from_info,
    r2_per_channel,
    wiener_map,
)
from synaptech_bids.translators.ridge import lag_shift, lagged_design
from synaptech_bids.translators.synaptechnet import MorletCWT

torch.set_num_threads(1)

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
RAW_SSS = REAL / "sample_audvis_trunc_raw_sss.fif"


# ------------------------------------------------------------------ data
def lagged_world(seed=0, n_w=40, n_eeg=8, n_meg=5, n_t=50, lags=(-1, 0, 2), noise=0.0):
    """EEG -> MEG through a known lagged linear map, 8 subjects of 5 windows."""
    rng = np.random.default_rng(seed)
    eeg = rng.standard_normal((n_w, n_eeg, n_t))
    coef = rng.standard_normal((n_meg, n_eeg, len(lags)))
    meg = sum(
        np.einsum("me,wet->wmt", coef[:, :, i], lag_shift(eeg, lag)) for i, lag in enumerate(lags)
    )
    meg = meg + 0.3 + noise * rng.standard_normal(meg.shape)
    groups = np.repeat([f"s{i}" for i in range(8)], n_w // 8)
    return eeg, meg, groups, coef


def lowrank_world(seed=0, n_w=12, n_eeg=16, n_meg=24, n_src=60, rank=6, n_t=30):
    """Sources confined to a rank-``rank`` subspace with known prior covariance."""
    rng = np.random.default_rng(seed)
    l_eeg = rng.standard_normal((n_eeg, n_src))
    l_meg = rng.standard_normal((n_meg, n_src))
    basis = rng.standard_normal((n_src, rank))
    src = np.einsum("sk,wkt->wst", basis, rng.standard_normal((n_w, rank, n_t)))
    eeg = np.einsum("es,wst->wet", l_eeg, src)
    meg = np.einsum("ms,wst->wmt", l_meg, src)
    lf = {"L_eeg": l_eeg, "L_meg": l_meg, "source_cov": basis @ basis.T}
    return eeg, meg, lf


TINY = dict(
    channels=(8, 16),
    lstm_hidden=8,
    batch_size=4,
    max_epochs=3,
    patience=50,
    seed=3,
    device="cpu",
)


def tiny_net(**kw):
    return SynaptechNetTranslator(**(TINY | kw))


def net_data(seed=0, n_w=16, n_eeg=5, n_meg=4, n_t=24):
    rng = np.random.default_rng(seed)
    eeg = rng.standard_normal((n_w, n_eeg, n_t)).astype(np.float32)
    mix = rng.standard_normal((n_meg, n_eeg))
    meg = np.einsum("me,wet->wmt", mix, eeg).astype(np.float32)
    groups = np.repeat(["a", "b", "c", "d"], n_w // 4)
    return eeg, meg, groups


# ------------------------------------------------------------------ ridge
def test_ridge_recovers_known_lagged_map():
    eeg, meg, groups, coef = lagged_world()
    model = RidgeTranslator(lags=(-1, 0, 2)).fit(eeg, meg, groups)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, 0.3, atol=1e-4)
    test_eeg, test_meg, _, _ = lagged_world(seed=0)  # same map, reuse
    assert r2_per_channel(test_meg, model.predict(test_eeg)).min() > 0.9999


def test_ridge_noisy_map_good_out_of_sample():
    eeg, meg, groups, coef = lagged_world(noise=1.0, n_t=200)
    model = RidgeTranslator(lags=(-1, 0, 2)).fit(eeg, meg, groups)
    assert np.abs(model.coef_ - coef).max() < 0.1
    assert model.alpha_.shape == (5,) and model.cv_mse_.shape == (len(model.alphas), 5)


def test_ridge_cv_equals_brute_force():
    """The sufficient-statistics CV equals refitting sklearn Ridge per fold."""
    eeg, meg, groups, _ = lagged_world(noise=1.0)
    alphas = (1e-2, 1e-1, 1.0)
    lags = (0, 1)
    model = RidgeTranslator(lags=lags, alphas=alphas, cv=4).fit(eeg, meg, groups)
    x = lagged_design(eeg, lags)
    y = meg.transpose(0, 2, 1).reshape(-1, meg.shape[1])
    n_t = eeg.shape[2]

    def rows(ix):
        return (ix[:, None] * n_t + np.arange(n_t)).ravel()

    sse = np.zeros((len(alphas), meg.shape[1]))
    folds, _ = model._folds(len(eeg), groups)
    for val in folds:
        tr = np.setdiff1d(np.arange(len(eeg)), val)
        xt, yt = x[rows(tr)], y[rows(tr)]
        mu, sd = xt.mean(0), xt.std(0)
        for a, alpha in enumerate(alphas):
            ref = Ridge(alpha=alpha * len(xt)).fit((xt - mu) / sd, yt)
            sse[a] += ((ref.predict((x[rows(val)] - mu) / sd) - y[rows(val)]) ** 2).sum(0)
    np.testing.assert_allclose(model.cv_mse_, sse / len(x), rtol=1e-8)


def test_ridge_inner_cv_uses_only_given_groups():
    eeg, meg, groups, _ = lagged_world(noise=1.0)
    model = RidgeTranslator(cv=4).fit(eeg, meg, groups)
    held = [set(f) for f in model.cv_folds_]
    # the folds partition exactly the subjects given, whole subjects only
    assert set().union(*held) == set(groups)
    assert sum(len(f) for f in held) == len(set(groups))
    # merging two subjects under one label keeps them in the same fold
    merged = np.where(np.isin(groups, ["s0", "s1"]), "s01", groups)
    m2 = RidgeTranslator(cv=4).fit(eeg, meg, merged)
    assert any(f == ["s01"] or "s01" in f for f in m2.cv_folds_)
    assert not any("s0" in f or "s1" in f for f in m2.cv_folds_)
    # window order is irrelevant: folds follow the labels, not positions
    perm = np.random.default_rng(1).permutation(len(eeg))
    m3 = RidgeTranslator(cv=4).fit(eeg[perm], meg[perm], groups[perm])
    np.testing.assert_allclose(m3.cv_mse_, model.cv_mse_, rtol=1e-9)
    np.testing.assert_array_equal(m3.alpha_, model.alpha_)


def test_ridge_without_groups_warns_and_uses_blocks():
    eeg, meg, _, _ = lagged_world(noise=0.5)
    with pytest.warns(UserWarning, match="contiguous blocks"):
        model = RidgeTranslator(cv=3).fit(eeg, meg)
    assert all(f[0].startswith("block-") for f in model.cv_folds_)


# ---------------------------------------------------------------- physics
def test_physics_recovers_meg_in_lowrank_world():
    eeg, meg, lf = lowrank_world()
    model = PhysicsTranslator().fit(eeg, meg, geometry=lf)
    pred = model.predict(eeg, geometry=lf)
    assert np.abs(pred - meg).max() < 1e-4 * np.abs(meg).max()
    assert model.lambda_ == min(model.lambdas)  # noiseless: least regularised


def test_physics_identity_prior_determined_sources_and_reference():
    """n_src < n_eeg - 1: EEG determines the sources; any EEG reference works."""
    rng = np.random.default_rng(2)
    l_eeg, l_meg = rng.standard_normal((12, 5)), rng.standard_normal((9, 5))
    src = rng.standard_normal((4, 5, 20))
    eeg = np.einsum("es,wst->wet", l_eeg, src)
    meg = np.einsum("ms,wst->wmt", l_meg, src)
    eeg_ref = eeg - eeg[:, :1]  # referenced to channel 0: same information
    lf = {"L_eeg": l_eeg, "L_meg": l_meg}
    model = PhysicsTranslator(lambdas=1e-9)  # no fitting needed
    np.testing.assert_allclose(model.predict(eeg_ref, geometry=lf), meg, atol=1e-5)
    w = wiener_map(l_eeg, l_meg, 1e-9)
    np.testing.assert_allclose(w.sum(1), 0, atol=1e-6)  # average reference folded in


def test_physics_per_subject_geometry_and_lambda_choice():
    e1, m1, lf1 = lowrank_world(seed=1)
    e2, m2, lf2 = lowrank_world(seed=2)
    rng = np.random.default_rng(0)
    eeg = np.concatenate([e1, e2])
    eeg_noisy = eeg + 0.3 * eeg.std() * rng.standard_normal(eeg.shape)
    meg = np.concatenate([m1, m2])
    groups = np.repeat(["01", "02"], len(e1))
    geometry = {"01": lf1, "02": lf2}
    model = PhysicsTranslator().fit(eeg_noisy, meg, groups, geometry=geometry)
    assert model.cv_r2_.shape == (len(model.lambdas), 2)
    assert model.subjects_ == ["01", "02"]
    assert model.lambda_ > min(model.lambdas)  # noise calls for regularisation
    pred = model.predict(eeg, geometry={"lead_fields": geometry, "labels": groups})
    assert r2_per_channel(meg, pred).mean() > 0.95  # shrinkage tuned for noise
    with pytest.raises(ValueError, match="labels"):
        model.predict(eeg, geometry=geometry)


@pytest.mark.skipif(not RAW_SSS.exists(), reason="real sample data not available")
def test_lead_fields_from_info_real_sample():
    import mne

    info = mne.io.read_info(RAW_SSS, verbose=False)
    lf = lead_fields_from_info(info, grid_mm=25)
    n_eeg = len(mne.pick_types(info, meg=False, eeg=True, exclude="bads"))
    assert lf["L_eeg"].shape[0] == n_eeg and lf["L_meg"].shape[0] == 102
    assert lf["L_eeg"].shape[1] == lf["L_meg"].shape[1] == 3 * len(lf["src_pos"])
    # physics recovers MEG when activity lives in few sources with known prior
    rng = np.random.default_rng(0)
    active = rng.choice(lf["L_eeg"].shape[1], size=8, replace=False)
    prior = np.zeros(lf["L_eeg"].shape[1])
    prior[active] = 1.0
    src = np.zeros((3, prior.size, 40))
    src[:, active] = 1e-8 * rng.standard_normal((3, 8, 40))
    eeg = np.einsum("es,wst->wet", lf["L_eeg"], src)
    meg = np.einsum("ms,wst->wmt", lf["L_meg"], src)
    lf = dict(lf, source_cov=prior)
    pred = PhysicsTranslator(lambdas=1e-8).predict(eeg, geometry=lf)
    assert r2_per_channel(meg, pred).min() > 0.999


# ----------------------------------------------------------- synaptechnet
@pytest.mark.parametrize(
    ("n_eeg", "n_meg", "n_t"), [(1, 1, 1), (3, 7, 9), (74, 102, 33), (6, 2, 64)]
)
def test_synaptechnet_forward_shapes(n_eeg, n_meg, n_t):
    net = SynaptechNet(n_eeg, n_meg, channels=(4, 8, 8), lstm_hidden=4)
    with torch.no_grad():
        assert net(torch.randn(2, n_eeg, n_t)).shape == (2, n_meg, n_t)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, n_eeg, n_t)).shape == (1, n_meg, n_t)


@pytest.mark.parametrize("output", ["real", "complex", "abs"])
def test_synaptechnet_cwt_input(output):
    cwt = MorletCWT(100.0, np.geomspace(2, 40, 5), output=output)
    net = SynaptechNet(4, 3, channels=(4, 8), lstm_hidden=4, cwt=cwt)
    assert net(torch.randn(2, 4, 45)).shape == (2, 3, 45)
    # the real part of a unit-gain Morlet at f passes a sinusoid at f unchanged
    t = torch.arange(400) / 100.0
    sig = torch.sin(2 * np.pi * 10 * t)[None, None]
    band = MorletCWT(100.0, [10.0])(sig)[0, 0, 0]
    np.testing.assert_allclose(band[100:300].numpy(), sig[0, 0, 100:300].numpy(), atol=1e-3)


def test_synaptechnet_fast_cpu_paths_equal_the_plain_layers():
    """Group-norm instance norm, 1-D pooling and the matrix-product head are
    speed-ups only: the output equals that of the plain PyTorch layers."""
    torch.manual_seed(0)
    net = SynaptechNet(5, 3, channels=(4, 8), lstm_hidden=4).eval()
    x = torch.randn(3, 5, 21)

    def plain_forward(x):
        x = nn.functional.pad(x.unsqueeze(2), (0, 3))
        skips = []
        for block in net.enc:
            conv, norm, act = block
            plain_norm = nn.InstanceNorm2d(norm.num_features, affine=True)
            plain_norm.load_state_dict(norm.state_dict())
            x = act(plain_norm(conv(x)))
            skips.append(x)
            x = nn.MaxPool2d((1, 2))(x)
        b, c, f, t = x.shape
        out, _ = net.lstm(x.permute(0, 3, 1, 2).reshape(b, t, c * f))
        x = x + net.bridge_proj(out).reshape(b, t, c, f).permute(0, 2, 3, 1)
        for block, skip in zip(net.dec, reversed(skips)):
            up, norm, act = block
            plain_norm = nn.InstanceNorm2d(norm.num_features, affine=True)
            plain_norm.load_state_dict(norm.state_dict())
            x = torch.cat([act(plain_norm(up(x))), skip], dim=1)
        return net.head(x)[:, :, 0, :21]

    with torch.no_grad():
        torch.testing.assert_close(net(x), plain_forward(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cwt", [None, MorletCWT(100.0, [4.0, 9.0, 20.0], output="complex")])
def test_synaptechnet_instance_norm_is_blind_to_amplitude_and_the_input_skip_is_not(cwt):
    """With the paper's instance norm, a window three times as strong gives
    the same output (every map is normalised per window), so the network
    cannot scale MEG with EEG; the input skip hands the output layer the EEG
    itself. Either way the shapes follow the input."""
    x = torch.randn(2, 5, 40)
    outputs = {}
    for skip in (False, True):
        torch.manual_seed(0)
        net = SynaptechNet(5, 3, channels=(4, 8), lstm_hidden=4, cwt=cwt, input_skip=skip).eval()
        with torch.no_grad():
            outputs[skip] = net(x), net(3 * x)
        assert outputs[skip][0].shape == (2, 3, 40)

    def change(skip):  # relative to the output's size; norm's eps keeps it off exact 0
        before, after = outputs[skip]
        return float((after - before).abs().mean() / before.abs().mean())

    assert change(False) < 1e-3
    assert change(True) > 0.1


def test_synaptechnet_paper_size():
    n_par = sum(p.numel() for p in SynaptechNet(74, 102).parameters())
    tiny = sum(
        p.numel()
        for p in get_translator("synaptechnet", width=0.125).build_model(74, 102).parameters()
    )
    assert 5e6 < n_par < 5e7 and tiny < n_par / 20


def test_synaptechnet_overfits_tiny_batch():
    """The paper's architecture (instance norm) can memorise 4 windows."""
    eeg, meg, _ = net_data(n_w=4, n_t=32)
    model = tiny_net(dropout=0.0, lr=1e-2, max_epochs=60, val_fraction=0.0).fit(eeg, meg)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < 0.1 * losses[0]
    assert np.isnan(model.history_[0]["val_loss"]) and model.completed_


def test_synaptechnet_resume_is_identical(tmp_path):
    eeg, meg, groups = net_data()
    full = tiny_net(max_epochs=4, checkpoint_every_batches=1).fit(
        eeg, meg, groups, checkpoint_dir=tmp_path / "a"
    )
    part = tiny_net(max_epochs=4, checkpoint_every_batches=1).fit(
        eeg, meg, groups, checkpoint_dir=tmp_path / "b", stop_hook=lambda row: row["epoch"] >= 2
    )
    assert not part.completed_ and len(part.history_) == 2
    # a fresh process-like object resumes from the directory
    resumed = tiny_net(max_epochs=4, checkpoint_every_batches=1).fit(
        eeg, meg, groups, checkpoint_dir=tmp_path / "b"
    )
    assert resumed.completed_
    for (k, a), (_, b) in zip(
        full.model_.state_dict().items(), resumed.model_.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in full.history_]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.history_]
    # an uncheckpointed run with the same seed is the same run too
    plain = tiny_net(max_epochs=4).fit(eeg, meg, groups)
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.model_.state_dict().values(), full.model_.state_dict().values())
    )
    # a checkpoint is refused for other data
    with pytest.raises(ValueError, match="other data"):
        tiny_net(max_epochs=4, checkpoint_every_batches=1).fit(
            eeg * 2, meg, groups, checkpoint_dir=tmp_path / "b"
        )


def test_synaptechnet_ensemble_is_the_mean_of_networks_with_consecutive_seeds():
    eeg, meg, groups = net_data()
    # without output calibration: after 2 epochs its gains can be 0
    ensemble = tiny_net(max_epochs=2, n_ensemble=3, calibrate_output=False).fit(eeg, meg, groups)
    singles = [tiny_net(max_epochs=2, seed=TINY["seed"] + k, calibrate_output=False)
               .fit(eeg, meg, groups) for k in range(3)]
    np.testing.assert_allclose(ensemble.predict(eeg),
                               np.mean([m.predict(eeg) for m in singles], axis=0),
                               rtol=1e-5, atol=1e-6)
    # each member early-stops on its own validation subjects
    members = [ensemble, *ensemble.members_]
    assert [m.val_subjects_ for m in members] == [m.val_subjects_ for m in singles]
    assert len({tuple(m.val_subjects_) for m in members}) > 1
    assert sorted({row["member"] for row in ensemble.history_}) == [0, 1, 2]
    assert not np.allclose(singles[0].predict(eeg), singles[1].predict(eeg))


def test_synaptechnet_ensemble_resumes_inside_a_member(tmp_path):
    eeg, meg, groups = net_data()
    full = tiny_net(max_epochs=2, n_ensemble=2).fit(eeg, meg, groups)
    calls = []

    def stop_in_member_1(row):  # member 0 ends at epoch 2 without a call
        calls.append(row["epoch"])
        return len(calls) == 2

    part = tiny_net(max_epochs=2, n_ensemble=2).fit(eeg, meg, groups, checkpoint_dir=tmp_path,
                                                    stop_hook=stop_in_member_1)
    assert not part.completed_ and (tmp_path / "member-1").is_dir()
    resumed = tiny_net(max_epochs=2, n_ensemble=2).fit(eeg, meg, groups,
                                                       checkpoint_dir=tmp_path)
    assert resumed.completed_
    for a, b in zip(full.members_[0].model_.state_dict().values(),
                    resumed.members_[0].model_.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(full.predict(eeg), resumed.predict(eeg))


class _Crash(RuntimeError):
    pass


def test_synaptechnet_resume_after_crash_mid_epoch(tmp_path, monkeypatch):
    """A job killed between two batches resumes from the last batch checkpoint."""
    eeg, meg, groups = net_data()
    ref = tiny_net(max_epochs=3).fit(eeg, meg, groups)
    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def flaky_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # last batch of epoch 2: 3 batches per epoch, ckpt after each
            raise _Crash
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", flaky_step)
    with pytest.raises(_Crash):
        tiny_net(max_epochs=3, checkpoint_every_batches=1).fit(
            eeg, meg, groups, checkpoint_dir=tmp_path
        )
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    resumed = tiny_net(max_epochs=3, checkpoint_every_batches=1).fit(
        eeg, meg, groups, checkpoint_dir=tmp_path
    )
    for a, b in zip(ref.model_.state_dict().values(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b)


def test_synaptechnet_fit_leaves_global_rng_alone():
    eeg, meg, groups = net_data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    tiny_net(max_epochs=1).fit(eeg, meg, groups)
    assert torch.equal(before, torch.get_rng_state())


def test_synaptechnet_normalisation_and_early_stopping_use_training_subjects_only():
    eeg, meg, groups = net_data(n_w=20)
    groups = np.repeat(list("abcde"), 4)
    model = tiny_net(max_epochs=2, val_fraction=0.2).fit(eeg, meg, groups)
    assert len(model.val_subjects_) == 1
    assert set(model.val_subjects_).isdisjoint(model.train_subjects_)
    assert set(model.val_subjects_) | set(model.train_subjects_) == set(groups)
    inner = np.isin(groups, model.train_subjects_)
    np.testing.assert_allclose(model.meg_scaler_.shift, meg[inner].mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(model.eeg_scaler_.scale, eeg[inner].std(axis=(0, 2)), rtol=1e-5)
    # poisoning the early-stopping subject's data changes neither statistics
    # nor the gradient steps of the first epoch (only the validation loss)
    poisoned_meg = meg.copy()
    poisoned_meg[~inner] *= 1e3
    m2 = tiny_net(max_epochs=1, val_fraction=0.2).fit(eeg, poisoned_meg, groups)
    m1 = tiny_net(max_epochs=1, val_fraction=0.2, restore_best=False).fit(eeg, meg, groups)
    np.testing.assert_array_equal(m2.meg_scaler_.shift, m1.meg_scaler_.shift)
    assert m2.history_[0]["train_loss"] == m1.history_[0]["train_loss"]
    assert m2.history_[0]["val_loss"] > 100 * m1.history_[0]["val_loss"]


def test_synaptechnet_early_stopping_restores_best():
    eeg, meg, groups = net_data(n_w=16)
    # an absurd learning rate makes validation loss diverge quickly
    model = tiny_net(max_epochs=30, patience=2, lr=1.0).fit(eeg, meg, groups)
    vals = [h["val_loss"] for h in model.history_]
    assert model.stopped_early_ and len(vals) < 30
    assert model.best_epoch_ == int(np.argmin(vals)) + 1


def test_synaptechnet_output_calibration_fits_validation_subjects_only():
    """The output gain is the least-squares fit to the validation subjects' MEG."""
    eeg, meg, _ = net_data(n_w=20)
    groups = np.repeat(list("abcde"), 4)
    plain = tiny_net(max_epochs=2, calibrate_output=False).fit(eeg, meg, groups)
    calibrated = tiny_net(max_epochs=2, calibration="channel").fit(eeg, meg, groups)
    pooled = tiny_net(max_epochs=2).fit(eeg, meg, groups)
    np.testing.assert_array_equal(plain.output_gain_, 1.0)
    val = np.isin(groups, calibrated.val_subjects_)
    # by hand, in normalised units, from the uncalibrated network
    shift, scale = plain.meg_scaler_.shift, plain.meg_scaler_.scale
    z_pred = (plain.predict(eeg[val]) - shift[:, None]) / scale[:, None]
    z_true = (meg[val] - shift[:, None]) / scale[:, None]
    expected = np.clip((z_pred * z_true).sum(axis=(0, 2)) / (z_pred**2).sum(axis=(0, 2)), 0, None)
    np.testing.assert_allclose(calibrated.output_gain_, expected, rtol=1e-4, atol=1e-6)
    # the default pools the least squares over channels: one gain
    expected_pooled = max((z_pred * z_true).sum() / (z_pred**2).sum(), 0)
    np.testing.assert_allclose(pooled.output_gain_, expected_pooled, rtol=1e-4)
    # same weights; predictions move towards the training mean by the gain
    z_cal = (calibrated.predict(eeg[val]) - shift[:, None]) / scale[:, None]
    np.testing.assert_allclose(z_cal, z_pred * expected[:, None], rtol=1e-4, atol=1e-4)
    # validation MEG unrelated to the EEG: the output shrinks towards the mean
    # A network that learnt the map keeps its output (gain ~1); when the
    # validation subject's MEG is unrelated to its EEG, the output shrinks
    # towards the training mean (gain ~0).
    learnt = dict(max_epochs=20, lr=1e-2, dropout=0.0)
    assert np.all(tiny_net(**learnt).fit(eeg, meg, groups).output_gain_ > 0.8)
    noise = meg.copy()
    noise[val] = np.random.default_rng(2).standard_normal(meg[val].shape)
    assert np.all(tiny_net(**learnt).fit(eeg, noise, groups).output_gain_ < 0.2)


def test_synaptechnet_minmax_log1p_roundtrip():
    eeg, meg, groups = net_data()
    model = tiny_net(max_epochs=1, normalization="minmax_log1p").fit(eeg, meg, groups)
    y = torch.as_tensor(meg[:3])
    z = model.meg_scaler_.transform(y)
    np.testing.assert_allclose(model.meg_scaler_.inverse(z).numpy(), meg[:3], atol=1e-4)
    assert model.predict(eeg[:2]).shape == (2, 4, 24)


# ------------------------------------------------------------ persistence
def _fitted_translators():
    eeg, meg, groups, _ = lagged_world(noise=0.5)
    eeg, meg = eeg[:, :5].astype(np.float32), meg[:, :4].astype(np.float32)
    lf = lowrank_world(n_eeg=5, n_meg=4)[2]
    geometry = dict.fromkeys(set(groups), lf)
    return (
        eeg,
        lf,
        [
            RidgeTranslator().fit(eeg, meg, groups),
            PhysicsTranslator().fit(eeg, meg, groups, geometry=geometry),
            tiny_net(max_epochs=1, cwt_freqs=(3.0, 8.0), sfreq=50.0).fit(eeg, meg, groups),
            HybridTranslator(ridge_lags=(0, 1), input_skip=True, n_ensemble=2,
                             **TINY).fit(eeg, meg, groups),
        ],
    )


def test_save_load_identical_predictions(tmp_path):
    eeg, lf, models = _fitted_translators()
    assert {m.name for m in models} == {"ridge", "physics", "synaptechnet", "hybrid"}
    for model in models:
        stem = tmp_path / f"desc-{model.name}_model"
        st_path, json_path = model.save(stem)
        assert st_path.suffix == ".safetensors" and json_path.suffix == ".json"
        meta = json.loads(json_path.read_text())
        assert meta["translator"] == model.name and meta["class"] == type(model).__name__
        loaded = Translator.load(json_path)
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(
            loaded.predict(eeg, geometry=lf), model.predict(eeg, geometry=lf)
        )
    with pytest.raises(TypeError):
        RidgeTranslator.load(tmp_path / "desc-physics_model")


def test_load_refuses_unknown_class_and_tampering(tmp_path):
    eeg, meg, groups, _ = lagged_world()
    RidgeTranslator(lags=(0,)).fit(eeg, meg, groups).save(tmp_path / "m.safetensors")
    meta_path = tmp_path / "m.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, translator="os.system")))
    with pytest.raises(ValueError, match="unknown translator"):
        Translator.load(tmp_path / "m")
    meta_path.write_text(json.dumps(meta))
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        Translator.load(tmp_path / "m")


# ----------------------------------------------------------------- hybrid
def test_ridge_cross_fitted_predictions_never_see_their_subject():
    eeg, meg, groups, _ = lagged_world(noise=0.5)
    ridge = RidgeTranslator(lags=(0, 1), cv=3)
    out = ridge.fit_cross_fitted(eeg, meg, groups, out=np.empty_like(meg))
    folds, _ = ridge._folds(len(eeg), groups)
    assert len(folds) == 3
    for idx in folds:
        others = np.setdiff1d(np.arange(len(eeg)), idx)
        alone = RidgeTranslator(lags=(0, 1), alphas=ridge.alpha_[0]).fit(
            eeg[others], meg[others], groups[others]
        )
        np.testing.assert_allclose(out[idx], alone.predict(eeg[idx]), rtol=1e-6, atol=1e-8)
    # and they are out of sample: worse than the in-sample fit
    assert ((meg - out) ** 2).mean() > ((meg - ridge.predict(eeg)) ** 2).mean()


def _rectified_world(seed, n_w=96, n_t=32):
    """MEG = a linear map of the EEG plus, on channel 0, |EEG 0| (invisible to ridge)."""
    rng = np.random.default_rng(seed)
    eeg = rng.standard_normal((n_w, 4, n_t)).astype(np.float32)
    mix = np.random.default_rng(99).standard_normal((3, 4))
    meg = np.einsum("me,wet->wmt", mix, eeg)
    meg[:, 0] += 2 * np.abs(eeg[:, 0])
    meg += 0.1 * rng.standard_normal(meg.shape)
    groups = np.repeat([f"s{seed}{i}" for i in range(4)], n_w // 4)
    return eeg, meg.astype(np.float32), groups


def test_hybrid_adds_what_ridge_cannot_and_keeps_what_it_can():
    eeg, meg, groups = _rectified_world(0)
    test_eeg, test_meg, _ = _rectified_world(1)
    ridge = RidgeTranslator(lags=(0,)).fit(eeg, meg, groups)
    hybrid = HybridTranslator(
        ridge_lags=(0,), **(TINY | dict(max_epochs=40, lr=1e-2, dropout=0.0, val_fraction=0.25))
    ).fit(eeg, meg, groups)
    r2_ridge = r2_per_channel(test_meg, ridge.predict(test_eeg))
    r2_hybrid = r2_per_channel(test_meg, hybrid.predict(test_eeg))
    # the rectified part, which a linear map cannot see, is learnt ...
    assert r2_hybrid[0] > r2_ridge[0] + 0.2, (r2_hybrid, r2_ridge)
    # ... and the linear channels keep ridge's (near perfect) prediction
    assert r2_hybrid[1:].min() > r2_ridge[1:].min() - 0.02
    np.testing.assert_array_equal(hybrid.ridge_.coef_, ridge.coef_)


def test_hybrid_residual_of_noise_gets_little_gain():
    """Where the residual is noise the network's gain shrinks and ridge stays."""
    eeg, meg, groups, _ = lagged_world(noise=0.5, n_w=64)
    eeg, meg = eeg.astype(np.float32), meg.astype(np.float32)
    hybrid = HybridTranslator(ridge_lags=(-1, 0, 2), **(TINY | dict(max_epochs=5))).fit(
        eeg, meg, groups
    )
    assert np.median(hybrid.output_gain_) < 0.3, hybrid.output_gain_


def test_registry():
    assert {"ridge", "physics", "synaptechnet"} <= set(TRANSLATORS)
    assert isinstance(get_translator("ridge", lags=[0, 1]), RidgeTranslator)
    with pytest.raises(ValueError, match="unknown translator"):
        get_translator("nope")


def test_bad_input_is_a_value_error():
    model = RidgeTranslator(lags=(0,))
    with pytest.raises(ValueError, match="n_windows"):
        model.fit(np.zeros((3, 4)), np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.full((3, 4, 5), np.nan), np.zeros((3, 2, 5)))
