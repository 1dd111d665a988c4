"""The group level: gather → windows → leave-subjects-out evaluation → final models.

Writes under ``OUTPUT_DIR/group/``: per-channel scores and their summary
(TSV + JSON sidecars), evoked-response fidelity, training curves, the final
models trained on every subject (safetensors + JSON), and
``OUTPUT_DIR/group.html``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import distributed
from .._version import __version__
from ..bids_io.atomic import write_json, write_tsv
from ..bids_io.derivatives import provenance, write_dataset_description
from ..config import LEAD_FIELD_TRANSLATORS, Config
from ..errors import AppError, ExitCode
from ..progress import _say, step
from ..translators import get_translator
from . import metrics
from .cleaning import cleaning_of_subject
from .evaluate import (
    SubjectArrays,
    evaluate,
    fit_translator,
    fold_eeg_channels,
    select_eeg,
    stack_subjects,
    summarise,
    translator_params,
)
from .gather import (
    EEG_SCALE,
    MEG_SCALE,
    cache_subject,
    common_channels,
    gather,
    pruned_eeg_channels,
)
from .lead_fields import project_gains, projection_of_runs, subject_lead_fields
from .transfer import read_run_infos

logger = logging.getLogger(__name__)

SCORE_COLUMNS = {
    "model": {"Description": "translator, or 'training-mean' (predicts the "
              "training subjects' mean: the floor)"},
    "fold": {"Description": "leave-subjects-out fold"},
    "subject": {"Description": "held-out subject, never seen in training"},
    "meg_channel": {"Description": "target magnetometer"},
    "mse_ft2": {"Description": "mean squared error", "Units": "fT^2"},
    "r2": {"Description": "coefficient of determination over all of the held-out "
           "subject's samples (0: its mean; negative: worse than its mean)"},
    "pearson_r": {"Description": "Pearson correlation of translated and real MEG"},
    "within_subject_optimum_r2": {
        "Description": "R² of the best spatial linear EEG-to-MEG map fitted on half "
        "of this subject's own windows and scored on the other half (two-fold, in "
        "time): the ceiling for any cross-subject spatial linear map"},
    "noise_ceiling_r2": {
        "Description": "simulated data only: the share of this magnetometer's variance "
        "that comes from brain sources (simulator's truth, same band-pass; raw rate, "
        "before ICA): no translator can explain more"},
    "n_eeg_channels": {"Description": "EEG channels the translator read (all common "
                       "channels, or the training subjects' pruned set: "
                       "group_eeg_channels)"},
    "r2_alpha": {"Description": "R² after band-pass 8-13 Hz"},
    "r2_beta": {"Description": "R² after band-pass 13-30 Hz"},
    "r2_gamma": {"Description": "R² after band-pass 30-100 Hz (capped below Nyquist)"},
}


def run_group_level(
    *, output_dir: Path, bids_root: Path, subjects: list[str], config: Config,
    seed: int, device: str, source_description: dict, force: bool,
    work_dir: Path | None = None, fold: int | None = None, **_: Any,
) -> None:
    """Run the group level; see the module docstring.

    Translators that train iteratively checkpoint each fold under
    ``work_dir/group/checkpoints/<key>`` and finished folds are kept under
    ``work_dir/group/folds/<key>``; the key hashes what they depend on (the
    participant inputs, configuration, seed and version). Re-running the
    same command after an interruption resumes them; a run with other
    settings starts its own (``force`` removes them all and starts afresh).
    With ``fold`` (1-based), only that fold is computed and kept, as one
    task of a job array; a later run without it reads the finished folds
    and computes the rest.
    """
    group_work = Path(work_dir or Path(output_dir) / "work") / "group"
    # Under torchrun every rank computes and rank 0 alone writes (distributed.py).
    main = distributed.is_main()
    derivatives = gather(output_dir, subjects, config.group_eeg, config.group_windows)
    # Keyed like the finished folds: a checkpoint holds training state for
    # these inputs and settings only, so changing a setting (max_epochs, say)
    # must start a new one rather than meet the old one and stop.
    key = _fold_key(derivatives, subjects, config, seed)
    checkpoints = group_work / "checkpoints" / key
    if force and main:
        _clear(group_work, key, fold)
    if main:
        write_dataset_description(output_dir, source_description, bids_root)
    eeg_names, mag_names, dropped = common_channels(derivatives)
    sfreq = derivatives[0].info["sfreq"]
    # Windows are memory-mapped from the work directory, never all in RAM
    # (one directory per rank under torchrun, so ranks never share a file).
    arrays = group_work / "arrays" / f"rank-{distributed.rank()}"
    data = []
    run_infos = {}  # each run's header, per subject: its active SSP projectors
    with step(f"loading {len(derivatives)} subjects"):
        for deriv in derivatives:
            eeg, meg, conditions = cache_subject(deriv, eeg_names, mag_names, arrays,
                                                 config.window_length_s,
                                                 config.window_step_s)
            pruned = (frozenset(pruned_eeg_channels(deriv))
                      if config.group_eeg_channels == "pruned" else None)
            if len(eeg) < metrics.MIN_WINDOWS:
                raise AppError(
                    f"sub-{deriv.subject} has {len(eeg)} windows left after rejection; "
                    f"the evaluation needs at least {metrics.MIN_WINDOWS} per subject (its "
                    "within-subject optimum splits them in time): check its "
                    "desc-preproc_log.json, or leave it out with --participant-label",
                    ExitCode.BAD_DATA)
            # Active SSP projectors (the participant level's EOG ones) left the
            # MEG without some field patterns: predictions are scored in the
            # same subspace (evaluate.held_out_predictions).
            run_infos[deriv.subject] = read_run_infos(deriv.files)
            meg_projection, _ = projection_of_runs(run_infos[deriv.subject], mag_names)
            data.append(SubjectArrays(deriv.subject, eeg, meg, conditions,
                                      pruned_eeg=pruned, meg_projection=meg_projection))
    if set(LEAD_FIELD_TRANSLATORS) & set(config.translators):
        how = ("forward solutions" if config.forward_dir is not None
               else "sphere model")
        if config.forward_dir is None and (set(LEAD_FIELD_TRANSLATORS[1:])
                                           & set(config.translators)):
            logger.warning("sourcespace, adaptive and spectral without forward_dir use a "
                           "volume grid "
                           "without cortical normals, with which they predicted nothing on "
                           "simulated data (docs/translatability.md)")
        with step(f"lead fields ({how}) per subject"):
            for deriv, subject_arrays in zip(derivatives, data):
                # The gains lose what SSS, ICA and SSP took from the data.
                cleaning = cleaning_of_subject(run_infos[deriv.subject], deriv.logs,
                                               deriv.ica_files, config.group_eeg == "ica")
                lf = subject_lead_fields(deriv.info, deriv.subject, eeg_names, mag_names,
                                         config.forward_dir, cleaning)
                lf = project_gains(lf, run_infos[deriv.subject])
                # The group level works in µV and fT: scale the gains alike.
                lf["L_eeg"] = lf["L_eeg"] * EEG_SCALE
                lf["L_meg"] = lf["L_meg"] * MEG_SCALE
                subject_arrays.geometry = lf

    with step("leave-subjects-out evaluation"):
        scores, evoked, histories, examples = evaluate(
            data, mag_names, config, sfreq, seed, device, progress=_say,
            checkpoint_root=checkpoints, scratch=arrays,
            fold_results=group_work / "folds" / key,
            only_fold=None if fold is None else fold - 1, save_folds=main,
            eeg_names=eeg_names,
        )
    if fold is not None:
        _say(f"fold {fold} done; run the group level without --fold to combine the folds")
        return
    if not main:  # DDP needs every rank in the final fits too; nothing to write
        _fit_final_models(data, config, sfreq, seed, device, None, checkpoints, arrays,
                          eeg_names, mag_names)
        logger.info("rank %d wrote nothing: rank 0 writes the outputs", distributed.rank())
        return
    ceiling = _noise_ceiling(bids_root, [d.subject for d in data], config)
    if ceiling is not None:
        scores["noise_ceiling_r2"] = [ceiling[s].get(ch, np.nan)
                                      for s, ch in zip(scores["subject"], scores["meg_channel"])]
    summary = summarise(scores)
    # which file (or the sphere model) gave each subject's lead fields
    lead_field_sources = {d.subject: d.geometry["source"] for d in data if d.geometry}
    group_dir = Path(output_dir) / "group"
    write_tsv(group_dir / "desc-translation_scores.tsv", scores)
    write_json(group_dir / "desc-translation_scores.json", {
        **{k: v for k, v in SCORE_COLUMNS.items() if k in scores},
        "Subjects": subjects,
        "EEGChannels": eeg_names,
        "DroppedChannels": dropped,
        "Units": "EEG in µV, MEG in fT",
        "EEGVersion": config.group_eeg,
        "Windows": (f"{config.window_length_s:g}-s windows every {config.window_step_s:g} s "
                    "over the cleaned continuous runs, bad segments skipped"
                    if config.group_windows == "sliding" else
                    "the cleaned epochs around the events"),
        "Config": config.to_dict(),
        **({"LeadFields": lead_field_sources} if lead_field_sources else {}),
        "Seed": seed,
        "Provenance": provenance(),
    })
    write_tsv(group_dir / "desc-translation_summary.tsv", summary)
    write_json(group_dir / "desc-translation_summary.json", {
        "Description": "per model: mean over held-out subjects of the channel-mean "
        "R², Pearson r and share of the within-subject optimum, with 95% "
        "intervals (1.96 standard errors across subjects)",
    })
    from ..participant._07_translatability import subject_headlines

    headlines = subject_headlines(output_dir, subjects)
    if len(headlines):
        write_tsv(group_dir / "desc-translatability_subjects.tsv", headlines)
        write_json(group_dir / "desc-translatability_subjects.json", {
            "Description": "each subject's translatability headline (participant level, "
            "desc-translatability_channels), runs combined weighted by their samples; "
            "r2_cv, r2_<band>, gaussian_share: share of all magnetometer variance"})
    transfer = _transfer(derivatives, mag_names, scores)
    write_tsv(group_dir / "desc-transfer_scores.tsv", transfer)
    write_json(group_dir / "desc-transfer_scores.json", TRANSFER_COLUMNS)
    write_tsv(group_dir / "desc-evoked_fidelity.tsv", evoked)
    write_json(group_dir / "desc-evoked_fidelity.json", {
        "evoked_r": {"Description": "correlation (over channels and times) of the "
                     "translated and real evoked MEG of one condition"},
    })
    curves = _history_table(histories)
    if len(curves):
        write_tsv(group_dir / "desc-learning_curves.tsv", curves)
        write_json(group_dir / "desc-learning_curves.json", {
            "train_loss": {"Description": "MSE on training windows (normalised units)"},
            "val_loss": {"Description": "MSE on the validation subjects (a split of "
                         "the training subjects, never the held-out ones)"},
        })

    with step("final models on all subjects"):
        _fit_final_models(data, config, sfreq, seed, device, group_dir / "models",
                          checkpoints, arrays, eeg_names, mag_names)
    from .report import write_group_report

    report = write_group_report(output_dir, scores, summary, evoked, curves, examples,
                                mag_names, sfreq, config, transfer=transfer,
                                lead_fields=lead_field_sources)
    _say(f"group results: {group_dir}  report: {report}")


TRANSFER_COLUMNS = {
    "Description": "per model and held-out subject: channel-mean R² against the "
    "distance of its head position from the training subjects' (group/transfer.py)",
    "head_distance_mean_mm": {"Description": "RMS distance between the held-out and a "
                              "training subject's magnetometer positions in head "
                              "coordinates (runs averaged), mean over training subjects",
                              "Units": "mm"},
    "head_distance_nearest_mm": {"Description": "the same, nearest training subject",
                                 "Units": "mm"},
    "share_of_optimum": {"Description": "r2 / optimum_r2 (empty where the optimum is not "
                         "positive)"},
}


def _transfer(derivatives: list, mag_names: list[str], scores: pd.DataFrame) -> pd.DataFrame:
    from .transfer import (
        head_distances_mm,
        magnetometer_positions_head,
        read_run_infos,
        transfer_table,
    )

    positions = {
        d.subject: magnetometer_positions_head(read_run_infos(d.files), mag_names)
        for d in derivatives
    }
    return transfer_table(scores, head_distances_mm(positions))


def _clear(group_work: Path, key: str, fold: int | None) -> None:
    """Remove training state and finished folds (``--force``): all of them,
    or with ``fold`` (one task of a job array, beside its siblings) only
    that fold's under this run's ``key``, so a task never deletes another's work."""
    if fold is None:
        for kept in ("checkpoints", "folds"):
            shutil.rmtree(group_work / kept, ignore_errors=True)
        return
    k = fold - 1
    for path in [*(group_work / "checkpoints" / key).glob(f"*_fold-{k}"),
                 *(group_work / "folds" / key).glob(f"fold-{k}_*")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _fold_key(derivatives: list, subjects: list[str], config: Config, seed: int) -> str:
    """What finished folds depend on: each run's participant input hash (data,
    participant options, version), the subjects, the configuration and seed."""
    runs = [log.get("InputHash") for d in derivatives for log in d.logs]
    text = json.dumps([runs, subjects, config.to_dict(), seed, __version__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _noise_ceiling(bids_root: Path, subjects: list[str],
                   config: Config) -> dict[str, dict[str, float]] | None:
    """On simulated data, each magnetometer's share of variance from brain sources.

    Read from the simulator's ground truth (``derivatives/simulation``),
    band-passed as the participant level does; ``None`` on real data.
    """
    truth = Path(bids_root) / "derivatives" / "simulation"
    if not truth.is_dir():
        return None
    from ..simulate import source_variance_share

    with step("noise ceiling from the simulator's truth"):
        return {s: source_variance_share(bids_root, s, l_freq=config.l_freq or None,
                                         h_freq=config.h_freq) for s in subjects}


def _history_table(histories: dict[str, list]) -> pd.DataFrame:
    rows = []
    for model, folds in histories.items():
        for entry in folds:
            for record in entry["history"]:
                rows.append({"model": model, "fold": entry["fold"], **record})
    return pd.DataFrame(rows)


def _fit_final_models(data: list[SubjectArrays], config: Config, sfreq: float, seed: int,
                      device: str, models_dir: Path | None, checkpoints: Path,
                      scratch: Path | None = None,
                      eeg_names: list[str] | None = None,
                      mag_names: list[str] | None = None) -> None:
    # every subject trains the final models, so their channel choice may use all
    channels = fold_eeg_channels(data, eeg_names or [], config)
    data = [select_eeg(d, channels) for d in data]
    eeg, meg, groups = stack_subjects(data, scratch)
    if models_dir is not None and eeg_names is not None:
        used = eeg_names if channels is None else [eeg_names[i] for i in channels]
        write_json(models_dir / "desc-models_channels.json", {
            "Description": "the channels, in order, that the final models read and write",
            "EEGChannels": used, "MEGChannels": mag_names,
            "Units": {"EEG": "µV (average reference)", "MEG": "fT"},
        })
    geometry = None
    if all(d.geometry is not None for d in data):
        geometry = {d.subject: d.geometry for d in data}
    for name in config.translators:
        translator = get_translator(name, **translator_params(name, config, sfreq, seed,
                                                              device))
        fit_translator(translator, eeg, meg, groups, geometry, checkpoints / f"{name}_final")
        if models_dir is not None:
            translator.save(models_dir / f"desc-{name}_model")
            logger.info("final %s model saved (%s)", name, __version__)
