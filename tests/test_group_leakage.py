"""No held-out subject's MEG reaches training (group level, leave-subjects-out).

The test poisons one subject's MEG and checks that every translator's
prediction for that subject, while it is held out, is unchanged to the bit,
while the predictions for the other subjects (whose training sets contain the
poisoned subject) do change, so the poison is strong enough to be seen if it
leaked into normalisation, fitting, early stopping or channel choice.
"""

from __future__ import annotations

import numpy as np

from synaptech_bids.config import Config
from synaptech_bids.group.evaluate import SubjectArrays, evaluate, held_out_predictions

N_EEG, N_MEG, N_SRC, N_TIMES = 12, 8, 30, 32
SFREQ = 250.0


def _world(n_subjects: int = 4, n_windows: int = 12, seed: int = 0) -> list[SubjectArrays]:
    """Subjects sharing low-rank sources, each with its own lead fields."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((N_SRC, 5))  # shared source covariance, rank 5
    data = []
    for index in range(n_subjects):
        l_eeg = rng.standard_normal((N_EEG, N_SRC))
        l_meg = rng.standard_normal((N_MEG, N_SRC))
        latent = rng.standard_normal((n_windows, 5, N_TIMES))
        sources = np.einsum("sk,wkt->wst", mixing, latent)
        eeg = np.einsum("es,wst->wet", l_eeg, sources)
        meg = np.einsum("ms,wst->wmt", l_meg, sources)
        eeg += 0.1 * rng.standard_normal(eeg.shape)
        meg += 0.1 * rng.standard_normal(meg.shape)
        data.append(SubjectArrays(
            subject=f"{index + 1:02d}",
            eeg=eeg.astype(np.float32), meg=meg.astype(np.float32),
            conditions=np.array(["a", "b"] * (n_windows // 2)),
            geometry={"L_eeg": l_eeg, "L_meg": l_meg},
        ))
    return data


def _config(**overrides) -> Config:
    options = dict(
        translators=("physics", "ridge", "synaptechnet", "hybrid"), n_folds=4,
        ridge_lags_ms=(0.0, 8.0), synaptechnet_width=0.0625, max_epochs=3,
        batch_size=4, patience=2,
    )
    options.update(overrides)
    return Config(**options)


def _predictions(data: list[SubjectArrays], config: Config) -> dict:
    return {
        (p.model, p.fold, p.subject): p.prediction.copy()
        for p in held_out_predictions(data, config, SFREQ, seed=0, device="cpu")
    }


def test_poisoned_held_out_meg_never_reaches_training():
    config = _config()
    clean = _world()
    poisoned = _world()
    victim = poisoned[-1]
    rng = np.random.default_rng(99)
    # Wrong map, offset and a hundredfold scale: visible to any normaliser,
    # penalty choice or early-stopping decision that reads it.
    victim.meg = (100 * rng.standard_normal(victim.meg.shape) + 50).astype(np.float32)

    before, after = _predictions(clean, config), _predictions(poisoned, config)
    assert before.keys() == after.keys()
    models = {key[0] for key in before}
    assert models == {"training-mean", "physics", "ridge", "synaptechnet", "hybrid"}
    for key in before:
        model, _, subject = key
        if subject == victim.subject:
            np.testing.assert_array_equal(before[key], after[key], err_msg=str(key))
    # The poison is seen where the victim is a training subject, for every
    # model that learns from MEG (the physics map learns only its penalty).
    for model in ("training-mean", "ridge", "synaptechnet", "hybrid"):
        changed = [
            not np.array_equal(before[key], after[key])
            for key in before if key[0] == model and key[2] != victim.subject
        ]
        assert all(changed), model


def test_held_out_eeg_is_what_the_prediction_reads():
    """The translator does read the held-out EEG (as it would in use)."""
    config = _config(translators=("ridge",))
    data, shifted = _world(), _world()
    shifted[0].eeg = shifted[0].eeg[::-1].copy()
    before, after = _predictions(data, config), _predictions(shifted, config)
    (key,) = [k for k in before if k[0] == "ridge" and k[2] == "01"]
    np.testing.assert_allclose(after[key], before[key][::-1], rtol=1e-4, atol=1e-4)


def test_group_checkpoints_per_fold_and_rerun_gives_same_scores(tmp_path):
    config = _config(translators=("synaptechnet", "hybrid"), n_folds=2)
    data = _world(n_subjects=3)
    names = [f"m{i}" for i in range(N_MEG)]
    first = evaluate(data, names, config, SFREQ, 0, "cpu", checkpoint_root=tmp_path)[0]
    folds = sorted(p.name for p in tmp_path.iterdir())
    assert folds == ["hybrid_fold-0", "hybrid_fold-1", "synaptechnet_fold-0",
                     "synaptechnet_fold-1"]
    again = evaluate(data, names, config, SFREQ, 0, "cpu", checkpoint_root=tmp_path)[0]
    np.testing.assert_array_equal(first["r2"].to_numpy(), again["r2"].to_numpy())


def test_pruned_channels_come_from_training_subjects_only():
    """The pruned pair set used MEG: a fold takes it from its training subjects."""
    config = _config(translators=("ridge",), group_eeg_channels="pruned")
    names = [f"EEG{i:03d}" for i in range(1, N_EEG + 1)]
    data, poisoned = _world(), _world()
    for world in (data, poisoned):
        for index, subject in enumerate(world):
            subject.pruned_eeg = frozenset(names[index:index + 4])
    victim = poisoned[-1]
    victim.pruned_eeg = frozenset(names)  # would widen the channel set if it leaked

    def run(world):
        return {(p.model, p.subject): (p.n_eeg, p.prediction.copy()) for p in
                held_out_predictions(world, config, SFREQ, 0, "cpu", eeg_names=names)}

    before, after = run(data), run(poisoned)
    n_eeg, pred = before[("ridge", victim.subject)]
    assert n_eeg == 6  # union of subjects 01-03's sets: names[0:6]
    assert after[("ridge", victim.subject)][0] == n_eeg
    np.testing.assert_array_equal(after[("ridge", victim.subject)][1], pred)
    # where the victim trains, its (poisoned) set is used
    assert after[("ridge", "01")][0] == N_EEG


def test_predictions_are_scored_in_the_subspace_the_meg_was_left_in():
    """A held-out subject's SSP projection is applied to every prediction."""
    config = _config(translators=("physics", "ridge"))
    data = _world()
    u = np.random.default_rng(5).standard_normal(N_MEG)
    u /= np.linalg.norm(u)
    projection = np.eye(N_MEG) - np.outer(u, u)
    data[0].meg_projection = projection
    data[0].meg = np.einsum("mn,wnt->wmt", projection, data[0].meg).astype(np.float32)
    plain = _predictions(_world(), config)
    for key, pred in _predictions(data, config).items():
        if key[2] == "01":
            assert np.abs(np.einsum("m,wmt->wt", u, pred)).max() < 1e-4, key
            np.testing.assert_allclose(
                pred, np.einsum("mn,wnt->wmt", projection, plain[key]), rtol=1e-4, atol=1e-4)
