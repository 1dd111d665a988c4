"""The participant level: every run of each subject, step by step.

For each subject: find its EEG+MEG runs, then per run (one at a time, so
memory holds one run at full rate): preprocess → epochs → sensor positions
→ pairing, each output written atomically. A run whose inputs (file
contents), configuration and pipeline version are unchanged since its last
successful processing is skipped; ``--force`` redoes it. Finally the
subject's report.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
from mne_bids import BIDSPath

from .._version import __version__
from ..bids_io.atomic import atomic_path, write_json, write_tsv
from ..bids_io.derivatives import provenance, write_dataset_description
from ..bids_io.paths import content_hash, derivative_path, subject_path
from ..bids_io.read import Run, find_runs, read_run
from ..config import Config
from ..errors import AppError, ExitCode
from ..progress import step
from ._01_preprocess import preprocess_raw
from ._02_ica import remove_artefacts
from ._03_epochs import epochs_like, evoked_snr, make_epochs
from ._04_coregister import find_t1w, head_movement_mm, head_to_t1w, sensor_positions
from ._05_pairing import PAIRS_COLUMNS, distance_table, pair_sensors
from ._06_information import shared_information
from ._07_translatability import run_translatability, write_translatability

logger = logging.getLogger(__name__)


def run_participant_level(
    *,
    bids_root: Path,
    output_dir: Path,
    subjects: list[str],
    sessions: list[str] | None,
    tasks: list[str] | None,
    config: Config,
    seed: int,
    force: bool,
    source_description: dict,
    **_: Any,
) -> None:
    """Process each subject; see the module docstring.

    All subjects' runs are found before any work, so that a subject without
    usable runs fails the job at once.
    """
    write_dataset_description(output_dir, source_description, bids_root)
    runs = {s: find_runs(bids_root, s, sessions, tasks) for s in subjects}
    for subject in subjects:
        process_subject(subject, runs[subject], output_dir, config, seed, force)


def run_outputs(run: Run, output_dir: Path, config: Config | None = None) -> dict[str, Any]:
    """The files one run produces (paths are BIDSPaths).

    With ``config.save_continuous``, also the cleaned continuous recordings.
    """
    bp = run.bids_path
    outputs = {
        "epochs": derivative_path(bp, output_dir, desc="clean", suffix="epo",
                                  extension=".fif"),
        "epochs_ica": derivative_path(bp, output_dir, desc="ica", suffix="epo",
                                      extension=".fif"),
        "positions": derivative_path(bp, output_dir, desc="sensors", suffix="channels",
                                     extension=".tsv", space="head"),
        "pairs": derivative_path(bp, output_dir, desc="pairs", suffix="channels",
                                 extension=".tsv"),
        "distances": derivative_path(bp, output_dir, desc="distances",
                                     suffix="channels", extension=".tsv"),
        "psd": derivative_path(bp, output_dir, desc="psd", suffix="spectrum",
                               extension=".tsv"),
        "mi": derivative_path(bp, output_dir, desc="mi", suffix="connectivity",
                              extension=".tsv"),
        "mi_lagged": derivative_path(bp, output_dir, desc="milagged",
                                     suffix="connectivity", extension=".npy"),
        "mi_lags": derivative_path(bp, output_dir, desc="milags", suffix="connectivity",
                                   extension=".tsv"),
        "te": derivative_path(bp, output_dir, desc="te", suffix="connectivity",
                              extension=".tsv"),
        "mi_distance": derivative_path(bp, output_dir, desc="midistance",
                                       suffix="connectivity", extension=".tsv"),
        "pruned": derivative_path(bp, output_dir, desc="pruned", suffix="channels",
                                  extension=".tsv"),
        "translatability": derivative_path(bp, output_dir, desc="translatability",
                                           suffix="channels", extension=".tsv"),
        "log": derivative_path(bp, output_dir, desc="preproc", suffix="log",
                               extension=".json"),
    }
    if config is not None and config.save_continuous:
        outputs["continuous"] = derivative_path(bp, output_dir, desc="clean", suffix="meg",
                                                extension=".fif")
        outputs["continuous_ica"] = derivative_path(bp, output_dir, desc="ica", suffix="meg",
                                                    extension=".fif")
    return outputs


def ica_outputs(run: Run, output_dir: Path) -> dict[str, Any]:
    """Each modality's fitted ICA (``desc-meg_ica.fif``, ``desc-eeg_ica.fif``).

    Written when that modality's ICA ran, so they are not in
    :func:`run_outputs` (a run without EOG and ECG channels has none). The
    group level reads them to clean the lead fields as the data were
    cleaned (:mod:`..group.cleaning`), and a reviewer can
    open them with ``mne.preprocessing.read_ica``.
    """
    return {modality: derivative_path(run.bids_path, output_dir, desc=modality, suffix="ica",
                                      extension=".fif")
            for modality in ("meg", "eeg")}


def run_inputs(run: Run) -> list[Path]:
    """The input files that determine a run's outputs (data and sidecars)."""
    bp = run.bids_path
    files = [bp.fpath]
    for suffix, ext in (("events", ".tsv"), ("channels", ".tsv"), ("meg", ".json")):
        sidecar = bp.copy().update(suffix=suffix, extension=ext).fpath
        if sidecar.is_file():
            files.append(sidecar)
    # Session-level sidecars (BIDS inheritance, as in ds000117).
    session_dir = bp.fpath.parent.parent
    files.extend(sorted(session_dir.glob("*_channels.tsv")))
    files.extend(sorted(session_dir.glob("*_meg.json")))
    return files


