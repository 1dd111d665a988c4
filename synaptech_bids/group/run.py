"""The group level: gather → windows → leave-subjects-out evaluation → final models.

Writes under ``OUTPUT_DIR/group/``: per-channel scores and their summary
(TSV + JSON sidecars), evoked-response fidelity, training curves, the final
models trained on every subject (safetensors + JSON), and
``OUTPUT_DIR/group.html``.
"""

from __future__ import annotations

import inspect
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..bids_io.atomic import write_json, write_tsv
from ..bids_io.derivatives import provenance, write_dataset_description
from ..config import Config
from ..progress import _say, step
from ..translators import get_translator
from .evaluate import SubjectArrays, evaluate, summarise, translator_params
from .gather import EEG_SCALE, MEG_SCALE, common_channels, gather, load_subject

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
    "r2_alpha": {"Description": "R² after band-pass 8-13 Hz"},
    "r2_beta": {"Description": "R² after band-pass 13-30 Hz"},
    "r2_gamma": {"Description": "R² after band-pass 30-100 Hz (capped below Nyquist)"},
}


def run_group_level(
    *, output_dir: Path, bids_root: Path, subjects: list[str], config: Config,
    seed: int, device: str, source_description: dict, force: bool,
    work_dir: Path | None = None, **_: Any,
) -> None:
    """Run the group level; see the module docstring.

    Translators that train iteratively checkpoint each fold under
    ``work_dir/group/checkpoints``: re-running the same command after an
    interruption resumes them (``force`` starts afresh).
    """
    checkpoints = Path(work_dir or Path(output_dir) / "work") / "group" / "checkpoints"
    if force and checkpoints.exists():
        shutil.rmtree(checkpoints)
    derivatives = gather(output_dir, subjects, config.group_eeg)
    write_dataset_description(output_dir, source_description, bids_root)
    eeg_names, mag_names, dropped = common_channels(derivatives)
    sfreq = derivatives[0].info["sfreq"]
    data = []
    with step(f"loading {len(derivatives)} subjects"):
        for deriv in derivatives:
            eeg, meg, conditions = load_subject(deriv, eeg_names, mag_names)
            data.append(SubjectArrays(deriv.subject, eeg, meg, conditions))
    if "physics" in config.translators:
        from ..translators.physics import lead_fields_from_info

        with step("lead fields (sphere model) per subject"):
            for deriv, arrays in zip(derivatives, data):
                lf = lead_fields_from_info(deriv.info, eeg_names, mag_names)
                # The group level works in µV and fT: scale the gains alike.
                lf["L_eeg"] = lf["L_eeg"] * EEG_SCALE
                lf["L_meg"] = lf["L_meg"] * MEG_SCALE
                arrays.geometry = lf

    with step("leave-subjects-out evaluation"):
        scores, evoked, histories, examples = evaluate(
            data, mag_names, config, sfreq, seed, device, progress=_say,
            checkpoint_root=checkpoints,
        )
    summary = summarise(scores)
    group_dir = Path(output_dir) / "group"
    write_tsv(group_dir / "desc-translation_scores.tsv", scores)
    write_json(group_dir / "desc-translation_scores.json", {
        **{k: v for k, v in SCORE_COLUMNS.items() if k in scores},
        "Subjects": subjects,
        "EEGChannels": eeg_names,
        "DroppedChannels": dropped,
        "Units": "EEG in µV, MEG in fT",
        "EEGVersion": config.group_eeg,
        "Config": config.to_dict(),
        "Seed": seed,
        "Provenance": provenance(),
    })
    write_tsv(group_dir / "desc-translation_summary.tsv", summary)
    write_json(group_dir / "desc-translation_summary.json", {
        "Description": "per model: mean over held-out subjects of the channel-mean "
        "R², Pearson r and share of the within-subject optimum, with 95% "
        "intervals (1.96 standard errors across subjects)",
    })
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
                          checkpoints)
    from .report import write_group_report

    report = write_group_report(output_dir, scores, summary, evoked, curves, examples,
                                mag_names, sfreq, config)
    _say(f"group results: {group_dir}  report: {report}")


def _history_table(histories: dict[str, list]) -> pd.DataFrame:
    rows = []
    for model, folds in histories.items():
        for entry in folds:
            for record in entry["history"]:
                rows.append({"model": model, "fold": entry["fold"], **record})
    return pd.DataFrame(rows)


def _fit_final_models(data: list[SubjectArrays], config: Config, sfreq: float, seed: int,
                      device: str, models_dir: Path, checkpoints: Path) -> None:
    eeg = np.concatenate([d.eeg for d in data])
    meg = np.concatenate([d.meg for d in data])
    groups = np.concatenate([np.full(len(d.eeg), d.subject) for d in data])
    geometry = None
    if all(d.geometry is not None for d in data):
        geometry = {d.subject: d.geometry for d in data}
    for name in config.translators:
        translator = get_translator(name, **translator_params(name, config, sfreq, seed,
                                                              device))
        kwargs: dict[str, Any] = {}
        if "checkpoint_dir" in inspect.signature(translator.fit).parameters:
            kwargs["checkpoint_dir"] = str(checkpoints / f"{name}_final")
        translator.fit(eeg, meg, groups=groups, geometry=geometry, **kwargs)
        translator.save(models_dir / f"desc-{name}_model")
        logger.info("final %s model saved (%s)", name, __version__)
