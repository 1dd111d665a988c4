"""The subject's HTML report: what was done to the data, and what came out.

Built only from the derivatives on disk (never from state in memory), so it
is the same whether the runs were processed now or skipped as up to date.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are made on headless machines

import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import pandas as pd  # noqa: E402

from .._version import __version__  # noqa: E402
from ..bids_io.atomic import atomic_path  # noqa: E402
from ..bids_io.read import Run  # noqa: E402
from ..config import Config  # noqa: E402


def methods_text(config: Config, log: dict) -> str:
    """Boilerplate methods paragraph for a paper, from the first run's log."""
    pre = log["Preprocessing"]
    notch = pre["NotchFrequencies"]
    notch_text = (
        f"notch-filtered at {', '.join(f'{f:g}' for f in notch)} Hz, " if notch else ""
    )
    return (
        f"Data were preprocessed with synaptech-bids {__version__} (MNE-Python "
        f"{mne.__version__}). "
        + ("Besides the bad channels listed in channels.tsv, flat and noisy MEG "
           "sensors were found automatically by their departure from a "
           "signal-space-separation reconstruction (MNE's find_bad_channels_maxwell, "
           "40 Hz low-passed data) and marked bad, and flat, noisy and uncorrelated "
           "EEG electrodes by a robust amplitude and correlation test. "
           if config.auto_bad_channels else "")
        + "Bad EEG channels "
        + ("" if config.auto_bad_channels else "listed in channels.tsv ")
        + "were interpolated with spherical splines and EEG was re-referenced to the "
        f"average of all electrodes. Recordings were {notch_text}band-pass "
        f"filtered at {config.l_freq:g}–{config.h_freq:g} Hz (zero-phase FIR) and "
        f"resampled to {config.resample_sfreq:g} Hz. "
        + ("The MEG was then Maxwell-filtered (signal-space separation, MNE's "
           "maxwell_filter, internal order 8, external order 3, origin fitted to "
           "the head shape, no fine-calibration or cross-talk file) to remove the "
           "fields of sources outside the helmet. "
           if pre.get("MaxwellFilter", {}).get("Method") else "")
        + ("Eye-blink and heartbeat components were removed by ICA (Picard, orthogonal "
           "extended, one per modality, fitted on 1 Hz high-passed data, components "
           "matched to "
           "the EOG and ECG channels): always from the MEG, and from the EEG in a "
           "separate ICA-cleaned version; the blink left in the MEG after ICA was "
           "projected out with one EOG SSP vector per sensor type. " if config.ica else "")
        + ("EEG components were also labelled by ICLabel (mne-icalabel; the EEG ICA "
           "by Picard extended infomax, as ICLabel expects), and those labelled eye "
           "blink or heart beat with a probability of at least 0.8 were removed. "
           if "ICLabel" in log.get("ICA", {}).get("EEG", {}) else "")
        + f"Epochs from "
        f"{config.epochs_tmin:g} to {config.epochs_tmax:g} s around each stimulus "
        f"were baseline-corrected ({config.baseline[0]:g} to {config.baseline[1]:g} s) "
        "and rejected when their peak-to-peak amplitude exceeded "
        + ("global thresholds estimated per run and channel type by autoreject "
           "(get_rejection_threshold, 5-fold cross-validation). "
           if config.reject == "autoreject" else
           f"{config.reject_eeg_uv:g} µV (EEG) or {config.reject_mag_ft:g} fT "
           "(magnetometers). ")
        + "EEG electrodes and MEG sensors were expressed in head "
        "coordinates with each run's device-to-head transform; each magnetometer "
        f"was paired with the electrodes within {config.pair_max_distance_cm:g} cm."
    )