def _is_up_to_date(outputs: dict[str, Any], input_hash: str) -> bool:
    if not all(Path(p.fpath).is_file() for p in outputs.values()):
        return False
    try:
        log = json.loads(Path(outputs["log"].fpath).read_text())
    except (OSError, ValueError):
        return False
    return log.get("InputHash") == input_hash


def process_subject(
    subject: str, runs: list[Run], output_dir: Path, config: Config, seed: int,
    force: bool,
) -> None:
    """Process every run of one subject, then write its subject-level outputs."""
    summaries = []
    for index, run in enumerate(runs, start=1):
        label = f"sub-{subject} run {index}/{len(runs)} ({run.name})"
        outputs = run_outputs(run, output_dir, config)
        input_hash = content_hash(
            run_inputs(run), json.dumps([config.participant_dict(), seed, __version__])
        )
        if not force and _is_up_to_date(outputs, input_hash):
            logger.info("%s: up to date, skipped", label)
        else:
            with step(label):
                process_run(run, outputs, config, seed, input_hash,
                            ica_outputs(run, output_dir))
        summaries.append(json.loads(Path(outputs["log"].fpath).read_text()))
    first = runs[0].bids_path
    movement = head_movement_mm(
        [np.array(s["Coregistration"]["DevHeadT"]) for s in summaries]
    )
    table = pd.DataFrame({
        "run": [r.name for r in runs],
        "head_displacement_mm": np.round(movement, 3),
        "epochs_kept": [s["Epochs"]["Kept"] for s in summaries],
        "epochs_total": [s["Epochs"]["Total"] for s in summaries],
    })
    summary_path = subject_path(output_dir, subject, first.session, desc="runs",
                                suffix="summary", extension=".tsv")
    write_tsv(summary_path.fpath, table)
    write_json(summary_path.copy().update(extension=".json").fpath, {
        "run": {"Description": "raw data file"},
        "head_displacement_mm": {
            "Description": "displacement of the head origin in the MEG helmet "
            "relative to the subject's first run", "Units": "mm"},
        "epochs_kept": {"Description": "epochs kept after rejection"},
        "epochs_total": {"Description": "events epoched"},
    })
    write_t1w_electrodes(subject, runs[0], output_dir, config)
    from .report import write_subject_report

    with step(f"sub-{subject} report"):
        write_subject_report(subject, runs, output_dir, config)


