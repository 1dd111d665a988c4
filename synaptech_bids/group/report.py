"""The group HTML report: every model against the floor and the ceiling.

Scores are shown only on held-out subjects, next to the within-subject
linear optimum, and the text says plainly which models do not beat the
physics baseline or the training mean.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..bids_io.atomic import atomic_path  # noqa: E402
from ..config import Config  # noqa: E402


def verdicts(summary: pd.DataFrame) -> list[str]:
    """Plain sentences: which models beat the floor and the physics baseline."""
    by_model = summary.set_index("model")
    lines = []
    floor = by_model.loc["training-mean", "r2_mean"] if "training-mean" in by_model.index else 0
    physics = by_model["r2_mean"].get("physics")
    for model, row in by_model.iterrows():
        if model == "training-mean":
            continue
        text = f"{model}: held-out R² {row.r2_mean:.3f} ± {row.r2_ci95:.3f}, "
        if row.optimum_r2_mean > 0:
            text += (f"{100 * row.share_of_optimum_mean:.0f}% of the within-subject "
                     f"optimum (R² {row.optimum_r2_mean:.3f}).")
        else:
            text += (f"against a within-subject optimum of R² {row.optimum_r2_mean:.3f}: "
                     "EEG does not linearly predict this MEG even within a subject, so "
                     "no share of the optimum is meaningful.")
        ceiling = row.get("noise_ceiling_r2_mean", np.nan)
        if np.isfinite(ceiling):
            text += (f" Noise ceiling (simulated truth: share of MEG variance from brain "
                     f"sources) {ceiling:.3f}.")
        if row.r2_mean <= floor:
            text += " It does not beat predicting the training mean."
        elif physics is not None and model != "physics" and row.r2_mean <= physics:
            text += " It does not beat the physics (lead-field) baseline."
        lines.append(text)
    return lines


def network_text(config: Config) -> str:
    """How Synaptech-Net was trained, and where that departs from the paper.

    A reviewer must be able to tell the paper's network from ours: the
    report states every departure rather than leaving it to the config.
    """
    text = (
        f"Synaptech-Net: the paper's U-Net with a bidirectional-LSTM bridge at width "
        f"{config.synaptechnet_width:g} of the paper's, {config.synaptechnet_norm} "
        f"normalisation, trained with Adam (learning rate {config.learning_rate:g}, "
        f"batch {config.batch_size}, MSE) for at most {config.max_epochs} epochs, "
        f"stopped early (patience {config.patience}) on validation subjects drawn from "
        "the training subjects."
    )
    departures = []
    if config.synaptechnet_norm != "instance":
        departures.append(f"{config.synaptechnet_norm} instead of instance normalisation")
    if config.synaptechnet_input_skip:
        departures.append("the EEG handed to the output layer (input skip)")
    if config.synaptechnet_ensemble > 1:
        departures.append(f"the mean of {config.synaptechnet_ensemble} networks trained "
                          "with consecutive seeds, each with its own validation subjects")
    if config.weight_decay > 0:
        departures.append(f"weight decay {config.weight_decay:g}")
    if departures:
        text += " Departures from the paper: " + "; ".join(departures) + "."
    else:
        text += " No departure from the paper's network."
    return text


def lead_field_text(config: Config, sources: dict[str, str]) -> str:
    """Where the source-space translators' lead fields came from, per subject,
    and how they were cleaned and projected as the data were."""
    files = "; ".join(f"sub-{s}: {name}" for s, name in sorted(sources.items()))
    if config.forward_dir is None:
        text = ("Lead fields (physics, sourcespace, adaptive, spectral): the app's own, a "
                "sphere fitted to each subject's digitised head shape and a volume grid of free "
                "dipoles; no MRI was used, and without cortical normals the source-space "
                "translators are at their weakest (docs/translatability.md).")
    else:
        text = ("Lead fields (physics, sourcespace, adaptive, spectral): each subject's "
                f"forward solution from {config.forward_dir}, dipoles fixed along the "
                "cortical normals.")
    if "spectral" in config.translators:
        text += (" spectral: one variance per kept cortical patch and frequency band."
                 if config.spectral_band_sources else
                 " spectral: one weight per frequency band for all kept cortical patches.")
    return (f"{text} Each subject's gains went through the linear cleaning its data went "
            "through, where it was done (Maxwell filter; EEG interpolation and average "
            "reference; ICA; SSP projectors; averaged over runs), so that a prediction lacks "
            f"what the data lack ({files}).")


def write_group_report(
    output_dir: Path, scores: pd.DataFrame, summary: pd.DataFrame, evoked: pd.DataFrame,
    curves: pd.DataFrame, examples: dict[str, np.ndarray], mag_names: list[str],
    sfreq: float, config: Config, transfer: pd.DataFrame | None = None,
    lead_fields: dict[str, str] | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/group.html`` and return its path."""
    report = mne.Report(title="EEG → MEG translation on held-out subjects", verbose=False)
    subjects = sorted(scores["subject"].unique())
    report.add_html(
        "<p>Every score is computed on a subject the model never saw "
        f"(leave-subjects-out over {len(subjects)} subjects). The within-subject "
        "optimum is the R² of the best spatial linear map fitted on half of that "
        "subject's own recording and scored on the other half.</p><ul>"
        + "".join(f"<li>{line}</li>" for line in verdicts(summary)) + "</ul>"
        + summary.to_html(index=False, float_format="%.3f"),
        title="Summary",
    )
    if {"synaptechnet", "hybrid"} & set(config.translators):
        report.add_html(f"<p>{network_text(config)}</p>", title="Synaptech-Net settings")
    if lead_fields:
        report.add_html(f"<p>{lead_field_text(config, lead_fields)}</p>", title="Lead fields")
    report.add_figure(_scores_figure(scores), title="R² per held-out subject")
    # each subject's translatability (participant level) next to its scores (issue 6)
    from ..participant._07_translatability import group_table

    report.add_html(
        "<p>Per held-out subject: channel-mean R² of each model, the within-subject "
        "optimum of the group windows, and the subject's translatability from its "
        "continuous runs (participant level, five contiguous folds in time; the "
        "'share of variance' weights channels by their variance). Both optima bound "
        "what an instantaneous linear map can reach on that subject.</p>"
        + group_table(output_dir, scores).to_html(index=False, float_format="%.3f"),
        title="Translatability and held-out scores per subject",
    )
    if transfer is not None and len(transfer):
        from .transfer import transfer_figure

        report.add_figure(transfer_figure(transfer), title="Transfer across head positions")
        report.add_html(
            "<p>Each held-out subject's score against how far its head sat from the "
            "training subjects' heads (RMS distance of the magnetometers in head "
            "coordinates). A model that depends on head placement loses R² with "
            "distance; one that uses each subject's geometry should not.</p>"
            + transfer.to_html(index=False, float_format="%.3f"),
            title="Transfer table",
        )
    if len(evoked):
        table = evoked.pivot_table(index="model", columns="condition", values="evoked_r")
        report.add_html(table.to_html(float_format="%.3f"), title="Evoked fidelity (r)")
    if len(curves):
        report.add_figure(_curves_figure(curves), title="Learning curves")
    if examples:
        report.add_figure(_example_figure(examples, scores, mag_names, sfreq),
                          title="Translated vs real MEG (held-out subject)")
    target = Path(output_dir) / "group.html"
    with atomic_path(target, suffix=".html") as tmp:
        report.save(tmp, overwrite=True, open_browser=False, verbose=False)
    plt.close("all")
    return target


