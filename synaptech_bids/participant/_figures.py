"""Figures of the shared-information section of the subject report.

Each function takes the tables the information step wrote (read back from
disk, averaged over the subject's runs by :func:`add_information_section`)
and returns a matplotlib figure or an HTML table, so the report is the same
whether runs were processed now or skipped as up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd

from .. import information as info_est

#: The section title under which the report shows these figures.
SECTION = "Shared information (EEG–MEG)"

#: Magnetometers shown in the MI topography.
N_TOPO_MAGS = 3

#: Pairs drawn individually in the lag profile.
N_LAG_PAIRS = 5


def add_information_section(report: mne.Report, outputs_per_run: list[dict[str, Any]],
                            eeg_info: mne.Info) -> None:
    """Add the MI matrix, MI topographies, distance curve, lag profile and TE summary.

    Parameters
    ----------
    report : mne.Report
        The subject's report, changed in place.
    outputs_per_run : list of dict
        :func:`~synaptech_bids.participant.run.run_outputs` of each run.
    eeg_info : mne.Info
        Measurement info holding the EEG electrodes (positions for the
        topographies), e.g. from the first run's epochs.
    """
    mi_runs = [pd.read_csv(o["mi"].fpath, sep="\t") for o in outputs_per_run]
    n_runs = len(mi_runs)
    # Runs share the channel set (bad EEG is interpolated); averaging the
    # per-run tables by pair keeps the pairs present in any run.
    mi = (pd.concat(mi_runs).groupby(["eeg_channel", "meg_channel"], sort=False)
          [["mi", "distance", "best_lag"]].mean().reset_index())
    sidecar = json.loads(Path(outputs_per_run[0]["mi"].copy()
                              .update(extension=".json").fpath).read_text())
    note = (f" Mean over the subject's {n_runs} runs." if n_runs > 1 else "")
    estimator = sidecar.get("Estimator", "mutual information")

    report.add_figure(mi_matrix_figure(mi), title="MI matrix (EEG × magnetometers)",
                      section=SECTION,
                      caption=f"{estimator} at each pair's best lag, in bits.{note}")
    report.add_figure(mi_topomap_figure(mi, eeg_info), title="MI topography",
                      section=SECTION,
                      caption=f"For the {N_TOPO_MAGS} magnetometers with the highest MI, "
                      "the MI (bits, best lag) of every EEG electrode on the EEG "
                      f"layout; the star marks the electrode nearest to it.{note}")

    curve = pd.concat([pd.read_csv(o["mi_distance"].fpath, sep="\t")
                       for o in outputs_per_run])
    curve = (curve.groupby(["electrode", "bin_center"], sort=False)
             [["mi_mean", "mi_sem", "n_pairs"]].mean().reset_index())
    try:
        decay = info_est.fit_decay(mi["distance"], mi["mi"])
    except (ValueError, RuntimeError) as err:  # too few pairs, no convergence
        decay = {"error": str(err)}
    report.add_figure(distance_figure(curve, decay), title="MI vs EEG–MEG distance",
                      section=SECTION,
                      caption="Best-lag MI by distance bin, pooled over electrodes "
                      "(mean ± SEM over pairs) and per electrode (grey), with the "
                      "exponential and power-law decays fitted to every pair's MI "
                      f"(the better by AICc in bold): cf. the paper's Figure 6.{note}")

    lag_tables = [pd.read_csv(o["mi_lags"].fpath, sep="\t") for o in outputs_per_run]
    profile = pd.concat(lag_tables).groupby("lag", sort=True).mean().reset_index()
    cubes = [np.load(o["mi_lagged"].fpath) for o in outputs_per_run]
    same_shape = all(c.shape == cubes[0].shape for c in cubes)
    cube = np.mean(cubes, axis=0) if same_shape else cubes[0]
    report.add_figure(lag_profile_figure(profile, cube, mi_runs[0]), title="MI lag profile",
                      section=SECTION,
                      caption="MI against the EEG–MEG lag (positive: MEG lags EEG), "
                      "mean over all pairs, over the distance pairs, and for the "
                      f"{N_LAG_PAIRS} pairs of highest MI."
                      + (note if same_shape else " First run."))

    te = [pd.read_csv(o["te"].fpath, sep="\t") for o in outputs_per_run]
    report.add_html(te_summary_html(te, [o["te"].fpath.name for o in outputs_per_run]),
                    title="Transfer entropy", section=SECTION)


def mi_matrix_figure(mi: pd.DataFrame) -> plt.Figure:
    """Heat map of MI, EEG electrodes (rows) × magnetometers (columns)."""
    matrix = mi.pivot(index="eeg_channel", columns="meg_channel", values="mi")
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    im = ax.imshow(matrix.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set(xlabel=f"magnetometer ({matrix.shape[1]})", ylabel=f"EEG ({matrix.shape[0]})")
    step = max(1, matrix.shape[0] // 14)
    ax.set_yticks(range(0, matrix.shape[0], step), matrix.index[::step], fontsize=6)
    step = max(1, matrix.shape[1] // 20)
    ax.set_xticks(range(0, matrix.shape[1], step), matrix.columns[::step], fontsize=6,
                  rotation=90)
    fig.colorbar(im, ax=ax, label="MI (bit)")
    return fig


def mi_topomap_figure(mi: pd.DataFrame, eeg_info: mne.Info,
                      n_mags: int = N_TOPO_MAGS) -> plt.Figure:
    """MI of every EEG electrode with each of the best-paired magnetometers."""
    top = (mi.groupby("meg_channel")["mi"].max().sort_values(ascending=False)
           .index[:n_mags].tolist())
    by_pair = mi.dropna(subset=["mi"]).set_index(["meg_channel", "eeg_channel"])
    fig, axes = plt.subplots(1, len(top), figsize=(3.2 * len(top), 3.4),
                             layout="constrained", squeeze=False)
    for ax, mag in zip(axes[0], top):
        # the electrodes with a value for this magnetometer, in the info's order
        names = [c for c in eeg_info["ch_names"] if c in set(by_pair.loc[mag].index)]
        info = mne.pick_info(eeg_info, mne.pick_channels(eeg_info["ch_names"], names,
                                                         ordered=True))
        values = by_pair.loc[mag].reindex(names)
        nearest = values["distance"].to_numpy().argmin()
        mask = np.zeros(len(names), bool)
        mask[nearest] = True
        im, _ = mne.viz.plot_topomap(
            values["mi"].to_numpy(), info, axes=ax, show=False, cmap="viridis",
            vlim=(0, None), mask=mask, contours=4,
            mask_params=dict(marker="*", markerfacecolor="w", markersize=12),
        )
        ax.set_title(f"{mag}\nmax {values['mi'].max():.3f} bit", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.7, label="MI (bit)")
    return fig


def distance_figure(curve: pd.DataFrame, decay: dict[str, Any]) -> plt.Figure:
    """Binned MI against distance with the fitted decays (the paper's Figure 6)."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for _, rows in curve[curve["electrode"] != "pooled"].groupby("electrode"):
        ax.plot(rows["bin_center"], rows["mi_mean"], color="0.8", lw=0.5, zorder=1)
    pooled = curve[curve["electrode"] == "pooled"].dropna(subset=["mi_mean"])
    ax.errorbar(pooled["bin_center"], pooled["mi_mean"], yerr=pooled["mi_sem"], fmt="o-",
                color="k", capsize=3, label="pooled (mean ± SEM)", zorder=3)
    if len(pooled):
        d = np.linspace(max(pooled["bin_center"].min(), 0.5), pooled["bin_center"].max(), 200)
        exp_fit, pow_fit = decay.get("exponential"), decay.get("power_law")
        best = decay.get("best")
        if exp_fit:
            ax.plot(d, exp_fit["a"] * np.exp(-d / exp_fit["lambda"]) + exp_fit["c"],
                    color="C0", lw=2.5 if best == "exponential" else 1,
                    label=f"exponential, λ = {exp_fit['lambda']:.1f} cm "
                    f"(R² {exp_fit['r2']:.2f})")
        if pow_fit:
            ax.plot(d, pow_fit["a"] * d ** -pow_fit["b"], color="C1",
                    lw=2.5 if best == "power_law" else 1,
                    label=f"power law, b = {pow_fit['b']:.2f} (R² {pow_fit['r2']:.2f})")
    ax.set(xlabel="EEG–magnetometer distance (cm)", ylabel="MI (bit)")
    ax.legend(fontsize=8)
    return fig


def lag_profile_figure(profile: pd.DataFrame, cube: np.ndarray,
                       mi_first_run: pd.DataFrame) -> plt.Figure:
    """Mean MI against lag, and the lag curves of the best pairs."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    lags = profile["lag"].to_numpy()
    ax.plot(lags, profile["mi_mean_all_pairs"], "k-", lw=2, label="all pairs")
    if profile["mi_mean_distance_pairs"].notna().any():
        ax.plot(lags, profile["mi_mean_distance_pairs"], "k--", lw=2,
                label="distance pairs")
    if cube.ndim == 3 and cube.shape[2] == lags.size:
        # the cube's channel order is that of the desc-mi table (see its sidecar)
        eeg = list(dict.fromkeys(mi_first_run["eeg_channel"]))
        mag = list(dict.fromkeys(mi_first_run["meg_channel"]))
        best = cube.max(axis=2)
        for flat in np.argsort(best, axis=None)[::-1][:N_LAG_PAIRS]:
            i, j = np.unravel_index(flat, best.shape)
            ax.plot(lags, cube[i, j], lw=1, label=f"{eeg[i]}–{mag[j]}")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set(xlabel="lag (ms, positive: MEG lags EEG)", ylabel="MI (bit)")
    ax.legend(fontsize=7)
    return fig


def te_summary_html(tables: list[pd.DataFrame], names: list[str],
                    alpha: float = 0.05) -> str:
    """Per-run summary of the transfer entropy of the distance pairs, and its top pairs."""
    rows = []
    for name, te in zip(names, tables):
        rows.append({
            "run": name.split("_desc-")[0],
            "pairs": len(te),
            "median TE EEG→MEG (bit)": _fmt(te["te_eeg_to_meg"].median()),
            "median TE MEG→EEG (bit)": _fmt(te["te_meg_to_eeg"].median()),
            f"significant EEG→MEG (p<{alpha:g})": int((te["p_eeg_to_meg"] < alpha).sum()),
            f"significant MEG→EEG (p<{alpha:g})": int((te["p_meg_to_eeg"] < alpha).sum()),
            "pairs with TE EEG→MEG > MEG→EEG": int(
                (te["te_eeg_to_meg"] > te["te_meg_to_eeg"]).sum()),
        })
    html = pd.DataFrame(rows).to_html(index=False)
    all_te = pd.concat(tables)
    if len(all_te):
        top = (all_te.groupby(["eeg_channel", "meg_channel"])
               [["distance", "te_eeg_to_meg", "te_meg_to_eeg"]].mean()
               .assign(net=lambda t: t["te_eeg_to_meg"] - t["te_meg_to_eeg"])
               .sort_values("te_eeg_to_meg", ascending=False).head(10).reset_index())
        html += ("<p>The 10 pairs of highest TE EEG→MEG (mean over runs; "
                 "net = EEG→MEG − MEG→EEG):</p>"
                 + top.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    return html


def _fmt(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4f}"
