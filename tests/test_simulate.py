"""Tests of the EEG + MEG BIDS simulator (synaptech_bids.simulate).

Datasets are simulated once per module (small: 2 subjects x 2 runs x 30 s at
400 Hz) and shared by the tests.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from synaptech_bids.simulate import load_truth, simulate_dataset
from synaptech_bids.simulate.cli import main
from synaptech_bids.simulate.geometry import AUX_CHANNELS

SFREQ = 400.0
AUX = list(AUX_CHANNELS)


def _bp(root: Path, sub: str, run: int) -> mne_bids.BIDSPath:
    return mne_bids.BIDSPath(
        subject=sub,
        session="meg",
        task="facerecognition",
        run=f"{run:02d}",
        datatype="meg",
        root=root,
    )


def _read(root: Path, sub: str, run: int) -> mne.io.BaseRaw:
    with warnings.catch_warnings():
        # mne-bids warns about the ds000117 events.tsv (no trial_type column)
        warnings.simplefilter("ignore")
        return mne_bids.read_raw_bids(_bp(root, sub, run), verbose=False)


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full simulation (noise, artefacts), ds000117 style."""
    root = tmp_path_factory.mktemp("sim") / "bids"
    # evoked_scale=3: ~22 trials per subject must show the evoked response
    return simulate_dataset(
        root, n_subjects=2, n_runs=2, duration=30.0, seed=3, sfreq=SFREQ, evoked_scale=3.0
    )


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No sensor or line noise (artefacts on), mne-bids style."""
    root = tmp_path_factory.mktemp("clean") / "bids"
    return simulate_dataset(
        root,
        n_subjects=1,
        n_runs=1,
        duration=12.0,
        seed=5,
        sfreq=250.0,
        line_noise=False,
        sensor_noise=False,
        style="mne-bids",
        n_background=120,
    )


# --------------------------------------------------------------------------
# BIDS layout and reading back


def test_layout_and_sidecars(sim_root: Path) -> None:
    desc = json.loads((sim_root / "dataset_description.json").read_text())
    assert desc["Name"] and desc["DatasetType"] == "raw"
    parts = pd.read_csv(sim_root / "participants.tsv", sep="\t")
    assert list(parts["participant_id"]) == ["sub-01", "sub-02"]
    ses = sim_root / "sub-01" / "ses-meg"
    # ds000117 keeps channels.tsv and meg.json at the session level
    ch_ses = ses / "sub-01_ses-meg_task-facerecognition_channels.tsv"
    assert ch_ses.exists()
    assert (ses / "sub-01_ses-meg_task-facerecognition_meg.json").exists()
    ch = pd.read_csv(ch_ses, sep="\t").set_index("name")
    assert ch.loc[["EEG061", "EEG062", "EEG063", "EEG064"], "type"].tolist() == [
        "HEOG",
        "VEOG",
        "ECG",
        "MISC",
    ]
    assert (ch["type"] == "EEG").sum() == 70
    assert (ch["type"] == "MEGMAG").sum() == 102
    assert (ch["type"] == "MEGGRADPLANAR").sum() == 204
    side = json.loads(
        (ses / "meg" / "sub-01_ses-meg_task-facerecognition_run-01_meg.json").read_text()
    )
    assert side["PowerLineFrequency"] == 50
    assert side["EEGChannelCount"] == 70 and side["EOGChannelCount"] == 2
    ev = pd.read_csv(
        ses / "meg" / "sub-01_ses-meg_task-facerecognition_run-01_events.tsv", sep="\t"
    )
    assert list(ev.columns[:4]) == ["onset", "duration", "trigger", "stim_type"]
    assert set(ev["stim_type"]) <= {"Famous", "Unfamiliar", "Scrambled"}
    assert set(ev["trigger"]) <= {5, 6, 7, 13, 14, 15, 17, 18, 19}
    isi = np.diff(ev["onset"])
    assert isi.min() >= 2.0 - 1e-3 and isi.max() <= 3.0 + 1e-3
    deriv = json.loads(
        (sim_root / "derivatives" / "simulation" / "dataset_description.json").read_text()
    )
    assert deriv["DatasetType"] == "derivative"


def test_bids_paths_valid(sim_root: Path) -> None:
    from bids_validator import BIDSValidator

    v = BIDSValidator()
    bad = [
        "/" + p.relative_to(sim_root).as_posix()
        for p in sim_root.rglob("*")
        if p.is_file() and "derivatives" not in p.parts
    ]
    bad = [p for p in bad if not v.is_bids(p)]
    assert bad == []


def test_read_back_geometry(sim_root: Path) -> None:
    raw = _read(sim_root, "02", 2)
    assert raw.info["sfreq"] == SFREQ
    assert raw.get_channel_types(picks=AUX) == ["eog", "eog", "ecg", "misc"]
    assert len(mne.pick_types(raw.info, meg=True)) == 306
    assert len(mne.pick_types(raw.info, eeg=True)) == 70
    assert raw.ch_names[0] == "MEG0113"
    truth = load_truth(sim_root, "sub-02", "run-02")
    np.testing.assert_allclose(raw.info["dev_head_t"]["trans"], truth["dev_head_t"], atol=1e-6)
    pos = truth["sensor_positions"]
    names = truth["ch_names"]
    eeg = mne.pick_types(raw.info, eeg=True)
    got = np.array([raw.info["chs"][k]["loc"][:3] for k in eeg])
    want = np.array([pos[names.index(raw.ch_names[k])] for k in eeg])
    np.testing.assert_allclose(got, want, atol=1e-6)
    dig = raw.info["dig"]
    kinds = [d["kind"] for d in dig]
    assert kinds.count(mne.io.constants.FIFF.FIFFV_POINT_EEG) == 70
    assert kinds.count(mne.io.constants.FIFF.FIFFV_POINT_CARDINAL) == 3
    assert kinds.count(mne.io.constants.FIFF.FIFFV_POINT_EXTRA) > 10
    # MEG sensors outside the head, 1-6 cm from the scalp sphere
    radius, origin, _ = mne.bem.fit_sphere_to_headshape(raw.info, units="m", verbose=False)
    meg = mne.pick_types(raw.info, meg=True)
    d = np.linalg.norm(pos[meg] - origin, axis=1) - radius
    assert d.min() > 0.008 and d.max() < 0.07


def test_head_positions(sim_root: Path) -> None:
    t = {(s, r): load_truth(sim_root, s, r)["dev_head_t"] for s in ("01", "02") for r in (1, 2)}
    within = np.linalg.norm(t["01", 1][:3, 3] - t["01", 2][:3, 3])
    between = np.linalg.norm(t["01", 1][:3, 3] - t["02", 1][:3, 3])
    assert 0.0001 < within < 0.006
    assert between > within
    for m in t.values():
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-10)
        assert 0.03 < m[2, 3] < 0.08  # device origin above the head origin


def test_events_match_trigger_channel(sim_root: Path) -> None:
    raw = _read(sim_root, "01", 1)
    found = mne.find_events(raw, "STI101", shortest_event=1, verbose=False)
    ev = pd.read_csv(
        _bp(sim_root, "01", 1).copy().update(suffix="events", extension=".tsv").fpath, sep="\t"
    )
    np.testing.assert_array_equal(found[:, 2], ev["trigger"].to_numpy())
    np.testing.assert_array_equal(
        found[:, 0] - raw.first_samp, np.round(ev["onset"] * SFREQ).astype(int)
    )
    code = {"Famous": (5, 6, 7), "Unfamiliar": (13, 14, 15), "Scrambled": (17, 18, 19)}
    assert all(t in code[s] for t, s in zip(ev["trigger"], ev["stim_type"]))


def test_evoked_response_visible(sim_root: Path) -> None:
    """Average over trials: post-stimulus RMS well above the baseline RMS.

    Magnetometers are read, as real ones are, after the room's field is
    projected out (an empty-room SSP, here with the room's true topographies):
    raw, its 1/f field hides the evoked response."""
    for sub in ("01", "02"):
        data: dict[str, list[np.ndarray]] = {"eeg": [], "mag": [], "grad": []}
        for run in (1, 2):
            raw = _read(sim_root, sub, run).load_data(verbose=False)
            room = load_truth(sim_root, sub, run)["artifacts_mixing"][:, 3:6]
            q, _ = np.linalg.qr(room[mne.pick_types(raw.info, meg="mag")])
            events = mne.find_events(raw, "STI101", shortest_event=1, verbose=False)
            raw.filter(1.0, 20.0, verbose=False)
            ep = mne.Epochs(
                raw, events, tmin=-0.2, tmax=0.5, baseline=(None, 0), preload=True, verbose=False
            )
            for kind in data:
                x = ep.get_data(picks=kind)
                if kind == "mag":
                    x = x - np.einsum("ck,ek,net->nct", q, q, x)
                data[kind].append(x)
        times = ep.times
        for kind, parts in data.items():
            avg = np.concatenate(parts).mean(axis=0)
            base = np.sqrt((avg[:, times < 0] ** 2).mean())
            post = np.sqrt((avg[:, (times > 0.08) & (times < 0.3)] ** 2).mean())
            assert post / base > 3.0, (sub, kind, post / base)


# --------------------------------------------------------------------------
# ground truth


def test_truth_reproduces_noiseless_data(clean_root: Path) -> None:
    raw = _read(clean_root, "01", 1).load_data(verbose=False)
    truth = load_truth(clean_root, 1, 1)
    assert truth["ch_names"] == raw.ch_names
    brain = truth["brain_mixing"] @ np.asarray(truth["brain_timeseries"], float)
    art = truth["artifacts_mixing"] @ np.asarray(truth["artifacts_timeseries"], float)
    data = raw.get_data()
    for picks in ("eeg", "mag", "grad"):
        idx = mne.pick_types(raw.info, meg=picks if picks != "eeg" else False, eeg=picks == "eeg")
        want = brain[idx] + art[idx]
        err = np.abs(data[idx] - want).max() / np.abs(want).max()
        assert err < 1e-6, (picks, err)
        # the brain part is a real part of it; on raw magnetometers the
        # room's field dominates (as in real data), so compare without it
        room = truth["artifacts_mixing"][idx, 3:6] @ np.asarray(
            truth["artifacts_timeseries"][3:6], float
        )
        assert np.abs(brain[idx]).max() > 0.1 * np.abs(want - room).max()
    # EOG / ECG carry only artefacts here
    veog = raw.ch_names.index("EEG062")
    np.testing.assert_allclose(data[veog], art[veog], rtol=1e-6, atol=1e-12)
    assert np.abs(data[veog]).max() > 100e-6  # blinks of a few hundred uV


def test_truth_contents(sim_root: Path) -> None:
    truth = load_truth(sim_root, "01", 2)
    n_comp = len(truth["brain_components"])
    n_ch = len(truth["ch_names"])
    n_t = int(30.0 * SFREQ)
    assert truth["brain_timeseries"].shape == (n_comp, n_t)
    assert truth["brain_timeseries"].dtype == np.float32
    assert truth["brain_mixing"].shape == (n_ch, n_comp)
    assert truth["artifacts_mixing"].shape == (n_ch, 6)
    assert truth["artifacts_timeseries"].shape == (6, n_t)
    kinds = truth["brain_components"]["kind"].value_counts()
    assert kinds["background"] >= 70 and kinds["evoked"] >= 4 and kinds["network"] >= 3
    n_src = len(truth["source_positions"])
    assert n_src >= 500
    assert truth["source_moments"].shape == (n_comp, n_src, 3)
    # mixing == lead field x moments for the channels with a lead field
    lf = np.asarray(truth["leadfield"], float)
    rows = [truth["ch_names"].index(c) for c in truth["leadfield_ch_names"]]
    mom = np.asarray(truth["source_moments"], float).reshape(n_comp, -1)
    mix = lf @ mom.T * 1e-9
    ref = truth["brain_mixing"][rows]
    assert np.abs(mix - ref).max() < 1e-5 * np.abs(ref).max()
    # orientations vary (folded cortex): not all radial
    rr = truth["source_positions"] - truth["meta"]["HeadSphere"]["origin_m"]
    cos = np.abs((rr / np.linalg.norm(rr, axis=1, keepdims=True) * truth["source_normals"]).sum(1))
    assert np.median(cos) < 0.95 and cos.min() < 0.5
    # the noise-free parts have realistic amplitudes
    eeg = [i for i, t in enumerate(truth["meta"]["TrueChannelTypes"]) if t == "eeg"]
    mag = [i for i, t in enumerate(truth["meta"]["TrueChannelTypes"]) if t == "mag"]
    brain = truth["brain_mixing"] @ np.asarray(truth["brain_timeseries"], float)
    assert 5e-6 < np.median(brain[eeg].std(axis=1)) < 60e-6
    assert 50e-15 < np.median(brain[mag].std(axis=1)) < 600e-15
    # every stored array loads without pickle
    for f in (sim_root / "derivatives").rglob("*.npy"):
        np.load(f, allow_pickle=False, mmap_mode="r")


def test_subjects_share_networks(sim_root: Path) -> None:
    a = load_truth(sim_root, "01", 1)["brain_components"].set_index("name")
    b = load_truth(sim_root, "02", 1)["brain_components"].set_index("name")
    shared = [n for n in a.index if not n.startswith("bg_")]
    assert shared == [n for n in b.index if not n.startswith("bg_")]
    xyz = ["centre_x", "centre_y", "centre_z"]
    d = np.linalg.norm(a.loc[shared, xyz].to_numpy() - b.loc[shared, xyz].to_numpy(), axis=1)
    assert np.median(d) < 0.02  # same networks, moved by a few mm


# --------------------------------------------------------------------------
# determinism, style, CLI


def test_deterministic(tmp_path: Path, clean_root: Path) -> None:
    kw = dict(n_subjects=1, n_runs=1, duration=6.0, seed=11, sfreq=200.0, n_background=80)
    a = simulate_dataset(tmp_path / "a", **kw)
    b = simulate_dataset(tmp_path / "b", **kw)
    c = simulate_dataset(tmp_path / "c", **{**kw, "seed": 12})
    da = _read(a, "01", 1).get_data()
    db = _read(b, "01", 1).get_data()
    dc = _read(c, "01", 1).get_data()
    assert np.array_equal(da, db)
    assert not np.allclose(da, dc)
    for name in ("brain_timeseries", "brain_mixing", "dev_head_t"):
        assert np.array_equal(load_truth(a, 1, 1)[name], load_truth(b, 1, 1)[name])


def test_mne_bids_style(clean_root: Path) -> None:
    ses = clean_root / "sub-01" / "ses-meg"
    assert not (ses / "sub-01_ses-meg_task-facerecognition_channels.tsv").exists()
    ev = pd.read_csv(
        ses / "meg" / "sub-01_ses-meg_task-facerecognition_run-01_events.tsv", sep="\t"
    )
    assert "trial_type" in ev.columns
    assert ev["trial_type"].str.split("/").str[0].isin(["Famous", "Unfamiliar", "Scrambled"]).all()
    raw = _read(clean_root, "01", 1)
    assert raw.get_channel_types(picks=AUX) == ["eog", "eog", "ecg", "misc"]


def test_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        simulate_dataset(tmp_path / "full", n_subjects=1)
    with pytest.raises(TypeError):
        simulate_dataset(tmp_path / "new", n_subjects=1, not_an_option=1)
    with pytest.raises(ValueError):
        simulate_dataset(tmp_path / "new", n_subjects=1, style="bogus")


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        main,
        [
            str(out),
            "--subjects",
            "1",
            "--runs",
            "1",
            "--duration",
            "6",
            "--seed",
            "2",
            "--sfreq",
            "200",
            "--style",
            "mne-bids",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        out / "sub-01" / "ses-meg" / "meg" / "sub-01_ses-meg_task-facerecognition_run-01_meg.fif"
    ).exists()
    assert load_truth(out, "01", "01")["sfreq"] == 200.0
    # OUT exists and is not empty
    res = runner.invoke(main, [str(out), "--subjects", "1"])
    assert res.exit_code != 0
    assert len(res.output.strip().splitlines()) == 1 and "not an empty" in res.output
    for args in (
        ["--subjects", "0"],
        ["--duration", "1"],
        ["--style", "bogus"],
        ["--subjects", "two"],
        ["--bogus-option"],
    ):
        res = runner.invoke(main, [str(tmp_path / "new"), *args])
        assert res.exit_code == 2, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith("Error:")
    assert not (tmp_path / "new").exists()
    res = runner.invoke(main, ["--help"])
    assert res.exit_code == 0 and "--spread-mm" in res.output