def write_subject_report(subject: str, runs: list[Run], output_dir: Path,
                         config: Config) -> Path:
    """Write ``OUTPUT_DIR/sub-<label>.html`` and return its path."""
    from .run import run_outputs

    report = mne.Report(title=f"sub-{subject}: EEG–MEG preprocessing", verbose=False)
    logs, epochs_list = [], []
    for run in runs:
        outputs = run_outputs(run, output_dir)
        logs.append(json.loads(Path(outputs["log"].fpath).read_text()))
        epochs_list.append(mne.read_epochs(outputs["epochs"].fpath, verbose=False))
    report.add_html(f"<p>{methods_text(config, logs[0])}</p>", title="Methods")

    rows = []
    for run, log in zip(runs, logs):
        ep = log["Epochs"]
        rows.append({
            "run": run.name,
            "kept": ep["Kept"],
            "total": ep["Total"],
            "rejected (reason: count)": ", ".join(
                f"{k}: {v}" for k, v in ep["RejectedByReason"].items()) or "none",
            "interpolated EEG": ", ".join(log["Preprocessing"]["InterpolatedEEGChannels"])
            or "none",
            "evoked SNR (EEG / MAG)": " / ".join(
                f"{v:.1f}" for v in ep["EvokedSNR"].values()),
            "EEG positions": log["Coregistration"]["EEGPositionSource"],
            "ICA removed (EEG / MEG)": _ica_text(log.get("ICA", {})),
        })
        auto = log["Preprocessing"].get("AutoBadChannels")
        if auto is not None:
            rows[-1]["found bad automatically"] = ", ".join(
                f"{modality} {key.lower()}: {', '.join(chs)}"
                for modality, entry in auto.items()
                for key, chs in entry["Channels"].items() if chs) or "none"
        if config.reject == "autoreject":
            units = {"eeg": (1e6, "µV"), "mag": (1e15, "fT"), "grad": (1e13, "fT/cm")}
            rows[-1]["rejection thresholds"] = ", ".join(
                f"{k}: {v * units[k][0]:.0f} {units[k][1]}"
                for k, v in ep["RejectPeakToPeak"].items())
    report.add_html(pd.DataFrame(rows).to_html(index=False), title="Runs and rejections")

    for run in runs:
        psd = pd.read_csv(run_outputs(run, output_dir)["psd"].fpath, sep="\t")
        report.add_figure(_psd_figure(psd), title=f"PSD before/after: {run.name}",
                          section="Spectra")

    positions = pd.read_csv(run_outputs(runs[0], output_dir)["positions"].fpath, sep="\t")
    pairs = pd.read_csv(run_outputs(runs[0], output_dir)["pairs"].fpath, sep="\t")
    report.add_figure(_layout_figure(positions, pairs), title="Sensors and pairs",
                      caption="EEG electrodes (dots), magnetometers (triangles) and "
                      f"the pairs within {config.pair_max_distance_cm:g} cm (lines), "
                      "head coordinates of the first run, seen from above.")

    # Sensor-level averages across runs: heads moved a few mm between runs, so
    # MNE refuses to concatenate; for this display the first run's transform
    # is assigned to all (the data are unchanged; per-run positions are in
    # the *_space-head_desc-sensors_channels.tsv files).
    # Likewise each run's EOG projectors differ; they are already applied to
    # the data, so their records are dropped for this display only.
    for other in epochs_list[1:]:
        other.info["dev_head_t"] = epochs_list[0].info["dev_head_t"]
    for one in epochs_list:
        with one.info._unlock():
            one.info["projs"] = []
    epochs = mne.concatenate_epochs(epochs_list, verbose=False)
    for condition in sorted(epochs.event_id):
        if not len(epochs[condition]):  # every epoch of it rejected: nothing to show
            report.add_html(f"<p>No epoch of condition {condition} was kept.</p>",
                            title=f"Evoked: {condition}", section="Evoked responses")
            continue
        evoked = epochs[condition].average(picks=["eeg", "mag"])
        report.add_figure(_evoked_figure(evoked), title=f"Evoked: {condition}",
                          section="Evoked responses")

    # MI matrix, topographies, distance curve, lag profile and TE (issue 4).
    from ._figures import add_information_section

    add_information_section(report, [run_outputs(run, output_dir) for run in runs],
                            epochs_list[0].copy().pick("eeg").info)
    # what any translator can hope for on this subject (issue 6)
    from ._07_translatability import add_to_report

    add_to_report(report, [run_outputs(run, output_dir)["translatability"].fpath
                           for run in runs], epochs_list[0].info)
    target = Path(output_dir) / f"sub-{subject}.html"
    with atomic_path(target, suffix=".html") as tmp:
        report.save(tmp, overwrite=True, open_browser=False, verbose=False)
    plt.close("all")
    return target


def _ica_text(ica_log: dict) -> str:
    if "Skipped" in ica_log:
        return f"skipped ({ica_log['Skipped']})"
    parts = []
    for modality in ("EEG", "MEG"):
        entry = ica_log.get(modality)
        if entry is None:
            parts.append(f"not cleaned ({ica_log.get(modality + 'Skipped', 'skipped')})")
            continue
        how = " by ICLabel and channels" if "ICLabel" in entry else ""
        parts.append(f"{len(entry['Excluded'])}/{entry['NComponents']} "
                     f"(EOG {entry['EOGComponents']}, ECG {entry['ECGComponents']}{how})")
    return " / ".join(parts)


def _psd_figure(psd: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
    for ax, ch_type, unit in zip(axes, ("eeg", "mag"), ("V²/Hz", "T²/Hz")):
        ax.plot(psd["freq"], psd[f"{ch_type}_before"], label="before", lw=1)
        ax.plot(psd["freq"], psd[f"{ch_type}_after"], label="after", lw=1)
        ax.set(xlabel="frequency (Hz)", ylabel=f"log10 PSD ({unit})",
               title=ch_type.upper())
        ax.legend()
    return fig


def _layout_figure(positions: pd.DataFrame, pairs: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    pos = positions.set_index("name")
    eeg = positions[positions["type"] == "EEG"]
    mag = positions[positions["type"] == "MAG"]
    for _, row in pairs.iterrows():
        a, b = pos.loc[row["eeg_channel"]], pos.loc[row["meg_channel"]]
        ax.plot([a.x * 100, b.x * 100], [a.y * 100, b.y * 100], color="0.7", lw=0.5)
    ax.scatter(eeg.x * 100, eeg.y * 100, s=12, label="EEG")
    ax.scatter(mag.x * 100, mag.y * 100, s=14, marker="^", label="MAG")
    ax.set(xlabel="x (cm, right)", ylabel="y (cm, nasion)", aspect="equal")
    ax.legend()
    return fig


def _evoked_figure(evoked: mne.Evoked) -> plt.Figure:
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), layout="constrained", sharex=True)
    for ax, ch_type, scale, unit in zip(axes, ("eeg", "mag"), (1e6, 1e15), ("µV", "fT")):
        data = evoked.copy().pick(ch_type).data * scale
        ax.plot(evoked.times, data.T, lw=0.5, color="k", alpha=0.4)
        ax.axvline(0, color="r", lw=0.8)
        ax.set(ylabel=f"{ch_type.upper()} ({unit})")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{evoked.comment} (n={evoked.nave})")
    return fig
