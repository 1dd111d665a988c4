"""The participant level's SSS and ICA, replayed on the lead fields (group/cleaning.py)."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from synaptech_bids.group.cleaning import (
    average_reference_operator,
    clean_gains,
    cleaning_of_subject,
    ica_operator,
    interpolation_operator,
    maxwell_operator,
)
from synaptech_bids.simulate import simulate_dataset

pytestmark = pytest.mark.filterwarnings("ignore:The data has not been high-pass filtered")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> mne.io.Raw:
    root = simulate_dataset(tmp_path_factory.mktemp("sss") / "bids", n_subjects=1, n_runs=1,
                            duration=5.0, sfreq=200.0)
    raw = mne.io.read_raw_fif(
        root / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif",
        preload=True, verbose=False)
    # the types channels.tsv gives them (ds000117 stores them as EEG in the FIF)
    return raw.set_channel_types({"EEG061": "eog", "EEG062": "eog", "EEG063": "ecg",
                                  "EEG064": "misc"}, on_unit_change="ignore", verbose=False)


def _fitted_ica(names: list[str], seed: int, tmp_path: Path) -> tuple[Path, mne.io.RawArray]:
    """An ICA fitted on mixed sources, one component excluded, saved as the participant
    level saves it; and the data it was fitted on."""
    rng = np.random.default_rng(seed)
    sources = rng.laplace(size=(len(names), 2000))
    raw = mne.io.RawArray(rng.standard_normal((len(names), len(names))) @ sources * 1e-13,
                          mne.create_info(names, 250.0, "mag"), verbose=False)
    ica = mne.preprocessing.ICA(n_components=4, method="fastica", random_state=seed,
                                max_iter=1000, verbose=False).fit(raw, verbose=False)
    ica.exclude = [1]
    path = tmp_path / f"sub-01_run-0{seed}_desc-meg_ica.fif"
    ica.save(path, verbose=False)
    return path, raw


def test_ica_operator_is_mnes_cleaning(tmp_path: Path) -> None:
    names = [f"MEG{k:04d}" for k in range(1, 7)]
    path, raw = _fitted_ica(names, 1, tmp_path)
    ica = mne.preprocessing.read_ica(path, verbose=False)
    cleaned = ica.apply(raw.copy(), verbose=False).get_data()  # what MNE does to the data
    data = raw.get_data()
    # ICA restores the channels' means: the operator is its linear part
    cleaned, data = (x - x.mean(1, keepdims=True) for x in (cleaned, data))
    operator, order = ica_operator(ica)
    assert order == names
    np.testing.assert_allclose(operator @ data, cleaned, atol=1e-9 * np.abs(data).max())
    # one component removed: an oblique projection of rank n - 1
    np.testing.assert_allclose(operator @ operator, operator, atol=1e-8)
    assert np.linalg.matrix_rank(np.eye(len(names)) - operator, tol=1e-8) == 1


@pytest.mark.parametrize("bad", [None, "MEG0113"])
def test_maxwell_operator_is_mnes_maxwell_filter(raw: mne.io.Raw, bad: str | None) -> None:
    raw = raw.copy()
    raw.info["bads"] = [bad] if bad else []
    origin = [0.0, 0.01, 0.04]
    sss = mne.preprocessing.maxwell_filter(raw, origin=origin, coord_frame="head",
                                           verbose=False)
    sss.info["bads"] = raw.info["bads"]  # the participant level keeps them marked
    operator, names = maxwell_operator(sss.info, origin)  # from the info after SSS
    assert names == [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=True, exclude=[])]
    good = [n for n in names if n != bad]
    expected = sss.get_data(picks=good)
    np.testing.assert_allclose((operator @ raw.get_data(picks=names))[
        [names.index(n) for n in good]], expected, atol=1e-6 * np.abs(expected).max())
    if bad:  # the bad channel's data do not enter
        assert not operator[:, names.index(bad)].any()


def test_a_subjects_cleaning_is_sss_then_ica_averaged_over_runs(
        raw: mne.io.Raw, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meg = [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=True)]
    ica_path, _ = _fitted_ica(meg[:6], 1, tmp_path)
    origin = [0.0, 0.01, 0.04]
    sss_log = {"Preprocessing": {"MaxwellFilter": {"OriginHeadM": origin}}}
    logs = [{**sss_log, "ICA": {"MEG": {"Excluded": [1]}}},
            {**sss_log, "ICA": {"MEG": {"Excluded": []}}}]
    cleaning = cleaning_of_subject([raw.info, raw.info], logs, {"meg": [ica_path, None]})
    assert set(cleaning) == {"meg"}  # nothing was done to the EEG
    operator, names = cleaning["meg"]
    assert names == meg
    sss, _ = maxwell_operator(raw.info, origin)
    ica = np.eye(len(meg))
    ica[:6, :6] = ica_operator(mne.preprocessing.read_ica(ica_path, verbose=False))[0]
    np.testing.assert_allclose(operator, (ica @ sss + sss) / 2, atol=1e-12)

    # a run removed components but its ICA file is missing: no run's ICA is used
    logs[1]["ICA"]["MEG"]["Excluded"] = [0]
    operator, _ = cleaning_of_subject([raw.info, raw.info], logs,
                                      {"meg": [ica_path, None]})["meg"]
    np.testing.assert_allclose(operator, sss, atol=1e-12)
    assert "re-run the participant level" in caplog.text
    # nothing done to the data, nothing done to the gains
    assert cleaning_of_subject([raw.info], [{}], {}) == {}


def test_eeg_interpolation_and_reference_are_mnes(raw: mne.io.Raw) -> None:
    bads = ["EEG005", "EEG030"]
    data = raw.copy()
    data.info["bads"] = bads
    data.interpolate_bads(reset_bads=True, exclude=[], verbose=False)  # as the participant level
    eeg = mne.pick_types(raw.info, meg=False, eeg=True, exclude=[])
    operator, names = interpolation_operator(raw.info, bads)
    assert names == [raw.ch_names[i] for i in eeg]
    np.testing.assert_allclose(operator @ raw.get_data(picks=eeg), data.get_data(picks=eeg),
                               atol=1e-9 * np.abs(data.get_data(picks=eeg)).max())
    # interpolated, then average-referenced: the subject's EEG cleaning without ICA
    log = {"Preprocessing": {"InterpolatedEEGChannels": bads, "EEGReference": "average"}}
    cleaning = cleaning_of_subject([raw.info], [log], {}, eeg_ica=False)
    reference, _ = average_reference_operator(raw.info)
    np.testing.assert_allclose(cleaning["eeg"][0], reference @ operator, atol=1e-12)
    referenced = data.copy().set_eeg_reference("average", verbose=False).get_data(picks=eeg)
    np.testing.assert_allclose(cleaning["eeg"][0] @ raw.get_data(picks=eeg), referenced,
                               atol=1e-9 * np.abs(referenced).max())


def test_clean_gains_cleans_on_every_channel_and_keeps_the_groups() -> None:
    rng = np.random.default_rng(3)
    names = [f"MEG{k:04d}" for k in range(1, 7)]
    operator = rng.standard_normal((6, 6))
    lf = {"L_eeg": rng.standard_normal((3, 4)), "L_meg": rng.standard_normal((6, 4)),
          "eeg_names": ["EEG001", "EEG002", "EEG003"], "meg_names": names,
          "source": "sphere model"}
    out = clean_gains(lf, {"meg": (operator, names)}, ["EEG002"], ["MEG0003", "MEG0001"])
    np.testing.assert_allclose(out["L_meg"], (operator @ lf["L_meg"])[[2, 0]])
    np.testing.assert_array_equal(out["L_eeg"], lf["L_eeg"][[1]])  # nothing done to it
    assert out["meg_names"] == ["MEG0003", "MEG0001"] and out["eeg_names"] == ["EEG002"]
    assert out["source"] == "sphere model; cleaned as the data (MEG)"
    with pytest.raises(ValueError, match="lack the cleaned channels"):
        clean_gains({**lf, "meg_names": names[:5] + ["X"]}, {"meg": (operator, names)},
                    [], names[:2])
