"""Leave-subjects-out folds run as separate jobs (an array) and combined."""

from __future__ import annotations

import numpy as np
import pytest
from test_group_leakage import N_MEG, SFREQ, _config, _world

from synaptech_bids.group.evaluate import evaluate

NAMES = [f"m{i}" for i in range(N_MEG)]


def test_folds_as_separate_jobs_combine_to_the_whole_run(tmp_path):
    config = _config(translators=("physics", "ridge"), n_folds=3)
    data = _world(n_subjects=3)
    whole = evaluate(data, NAMES, config, SFREQ, 0, "cpu")[0]
    for k in range(3):  # one array task per fold
        part = evaluate(data, NAMES, config, SFREQ, 0, "cpu", fold_results=tmp_path,
                        only_fold=k)[0]
        assert set(part["fold"]) == {k}
    calls = []
    combined, evoked, _, _ = evaluate(data, NAMES, config, SFREQ, 0, "cpu",
                                      progress=calls.append, fold_results=tmp_path)
    assert calls == [], "a finished fold was recomputed"
    assert list(combined.columns) == list(whole.columns)
    assert (combined["subject"].to_numpy() == whole["subject"].to_numpy()).all()
    np.testing.assert_allclose(combined["r2"], whole["r2"], rtol=1e-6, atol=1e-7)
    assert len(evoked)


def test_missing_folds_are_computed_and_bad_fold_refused(tmp_path):
    config = _config(translators=("ridge",), n_folds=3)
    data = _world(n_subjects=3)
    evaluate(data, NAMES, config, SFREQ, 0, "cpu", fold_results=tmp_path, only_fold=1)
    calls = []
    scores = evaluate(data, NAMES, config, SFREQ, 0, "cpu", progress=calls.append,
                      fold_results=tmp_path)[0]
    assert sorted(set(scores["fold"])) == [0, 1, 2]
    assert calls and not any(c.startswith("fold 2:") for c in calls)
    with pytest.raises(ValueError, match="4 requested"):
        evaluate(data, NAMES, config, SFREQ, 0, "cpu", fold_results=tmp_path, only_fold=3)
