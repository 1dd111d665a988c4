"""Configuration: validation, and which options shape participant outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synaptech_bids.config import GROUP_ONLY_FIELDS, TRANSLATOR_NAMES, Config, ConfigError
from synaptech_bids.group.evaluate import translator_params
from synaptech_bids.translators import get_translator


def test_group_only_options_do_not_change_participant_options():
    base = Config()
    changed = Config(translators=("ridge",), max_epochs=3, synaptechnet_cwt_freqs=8,
                     forward_dir="/data/derivatives/mne-bids-pipeline")
    assert base.participant_dict() == changed.participant_dict()
    assert base.digest() != changed.digest()
    assert Config(l_freq=1.0).participant_dict() != base.participant_dict()


def test_group_only_fields_exist():
    names = {f.name for f in dataclasses.fields(Config)}
    assert GROUP_ONLY_FIELDS <= names


@pytest.mark.parametrize("options", [
    {"synaptechnet_cwt_freqs": -1},
    {"synaptechnet_normalization": "log"},
    {"synaptechnet_norm": "layer"},
    {"synaptechnet_input_skip": "yes"},
    {"weight_decay": -1e-3},
    {"forward_dir": ""},
    {"forward_dir": 3},
    {"learning_rate": 0.0},
    {"max_epochs": 0},
    {"patience": 0},
    {"synaptechnet_ensemble": 0},
    {"synaptechnet_ensemble": "3"},
    {"max_epochs": 40.5},
    {"weight_decay": "1e-3"},
    {"l_freq": "1"},
    {"translators": ("ridge", "unet")},
    {"translators": ()},
])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        Config(**options)


def test_cwt_frequencies_log_spaced_below_nyquist():
    params = translator_params("synaptechnet", Config(synaptechnet_cwt_freqs=12), 150.0, 0,
                               "cpu")
    freqs = np.asarray(params["cwt_freqs"])
    assert len(freqs) == 12 and freqs[0] == pytest.approx(1.0)
    assert freqs[-1] < 75.0
    np.testing.assert_allclose(np.diff(np.log(freqs)), np.log(freqs[1] / freqs[0]))
    assert translator_params("synaptechnet", Config(), 250.0, 0, "cpu")["cwt_freqs"] is None


def test_network_options_reach_the_translators():
    config = Config(synaptechnet_norm="batch", synaptechnet_input_skip=True, weight_decay=0.05)
    for name in ("synaptechnet", "hybrid"):
        params = translator_params(name, config, 250.0, 0, "cpu")
        model = get_translator(name, **params)
        assert (model.norm, model.input_skip, model.weight_decay) == ("batch", True, 0.05)
    assert Config().participant_dict() == config.participant_dict()


def test_translator_names_are_the_registry():
    from synaptech_bids.translators import TRANSLATORS

    assert set(TRANSLATOR_NAMES) == set(TRANSLATORS)


def test_hybrid_gets_the_ridge_lags_and_the_network_settings():
    config = Config(ridge_lags_ms=(0.0, 8.0), synaptechnet_width=0.5)
    params = translator_params("hybrid", config, 250.0, 0, "cpu")
    assert params["ridge_lags"] == translator_params("ridge", config, 250.0, 0, "cpu")["lags"]
    assert params["width"] == 0.5


def test_spectral_band_sources_reaches_the_translator():
    for flag in (False, True):
        config = Config(spectral_band_sources=flag)
        model = get_translator("spectral", **translator_params("spectral", config, 250.0, 0, "cpu"))
        assert model.band_sources is flag and model.sfreq == 250.0
    # a group-level option: the participant level's outputs stay shared
    assert Config().participant_dict() == Config(spectral_band_sources=True).participant_dict()