def write_t1w_electrodes(subject: str, run: Run, output_dir: Path, config: Config) -> None:
    """EEG electrodes in the T1w's scanner space, when the subject has a T1w
    with anatomical landmarks (ds000117: ``ses-mri/anat``); else nothing.

    Electrodes are fixed to the head, so one table serves every run.
    """
    t1w = find_t1w(run.bids_path.root, subject)
    if t1w is None:
        logger.info("sub-%s: no T1w with anatomical landmarks; electrodes stay in head "
                    "coordinates", subject)
        return
    info = read_run(run.bids_path, with_events=False).info
    positions = sensor_positions(info, config.allow_standard_montage)
    if positions.eeg_source != "digitisation":
        logger.warning("sub-%s: template electrode positions are not placed in the T1w",
                       subject)
        return
    trans, error_mm = head_to_t1w(info, t1w)
    table = pd.DataFrame(mne.transforms.apply_trans(trans, positions.eeg_pos),
                         columns=["x", "y", "z"]).round(6)
    table.insert(0, "name", positions.eeg_names)
    session = run.bids_path.session
    electrodes = BIDSPath(root=output_dir, subject=subject, session=session, datatype="meg",
                          space="T1w", suffix="electrodes", extension=".tsv", check=False)
    write_tsv(electrodes.fpath, table)
    write_json(electrodes.copy().update(suffix="coordsystem", extension=".json").fpath, {
        "EEGCoordinateSystem": "Other",
        "EEGCoordinateSystemDescription": "scanner RAS of the T1w image (its NIfTI "
        "affine), reached from the Neuromag head frame by a rigid fit of the digitised "
        "to the MRI anatomical landmarks (NAS, LPA, RPA)",
        "EEGCoordinateUnits": "m",
        "IntendedFor": "bids::" + t1w.relative_to(run.bids_path.root).as_posix(),
        "LandmarkFitErrorMM": round(error_mm, 2),
        "HeadToT1wTransform": trans.round(9).tolist(),
        "Provenance": provenance(),
    })


def write_information(info: dict[str, Any], outputs: dict[str, Any]) -> None:
    """Write the information tables, each with a sidecar naming the estimator."""
    meta = info["meta"]
    columns = {
        "mi": {
            "eeg_channel": {"Description": "EEG electrode"},
            "meg_channel": {"Description": "magnetometer"},
            "distance": {"Description": "electrode-sensor distance", "Units": "cm"},
            "mi": {"Description": "MI at the best lag, continuous data", "Units": "bit"},
            "best_lag": {"Description": "lag of maximal MI (positive: MEG lags EEG)",
                         "Units": "ms"},
            "p_value": {"Description": "family-wise corrected p-value (max statistic "
                        "over all pairs and lags, circular-shift surrogates)"},
            "significant": {"Description": "p_value below 0.05"},
            "mi_epochs": {"Description": "MI at the best lag, on the epochs",
                          "Units": "bit"},
        },
        "te": {
            "te_eeg_to_meg": {"Description": "transfer entropy EEG -> MEG", "Units": "bit"},
            "te_meg_to_eeg": {"Description": "transfer entropy MEG -> EEG", "Units": "bit"},
            "p_eeg_to_meg": {"Description": "family-wise corrected p-value"},
            "p_meg_to_eeg": {"Description": "family-wise corrected p-value"},
        },
        "mi_lags": {
            "lag": {"Units": "ms", "Description": "positive: MEG lags EEG"},
            "mi_mean_all_pairs": {"Units": "bit"},
            "mi_mean_distance_pairs": {"Units": "bit", "Description": "mean over the "
                                       "distance pairs of the pairing table"},
        },
        "mi_distance": {
            "electrode": {"Description": "EEG electrode, or 'pooled' over all"},
            "bin_center": {"Units": "cm"},
            "mi_mean": {"Units": "bit"}, "mi_sem": {"Units": "bit"},
            "n_pairs": {"Description": "pairs in the bin"},
            "DecayFit": info["decay"],
        },
        "pruned": {"Description": "the paper's pruning: pairs within the distance "
                   "threshold whose MI is significant"},
    }
    tables = {"mi": info["mi"], "te": info["te"], "mi_lags": info["lag_profile"],
              "mi_distance": info["distance_curve"], "pruned": info["pruned"]}
    for key, table in tables.items():
        write_tsv(outputs[key].fpath, table)
        write_json(outputs[key].copy().update(extension=".json").fpath,
                   {**columns[key], **meta})
    with atomic_path(outputs["mi_lagged"].fpath, suffix=".npy") as tmp:
        np.save(tmp, info["mi_lagged"].astype(np.float32))
    write_json(outputs["mi_lagged"].copy().update(extension=".json").fpath, {
        "Description": "MI (bit) of every EEG x magnetometer pair at every lag, "
        "shape (n_eeg, n_mag, n_lags), in the channel order of the desc-mi table",
        **meta,
    })