def _scores_figure(scores: pd.DataFrame) -> plt.Figure:
    per = scores.groupby(["model", "subject"])[["r2", "within_subject_optimum_r2"]].mean()
    per = per.reset_index()
    models = list(dict.fromkeys(per["model"]))
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    for i, model in enumerate(models):
        values = per.loc[per["model"] == model, "r2"]
        ax.scatter(np.full(len(values), i), values, color="k", s=15)
        ax.bar(i, values.mean(), color="C0", alpha=0.5)
    optimum = per.groupby("subject")["within_subject_optimum_r2"].first().mean()
    ax.axhline(optimum, color="C3", ls="--", label="within-subject optimum")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("held-out R² (channel mean)")
    ax.legend()
    return fig


def _curves_figure(curves: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    # one line per ensemble member too (its epochs restart at 1)
    keys = ["model", "fold"] + (["member"] if "member" in curves else [])
    for key, group in curves.groupby(keys, dropna=False):
        model, fold = key[:2]
        member = "" if len(key) < 3 or pd.isna(key[2]) else f" member {int(key[2])}"
        x = group["epoch"] if "epoch" in group else np.arange(len(group))
        for column, style in (("train_loss", "-"), ("val_loss", "--")):
            if column in group:
                ax.plot(x, group[column], style,
                        label=f"{model} fold {fold}{member} {column}")
    ax.set(xlabel="epoch", ylabel="MSE (normalised)", yscale="log")
    ax.legend(fontsize=6)
    return fig


def _example_figure(examples: dict[str, np.ndarray], scores: pd.DataFrame,
                    mag_names: list[str], sfreq: float) -> plt.Figure:
    channel = scores.groupby("meg_channel")["within_subject_optimum_r2"].mean().idxmax()
    index = mag_names.index(channel)
    real = examples["real"]
    times = np.arange(real.shape[-1]) / sfreq
    fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    ax.plot(times, real[index], color="k", lw=1.5, label="real")
    for model, pred in examples.items():
        if model != "real":
            ax.plot(times, pred[index], lw=1, label=model)
    ax.set(xlabel="time in window (s)", ylabel=f"{channel} (fT)")
    ax.legend(fontsize=7)
    return fig
