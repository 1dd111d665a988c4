"""Step 7: translatability — how much of each magnetometer EEG can predict, per run.

Before any translator is trained, this step says what any of them can hope
for on these data. On the cleaned continuous run (ICA-cleaned,
average-referenced EEG and EOG/ECG-cleaned magnetometers, as step 6 uses),
per magnetometer:

- ``r2_cv``: the share of its variance that the best instantaneous linear
  map from all EEG channels predicts, fitted within this run and
  cross-validated in contiguous blocks of time (the ridge penalty chosen
  inside the training blocks), and the same per frequency band;
- ``mi_bits``: the multivariate Gaussian-copula MI between all EEG channels
  (their non-null principal components) and the magnetometer;
- ``gaussian_share``: ``1 - 2^(-2 mi_bits)``, the R² that MI implies for
  Gaussian data.

The headline is the share of all magnetometer variance predicted (the
variance-weighted mean of ``r2_cv``). A translator that uses time or
non-linearity can exceed it; a cross-subject spatial linear map cannot (up
to estimation noise). The estimators and their maths live in
:mod:`synaptech_bids.information.translatability`; this module feeds them,
lays out the table and its sidecar, and draws the report's topography.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd

from ..bids_io.atomic import write_json, write_tsv
from ..information.translatability import translatability

#: Contiguous blocks of time of the cross-validation.
N_FOLDS = 5

COLUMNS = {
    "meg_channel": {"Description": "magnetometer"},
    "r2_cv": {"Description": "share of this magnetometer's variance predicted by the "
              "best instantaneous linear map from all EEG channels, fitted within the "
              "run and scored on held-out contiguous blocks of time (ridge penalty "
              "chosen inside the training blocks); 0: no better than its mean"},
    "r2_alpha": {"Description": "r2_cv after band-passing EEG and MEG at 8-13 Hz"},
    "r2_beta": {"Description": "r2_cv after band-passing EEG and MEG at 13-30 Hz"},
    "r2_gamma": {"Description": "r2_cv after band-passing EEG and MEG at 30-100 Hz "
                 "(capped at 0.45 x the sampling frequency)"},
    "mi_bits": {"Description": "Gaussian-copula MI between all EEG channels (their "
                "non-null principal components) and this magnetometer, lag 0, "
                "bias-corrected", "Units": "bit"},
    "gaussian_share": {"Description": "1 - 2^(-2 mi_bits): the R² this MI implies for "
                       "Gaussian data (in-sample)"},
    "variance_ft2": {"Description": "variance of this magnetometer in the run (the "
                     "weight of its r2 in the run's headline)", "Units": "fT^2"},
}


def translatability_inputs(raw: mne.io.BaseRaw) -> dict[str, Any]:
    """The cleaned continuous EEG and magnetometers of one run (bad channels left out).

    Returns
    -------
    inputs : dict
        ``eeg`` (n_eeg, n_times) in V, ``meg`` (n_mag, n_times) in T,
        ``eeg_names``, ``mag_names``, ``sfreq``.
    """
    bads = set(raw.info["bads"])
    types = raw.get_channel_types()
    names = {t: [c for c, ct in zip(raw.ch_names, types) if ct == t and c not in bads]
             for t in ("eeg", "mag")}
    return {
        "eeg": raw.get_data(picks=names["eeg"]),
        "meg": raw.get_data(picks=names["mag"]),
        "eeg_names": names["eeg"],
        "mag_names": names["mag"],
        "sfreq": float(raw.info["sfreq"]),
    }


def run_translatability(raw: mne.io.BaseRaw) -> dict[str, Any]:
    """Compute the run's translatability table and its headline.

    Parameters
    ----------
    raw : Raw
        The cleaned continuous run (ICA-cleaned EEG and magnetometers).

    Returns
    -------
    result : dict
        ``table`` (DataFrame, one row per magnetometer, columns of
        :data:`COLUMNS`), ``summary`` (dict of headline numbers) and
        ``meta`` (dict for the sidecar).
    """
    inputs = translatability_inputs(raw)
    res = translatability(inputs["eeg"], inputs["meg"], inputs["sfreq"], n_folds=N_FOLDS)
    table = pd.DataFrame({"meg_channel": inputs["mag_names"], "r2_cv": res["r2"]})
    for band in ("alpha", "beta", "gamma"):
        table[f"r2_{band}"] = res["r2_bands"].get(band, np.full(len(table), np.nan))
    table["mi_bits"] = res["mi"]
    table["gaussian_share"] = res["gaussian_share"]
    table["variance_ft2"] = res["variance"] * 1e30
    summary = {
        "r2_cv": res["r2_overall"],
        "r2_cv_channel_mean": float(np.mean(res["r2"])),
        **{f"r2_{band}": value for band, value in res["r2_bands_overall"].items()},
        "gaussian_share": res["gaussian_share_overall"],
        "mi_bits_mean": float(np.mean(res["mi"])),
        "n_samples": res["n_samples"],
    }
    meta = {
        "Summary": summary,
        "SummaryDescription": "r2_cv, r2_<band> and gaussian_share: share of all "
        "magnetometer variance (variance-weighted over channels); r2_cv_channel_mean: "
        "plain mean over channels (as the group level's within-subject optimum)",
        "Method": {
            "LinearOptimum": "ridge map from all EEG channels, fitted on the other "
            f"blocks of {N_FOLDS} contiguous blocks of time and scored on the left-out "
            "one (residuals pooled); penalty chosen per magnetometer by leaving one "
            "training block out",
            "Bands": {band: list(edges) for band, edges in res["bands"].items()},
            "BandFilter": "4th-order Butterworth band-pass, zero-phase, on EEG and MEG",
            "MI": "Gaussian-copula MI (Ince et al. 2017) between the EEG's non-null "
            "principal components (jointly) and each magnetometer, lag 0, with Ince's "
            "analytical bias correction",
            "NEEGChannels": len(inputs["eeg_names"]),
            "NEEGComponents": res["n_components"],
        },
        "Data": "cleaned continuous run: ICA-cleaned, average-referenced EEG and "
        "EOG/ECG-cleaned magnetometers, band-passed and resampled",
        "SamplingFrequency": inputs["sfreq"],
        "EEGChannels": inputs["eeg_names"],
    }
    return {"table": table, "summary": summary, "meta": meta}


def write_translatability(result: dict[str, Any], path: Path) -> None:
    """Write the table (``desc-translatability_channels.tsv``) and its sidecar."""
    write_tsv(path, result["table"])
    write_json(Path(path).with_suffix(".json"), {**COLUMNS, **result["meta"]})


def _combine(summaries: list[dict]) -> dict[str, float]:
    """Sample-weighted mean of run headlines."""
    weights = np.array([s["n_samples"] for s in summaries], dtype=float)
    keys = [k for k in summaries[0] if k != "n_samples"]
    return {k: float(np.average([s.get(k, np.nan) for s in summaries], weights=weights))
            for k in keys}


def subject_headlines(output_dir: Path, subjects: list[str]) -> pd.DataFrame:
    """Each subject's translatability headline, read from its derivatives.

    Runs are combined by a mean weighted by their samples. Subjects without
    translatability derivatives are left out.
    """
    rows = []
    for subject in subjects:
        sidecars = sorted((Path(output_dir) / f"sub-{subject}").rglob(
            f"sub-{subject}_*desc-translatability_channels.json"))
        if not sidecars:
            continue
        summaries = [_read_json(p)["Summary"] for p in sidecars]
        rows.append({"subject": subject, **_combine(summaries), "n_runs": len(summaries)})
    return pd.DataFrame(rows)


def group_table(output_dir: Path, scores: pd.DataFrame) -> pd.DataFrame:
    """Held-out scores next to each subject's translatability (channel means).

    Parameters
    ----------
    output_dir : Path
        The derivatives root (participant outputs are read from it).
    scores : DataFrame
        The group level's per-channel scores (``model``, ``subject``, ``r2``,
        ``within_subject_optimum_r2``).
    """
    per = scores.groupby(["subject", "model"])["r2"].mean().unstack("model")
    per.columns = [f"held-out R² {m}" for m in per.columns]
    per["within-subject optimum (group windows)"] = (
        scores.groupby("subject")["within_subject_optimum_r2"].mean())
    head = subject_headlines(output_dir, sorted(scores["subject"].astype(str).unique()))
    if len(head):
        head = head.set_index("subject").rename(columns={
            "r2_cv_channel_mean": "translatability R² (channel mean)",
            "r2_cv": "translatability R² (share of variance)",
            "r2_alpha": "alpha", "r2_beta": "beta", "r2_gamma": "gamma",
            "gaussian_share": "Gaussian share from MI", "mi_bits_mean": "MI (bit, mean)",
        }).drop(columns=["n_runs"])
        per.index = per.index.astype(str)
        per = per.join(head, how="left")
    return per.reset_index()


def _read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def add_to_report(report: mne.Report, tsv_paths: list[Path], info: mne.Info) -> None:
    """Add the subject's translatability headline, run table and topographies.

    Parameters
    ----------
    report : Report
    tsv_paths : list of Path
        The runs' ``desc-translatability_channels.tsv`` (missing ones skipped).
    info : Info
        Measurement info holding the magnetometers' positions (first run).
    """
    import matplotlib.pyplot as plt

    tsv_paths = [Path(p) for p in tsv_paths if Path(p).is_file()]
    if not tsv_paths:
        return
    tables = [pd.read_csv(p, sep="\t") for p in tsv_paths]
    summaries = [_read_json(p.with_suffix(".json"))["Summary"] for p in tsv_paths]
    head = _combine(summaries)
    bands = ", ".join(f"{b} {100 * head[f'r2_{b}']:.0f}%" for b in ("alpha", "beta", "gamma")
                      if f"r2_{b}" in head)
    rows = pd.DataFrame([{"run": p.name.split("_desc-")[0], **s}
                         for p, s in zip(tsv_paths, summaries)])
    headline = (f"EEG linearly predicts {100 * head['r2_cv']:.0f}% of the magnetometer "
                "variance" if head["r2_cv"] > 0.005 else "EEG linearly predicts none of the "
                f"magnetometer variance (R² {head['r2_cv']:.3f})")
    report.add_html(
        f"<p><b>{headline}</b> (within subject, cross-validated in time; channel mean "
        f"R² {head['r2_cv_channel_mean']:.3f}). Per band: {bands}. The multivariate "
        f"Gaussian-copula MI averages {head['mi_bits_mean']:.3f} bit per magnetometer, "
        f"a Gaussian-equivalent share of {100 * head['gaussian_share']:.0f}%. No "
        "translator that maps EEG to MEG instantaneously and linearly can exceed this "
        "on this subject (up to estimation noise); one that uses time or "
        "non-linearity can. A broadband share far below the bands' means that most "
        "magnetometer variance lies where EEG sees nothing (e.g. slow environmental "
        "fields); a Gaussian share above R² flags non-linear dependence or the in-sample "
        "MI's optimism on slow, autocorrelated signals.</p>"
        + rows.to_html(index=False, float_format="%.3f"),
        title="Translatability", section="Translatability",
    )
    mean = pd.concat(tables).groupby("meg_channel").mean(numeric_only=True)
    picks = [c for c in mean.index if c in info.ch_names]
    mag_info = mne.pick_info(info, [info.ch_names.index(c) for c in picks])
    columns = [c for c in ("r2_cv", "r2_alpha", "r2_beta", "r2_gamma", "gaussian_share")
               if c in mean and mean[c].notna().all()]
    vmax = max(float(mean.loc[picks, columns].to_numpy().max()), 1e-3)
    fig, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 2.8),
                             layout="constrained")
    for ax, column in zip(np.atleast_1d(axes), columns):
        im, _ = mne.viz.plot_topomap(mean.loc[picks, column].to_numpy(), mag_info, axes=ax,
                                     vlim=(0, vmax), cmap="viridis", show=False)
        title = "Gaussian share (MI)" if column == "gaussian_share" else (
            column.replace("r2_", "R² ").replace("cv", "broadband"))
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.7, label="share of variance")
    report.add_figure(fig, title="Translatability topography", section="Translatability",
                      caption="Per magnetometer (mean over runs): the share of its variance "
                      "EEG predicts linearly (cross-validated in time), per band, and the "
                      "share implied by the multivariate Gaussian-copula MI.")