def mean_log_psd(raw: Any, fmax: float) -> dict[str, pd.Series]:
    """log10 Welch PSD averaged over channels, per type (EEG, magnetometers)."""
    out = {}
    for ch_type in ("eeg", "mag"):
        spectrum = raw.compute_psd(method="welch", picks=ch_type,
                                   fmax=min(fmax, raw.info["sfreq"] / 2),
                                   n_fft=int(2 * raw.info["sfreq"]), verbose=False)
        psd = np.log10(spectrum.get_data().mean(axis=0))
        out[ch_type] = pd.Series(psd, index=np.round(spectrum.freqs, 3))
    return out


def psd_table(before: dict[str, pd.Series], after: dict[str, pd.Series]) -> pd.DataFrame:
    """Before/after spectra on the frequencies both share, as one table."""
    columns = {f"{k}_before": v for k, v in before.items()}
    columns.update({f"{k}_after": v for k, v in after.items()})
    table = pd.DataFrame(columns).dropna()
    return table.rename_axis("freq").reset_index()


def process_run(run: Run, outputs: dict[str, Any], config: Config, seed: int,
                input_hash: str, ica_files: dict[str, Any] | None = None) -> None:
    """Preprocess, clean, epoch, co-register and pair one run; write its outputs.

    Two epoch files hold the same trials: ``desc-clean`` (EEG as recorded,
    after filtering) and ``desc-ica`` (EEG cleaned of EOG/ECG components);
    the MEG is ICA-cleaned in both. ``ica_files`` (:func:`ica_outputs`):
    where each modality's fitted ICA is written.
    """
    # Wall and CPU seconds per step, for the log and
    # benchmarks/bench_participant.py (CPU time tells cost on a loaded machine).
    timings: dict[str, float] = {}
    cpu_times: dict[str, float] = {}
    clock, cpu_clock = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = round(now - clock, 3)
        cpu_times[name] = round(cpu_now - cpu_clock, 3)
        clock, cpu_clock = now, cpu_now

    raw = read_run(run.bids_path)
    positions = sensor_positions(raw.info, config.allow_standard_montage)
    if positions.eeg_source != "digitisation":
        # the template positions go with the data, so every later step (pairing,
        # interpolation, topographies) uses them; flagged in every output
        raw.set_montage(config.allow_standard_montage, on_missing="ignore")
    try:
        raw.load_data()
    except (OSError, ValueError, RuntimeError, EOFError) as err:  # e.g. a truncated file
        raise AppError(
            f"cannot read the data of {run.bids_path.basename}: {err}".splitlines()[0],
            ExitCode.BAD_DATA,
        ) from err
    lap("read")
    psd_before = mean_log_psd(raw, config.h_freq * 1.5)
    raw, preproc_log = preprocess_raw(raw, config)
    lap("preprocess")
    ica_log: dict[str, Any] = {"Skipped": "disabled in the configuration"}
    icas: dict[str, Any] = {}
    if config.ica:
        raw, raw_ica, ica_log, icas = remove_artefacts(raw, config, seed)
    else:
        raw_ica = raw
    lap("ica")
    psd_after = mean_log_psd(raw_ica, config.h_freq * 1.5)
    write_tsv(outputs["psd"].fpath, psd_table(psd_before, psd_after))
    write_json(outputs["psd"].copy().update(extension=".json").fpath, {
        "freq": {"Units": "Hz"},
        "*_before / *_after": {
            "Description": "log10 of the Welch power spectral density averaged "
            "over the channels of that type, before and after preprocessing",
            "Units": "log10(V^2/Hz) for eeg, log10(T^2/Hz) for mag"},
    })
    if config.save_continuous:
        # the group level's sliding windows read these (group_windows)
        for key, data in (("continuous", raw), ("continuous_ica", raw_ica)):
            with atomic_path(outputs[key].fpath, suffix="_meg.fif") as tmp:
                data.save(tmp, overwrite=True, verbose=False)
    epochs_ica, epochs_log = make_epochs(raw_ica, config, seed=seed)
    epochs = epochs_like(raw, epochs_ica, config) if config.ica else epochs_ica
    del raw
    epochs_log["EvokedSNR"] = {
        ch_type: round(evoked_snr(epochs, ch_type), 3)
        for ch_type in ("eeg", "mag") if ch_type in epochs.get_channel_types()
    }
    for key, data in (("epochs", epochs), ("epochs_ica", epochs_ica)):
        with atomic_path(outputs[key].fpath, suffix="_epo.fif") as tmp:
            data.save(tmp, overwrite=True, verbose=False)
    lap("spectra_epochs")

    write_tsv(outputs["positions"].fpath, positions.to_table())
    write_json(outputs["positions"].copy().update(extension=".json").fpath, {
        "CoordinateSystem": "head (Neuromag: origin between the pre-auricular "
        "points, +x right, +y nasion, +z up)",
        "Units": "m",
        "EEGPositionSource": positions.eeg_source,
        "MEGPositionSource": "device coordinates moved to head coordinates with "
        "this run's dev_head_t",
        "Columns": {"nx/ny/nz": "MEG coil normal (unit vector)"},
    })
    pairs = pair_sensors(positions, config.pair_max_distance_cm)
    write_tsv(outputs["pairs"].fpath, pairs)
    write_json(outputs["pairs"].copy().update(extension=".json").fpath, {
        **PAIRS_COLUMNS,
        "MaxDistance": {"Value": config.pair_max_distance_cm, "Units": "cm"},
        "EEGPositionSource": positions.eeg_source,
    })
    distances = distance_table(positions)
    write_tsv(outputs["distances"].fpath, distances)
    write_json(outputs["distances"].copy().update(extension=".json").fpath, {
        "eeg_channel": {"Description": "EEG electrode (rows)"},
        "MEG*": {"Description": "distance to that magnetometer, head coordinates",
                 "Units": "cm"},
        "EEGPositionSource": positions.eeg_source,
    })
    lap("positions_pairing")
    with step("  shared information (MI, surrogates, TE, distance)"):
        info = shared_information(raw_ica, epochs_ica, distances, pairs, config, seed)
    lap("information")
    with step("  translatability (linear optimum, multivariate MI)"):
        write_translatability(run_translatability(raw_ica),
                              outputs["translatability"].fpath)
    lap("translatability")
    del raw_ica
    write_information(info, outputs)
    lap("information_write")

    # Written last but the log, which says the run is complete: an ICA file
    # never belongs to another run's log.
    for modality, path in (ica_files or {}).items():
        if modality in icas:
            with atomic_path(path.fpath, suffix="_ica.fif") as tmp:
                icas[modality].save(tmp, overwrite=True, verbose=False)
        else:  # an ICA of an earlier run with other settings no longer applies
            Path(path.fpath).unlink(missing_ok=True)
    write_json(outputs["log"].fpath, {
        "Source": run.name,
        "InputHash": input_hash,
        "Preprocessing": preproc_log,
        "ICA": ica_log,
        "Epochs": epochs_log,
        "Coregistration": {
            "EEGPositionSource": positions.eeg_source,
            "DevHeadT": positions.dev_head_t.tolist(),
            "PairsWithinCm": config.pair_max_distance_cm,
            "NPairs": len(pairs),
            "NMagnetometersPaired": int(pairs["meg_channel"].nunique()),
        },
        "Config": config.to_dict(),
        "TimingsSeconds": timings,
        "CPUSeconds": cpu_times,
        "Provenance": provenance(),
    })
