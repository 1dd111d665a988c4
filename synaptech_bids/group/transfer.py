"""Transfer across heads: held-out scores against head-position distance.

A translator trained on some subjects meets a new head position in every
held-out subject. How far that head sits from the training heads is
measured here the way the MEG sees it: the magnetometers' positions in the
subject's head coordinates (the inverse of the head's position in the
helmet), averaged over the subject's runs, compared sensor by sensor
with every training subject's. The group report plots each held-out
subject's share of its within-subject optimum against that distance, so a
translator that only works for heads placed like the training heads shows
it (issue 6, "transfer as an explicit experiment").
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def magnetometer_positions_head(infos: list[mne.Info], mag_names: list[str]) -> np.ndarray:
    """Magnetometer centres in head coordinates (m), averaged over runs.

    Parameters
    ----------
    infos : list of mne.Info
        One per run of the subject, each with its own ``dev_head_t``.
    mag_names : list of str

    Returns
    -------
    positions : ndarray, shape (n_mag, 3)
    """
    positions = []
    for info in infos:
        trans = info["dev_head_t"]["trans"]
        loc = np.array([info["chs"][info["ch_names"].index(name)]["loc"][:3]
                        for name in mag_names])
        positions.append(mne.transforms.apply_trans(trans, loc))
    return np.mean(positions, axis=0)


def head_distances_mm(positions: dict[str, np.ndarray]) -> pd.DataFrame:
    """RMS distance (mm) between every two subjects' sensor positions in head coordinates."""
    subjects = list(positions)
    table = np.zeros((len(subjects), len(subjects)))
    for i, a in enumerate(subjects):
        for j, b in enumerate(subjects):
            diff = positions[a] - positions[b]
            table[i, j] = 1e3 * np.sqrt(np.mean(np.sum(diff**2, axis=1)))
    return pd.DataFrame(table, index=subjects, columns=subjects)


def transfer_table(scores: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """Per model and held-out subject: R², share of optimum, distance to training heads.

    The training subjects of a held-out subject are the other subjects that
    were not held out in the same fold.
    """
    per = scores.groupby(["model", "fold", "subject"]).agg(
        r2=("r2", "mean"), optimum_r2=("within_subject_optimum_r2", "mean"),
    ).reset_index()
    held_out_by_fold = scores.groupby("fold")["subject"].unique()
    subjects = list(distances.index)
    mean_mm, nearest_mm = [], []
    for fold, subject in zip(per["fold"], per["subject"]):
        training = [s for s in subjects if s not in set(held_out_by_fold[fold])]
        row = distances.loc[subject, training] if training else pd.Series([np.nan])
        mean_mm.append(float(row.mean()))
        nearest_mm.append(float(row.min()))
    per["head_distance_mean_mm"] = mean_mm
    per["head_distance_nearest_mm"] = nearest_mm
    per["share_of_optimum"] = np.where(per["optimum_r2"] > 0,
                                       per["r2"] / per["optimum_r2"], np.nan)
    return per


def transfer_figure(table: pd.DataFrame) -> plt.Figure:
    """Held-out R² against the mean head-position distance from the training subjects."""
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for i, (model, group) in enumerate(table.groupby("model", sort=False)):
        ax.plot(group["head_distance_mean_mm"], group["r2"], "o", color=f"C{i}", label=model)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xlabel="mean distance of the held-out head from the training heads (mm)",
           ylabel="held-out R² (channel mean)")
    ax.legend(fontsize=7)
    return fig


def read_run_infos(files: list[Path]) -> list[mne.Info]:
    """The measurement info of each run's data file (no data read)."""
    return [mne.io.read_info(path, verbose=False) for path in files]
