"""Lead fields from a subject's forward solution (``forward_dir``)."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from synaptech_bids.errors import AppError, ExitCode
from synaptech_bids.group.lead_fields import (
    find_forward,
    lead_fields_from_forward,
    project_gains,
    projection_of_runs,
    subject_lead_fields,
    thin_sources,
)
from synaptech_bids.simulate import load_truth, simulate_dataset


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fwd") / "bids"
    return simulate_dataset(root, n_subjects=1, n_runs=1, duration=5.0, sfreq=200.0,
                            save_forward=True)


def _channels(root: Path) -> tuple[mne.Info, list[str], list[str]]:
    raw = mne.io.read_raw_fif(
        root / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif",
        verbose=False)
    types = raw.get_channel_types()
    eeg = [n for n, t in zip(raw.ch_names, types) if t == "eeg" and n < "EEG061"]
    mag = [n for n, t in zip(raw.ch_names, types) if t == "mag"]
    return raw.info, eeg[::-1], mag  # any order: rows follow the names given


def test_forward_gives_the_simulators_lead_fields_along_the_normals(simulated: Path) -> None:
    info, eeg, mag = _channels(simulated)
    lf = subject_lead_fields(info, "01", eeg, mag, simulated / "derivatives" / "forward")
    truth = load_truth(simulated, 1, 1)
    n_src = len(truth["source_positions"])
    assert lf["L_eeg"].shape == (len(eeg), n_src) and lf["L_meg"].shape == (102, n_src)
    assert lf["orientation"] == "fixed"
    np.testing.assert_allclose(lf["src_pos"], truth["source_positions"], atol=1e-6)
    free = np.asarray(truth["leadfield"]).reshape(-1, n_src, 3)
    fixed = np.einsum("cso,so->cs", free, truth["source_normals"])
    rows = {n: i for i, n in enumerate(truth["leadfield_ch_names"])}
    for mine, names in ((lf["L_eeg"], eeg), (lf["L_meg"], mag)):
        want = fixed[[rows[n] for n in names]]
        assert np.abs(mine - want).max() < 1e-4 * np.abs(want).max()
    # the sphere fitted to the digitised head shape, near the simulator's
    assert np.linalg.norm(lf["sphere_origin"] - truth["meta"]["HeadSphere"]["origin_m"]) < 0.01


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def test_forward_dir_reads_a_forward_of_the_real_recording(tmp_path: Path) -> None:
    """The real MNE "sample" recording: Neuromag coils, channel names with
    spaces ("MEG 0111", "EEG 001"), its own digitisation and head position. No
    MRI ships with it, so the forward is on a sphere, with dipoles on a shell
    and normals of their own (what matters to the reader: a source space with
    normals, as a cortical surface has)."""
    info = mne.io.read_info(REAL / "sample_audvis_trunc_raw_sss.fif", verbose=False)
    sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
    rng = np.random.default_rng(0)
    direction = rng.standard_normal((200, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    direction = direction[direction[:, 2] > -0.2]
    normals = direction + 0.5 * rng.standard_normal(direction.shape)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    src = mne.setup_volume_source_space(
        pos={"rr": sphere["r0"] + 0.7 * sphere.radius * direction, "nn": normals},
        sphere=sphere, verbose=False)
    fwd = mne.make_forward_solution(info, None, src, sphere, verbose=False)
    mne.write_forward_solution(tmp_path / "sub-01_task-audvis_fwd.fif", fwd, verbose=False)

    eeg = [n for n, t in zip(info["ch_names"], info.get_channel_types()) if t == "eeg"]
    mag = [n for n, t in zip(info["ch_names"], info.get_channel_types()) if t == "mag"]
    assert len(eeg) == 60 and len(mag) == 102 and " " in mag[0]
    lf = subject_lead_fields(info, "01", eeg[::-1], mag, tmp_path)
    free = fwd["sol"]["data"].reshape(len(fwd["sol"]["row_names"]), -1, 3)
    fixed = np.einsum("cso,so->cs", free, normals)
    rows = {n: i for i, n in enumerate(fwd["sol"]["row_names"])}
    for mine, names in ((lf["L_eeg"], eeg[::-1]), (lf["L_meg"], mag)):
        want = fixed[[rows[n] for n in names]]
        assert np.abs(mine - want).max() < 1e-6 * np.abs(want).max()
    np.testing.assert_allclose(lf["sphere_origin"], sphere["r0"], atol=1e-6)
    # its one projector (average EEG reference) is not active: nothing projected
    assert project_gains(lf, [info])["L_eeg"] is lf["L_eeg"]


def test_a_forward_without_a_channel_is_refused(simulated: Path) -> None:
    path = find_forward(simulated / "derivatives" / "forward", "01")
    with pytest.raises(AppError, match="lacks 1 channel") as err:
        lead_fields_from_forward(path, ["EEG999"], [])
    assert err.value.code == ExitCode.BAD_DATA


@pytest.mark.filterwarnings("ignore:Invalid tag")
def test_missing_forwards_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="is not a folder"):
        find_forward(tmp_path / "nowhere", "01")
    (tmp_path / "sub-02").mkdir()
    (tmp_path / "sub-02" / "sub-02_task-x_fwd.fif").write_bytes(b"")
    with pytest.raises(AppError, match="no forward solution for sub-01") as err:
        find_forward(tmp_path, "01")
    assert err.value.code == ExitCode.NO_INPUT
    (tmp_path / "sub-01_task-b_fwd.fif").write_bytes(b"not a fif")
    (tmp_path / "sub-01_task-a-fwd.fif").write_bytes(b"")
    assert find_forward(tmp_path, "01").name == "sub-01_task-a-fwd.fif"
    with pytest.raises(AppError, match="cannot read forward solution"):
        lead_fields_from_forward(tmp_path / "sub-01_task-b_fwd.fif", ["EEG001"], [])


def test_thin_sources_spreads_a_dense_surface() -> None:
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((9000, 3))
    pos = 0.07 * pos / np.linalg.norm(pos, axis=1, keepdims=True)  # a 7-cm sphere
    keep = thin_sources(pos, 2000)
    assert 1000 < len(keep) <= 2000
    assert np.array_equal(keep, np.unique(keep)) and np.array_equal(keep, thin_sources(pos, 2000))
    # evenly spread: every source lies near a kept one
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(pos[keep]).query(pos)
    assert dist.max() < 0.01  # within a cell's diagonal (~9 mm here)
    assert np.array_equal(thin_sources(pos[:50], 2000), np.arange(50))


# --------------------------------------------------------------------------
# SSP projectors: gains and scores in the subspace the data were left in


def _info_with_projector(names: list[str], vector: np.ndarray, desc: str) -> mne.Info:
    info = mne.create_info(names, 250.0, "mag")
    proj = mne.Projection(data={"nrow": 1, "ncol": len(names), "row_names": None,
                                "col_names": list(names), "data": vector[None]},
                          desc=desc, kind=1, active=False, explained_var=None)
    raw = mne.io.RawArray(np.zeros((len(names), 10)), info, verbose=False)
    raw.add_proj([proj]).apply_proj(verbose=False)  # active, as in the derivatives
    return raw.info


def test_projection_of_runs_is_mnes_projection_averaged_over_runs() -> None:
    rng = np.random.default_rng(0)
    names = [f"MEG{k:04d}" for k in range(1, 9)]
    u1, u2 = rng.standard_normal(8), rng.standard_normal(8)
    runs = [_info_with_projector(names, u1, "EOG-1"), _info_with_projector(names, u2, "EOG-2")]
    data = rng.standard_normal((8, 50))
    projected = []
    for info in runs:  # what MNE does to the data
        raw = mne.io.RawArray(data, mne.create_info(names, 250.0, "mag"), verbose=False)
        raw.add_proj([p for p in info["projs"]])
        projected.append(raw.apply_proj(verbose=False).get_data())
    order = names[::-1]  # rows follow the names given
    rows = [names.index(n) for n in order]
    one, used = projection_of_runs(runs[:1], order)
    assert used == ["EOG-1"]
    np.testing.assert_allclose(one @ data[rows], projected[0][rows], atol=1e-10)
    np.testing.assert_allclose(one @ one, one, atol=1e-10)  # a projection
    both, used = projection_of_runs(runs, order)
    assert used == ["EOG-1", "EOG-2"]
    np.testing.assert_allclose(both @ data[rows], np.mean(projected, 0)[rows], atol=1e-10)
    # the gains of those rows, projected alike; the EEG has no projector
    lf = {"L_eeg": np.ones((1, 3)), "L_meg": rng.standard_normal((8, 3)),
          "eeg_names": ["EEG001"], "meg_names": order, "source": "sphere model"}
    out = project_gains(lf, runs[:1])
    np.testing.assert_allclose(out["L_meg"], one @ lf["L_meg"])
    assert out["L_eeg"] is lf["L_eeg"]
    assert out["source"] == "sphere model; projected as the data (EOG-1)"
    # no projector on these channels: nothing to do
    assert projection_of_runs([mne.create_info(names, 250.0, "mag")], names) == (None, [])
    assert projection_of_runs(runs, ["EEG001"]) == (None, [])

