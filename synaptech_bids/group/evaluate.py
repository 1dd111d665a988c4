"""Group step 3: train translators and score them on subjects they never saw.

Leave-subjects-out cross-validation (GroupKFold by subject; with few
subjects, leave-one-subject-out). For each fold, a translator's ``fit`` is
given the training subjects' arrays and nothing else, so normalisation,
penalties, early stopping and channel choices are made without the
held-out subject's MEG; ``predict`` gets the held-out subject's EEG and
geometry only, as it would in use. Its MEG is used once, to score.

Each score is read against two references computed on the same held-out
subject: predicting the training mean (the floor) and the within-subject
linear optimum (a spatial map fitted on half of the held-out subject's own
recording, scored on the other half: the ceiling for any cross-subject
spatial linear map).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from ..bids_io.atomic import write_json, write_tsv
from ..config import Config
from ..translators import get_translator
from . import metrics

logger = logging.getLogger(__name__)


@dataclass
class SubjectArrays:
    """One subject's windows, in µV (EEG) and fT (MEG)."""

    subject: str
    eeg: np.ndarray  # (n_windows, n_eeg, n_times)
    meg: np.ndarray  # (n_windows, n_mag, n_times)
    conditions: np.ndarray  # (n_windows,)
    geometry: dict | None = None  # lead fields, for geometry-aware translators
    pruned_eeg: frozenset[str] | None = None  # EEG in its pruned pairs (uses its MEG)
    # (n_mag, n_mag): the SSP projection the MEG went through (lead_fields.projection_of_runs)
    meg_projection: np.ndarray | None = None


def fold_eeg_channels(train: list[SubjectArrays], eeg_names: list[str],
                      config: Config) -> list[int] | None:
    """Indices of the EEG channels a fold uses; None for all of them.

    With ``group_eeg_channels = "pruned"``: the electrodes in the pruned pairs
    of the fold's *training* subjects. The pruning read each subject's MEG,
    so the held-out subject's own pruning is never consulted.
    """
    if config.group_eeg_channels == "all":
        return None
    chosen = set().union(*(d.pruned_eeg or set() for d in train))
    index = [i for i, name in enumerate(eeg_names) if name in chosen]
    if not index:
        logger.warning("the training subjects' pruned pairs hold no common EEG channel; "
                       "using all %d", len(eeg_names))
        return None
    return index


def select_eeg(data: SubjectArrays, index: list[int] | None) -> SubjectArrays:
    """The subject with only the EEG channels ``index`` (and their lead fields)."""
    if index is None:
        return data
    geometry = data.geometry
    if geometry is not None and "L_eeg" in geometry:
        geometry = {**geometry, "L_eeg": np.asarray(geometry["L_eeg"])[index]}
    return dataclasses.replace(data, eeg=np.asarray(data.eeg[:, index]), geometry=geometry)


def translator_params(name: str, config: Config, sfreq: float, seed: int,
                      device: str) -> dict[str, Any]:
    """Constructor parameters of each translator from the configuration."""
    if name == "ridge":
        lags = sorted({int(round(ms * 1e-3 * sfreq)) for ms in config.ridge_lags_ms})
        return {"lags": tuple(lags)}
    if name == "spectral":
        return {"sfreq": sfreq, "band_sources": config.spectral_band_sources}
    if name in ("synaptechnet", "hybrid"):
        cwt_freqs = None
        if config.synaptechnet_cwt_freqs:
            # The paper's log-spaced 1-100 Hz, kept below Nyquist.
            top = min(100.0, 0.45 * sfreq)
            cwt_freqs = tuple(np.geomspace(1.0, top, config.synaptechnet_cwt_freqs))
        params: dict[str, Any] = {
            "width": config.synaptechnet_width,
            "cwt_freqs": cwt_freqs,
            "sfreq": sfreq,
            "normalization": config.synaptechnet_normalization,
            "norm": config.synaptechnet_norm,
            "input_skip": config.synaptechnet_input_skip,
            "n_ensemble": config.synaptechnet_ensemble,
            "max_epochs": config.max_epochs,
            "batch_size": config.batch_size,
            "lr": config.learning_rate,
            "weight_decay": config.weight_decay,
            "patience": config.patience,
            "seed": seed,
            "device": device,
        }
        if name == "hybrid":  # its ridge part is the ridge translator's
            params["ridge_lags"] = translator_params("ridge", config, sfreq, seed, device)["lags"]
        return params
    return {}


def folds(subjects: list[str], n_folds: int) -> list[tuple[list[str], list[str]]]:
    """Train/test subject lists: leave-one-out up to ``n_folds`` subjects, else GroupKFold."""
    n_splits = min(n_folds, len(subjects))
    splitter = GroupKFold(n_splits=n_splits)
    index = np.arange(len(subjects))
    out = []
    for train, test in splitter.split(index, groups=index):
        out.append(([subjects[i] for i in train], [subjects[i] for i in test]))
    return out


def stack_subjects(
    data: list[SubjectArrays], scratch: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate subjects' windows: in RAM, or into memory-mapped files.

    With ``scratch``, the training set is written subject by subject into
    new ``.npy`` files there and returned as memory maps, so that no more
    than one subject's windows need be in RAM (the translators read their
    training data in chunks). The files are unlinked at once: the maps keep
    them alive until the arrays are freed, and nothing is left behind.
    """
    groups = np.concatenate([np.full(len(d.eeg), d.subject) for d in data])
    if scratch is None:
        return (np.concatenate([d.eeg for d in data]), np.concatenate([d.meg for d in data]),
                groups)
    scratch.mkdir(parents=True, exist_ok=True)
    stacked = []
    for kind in ("eeg", "meg"):
        parts = [getattr(d, kind) for d in data]
        shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
        with tempfile.NamedTemporaryFile(dir=scratch, suffix=".npy") as handle:
            array = np.lib.format.open_memmap(handle.name, mode="w+", dtype=np.float32,
                                              shape=shape)
        start = 0
        for part in parts:
            array[start:start + len(part)] = part
            start += len(part)
        array.flush()
        stacked.append(array)
    return stacked[0], stacked[1], groups


def _geometry(data: list[SubjectArrays]) -> dict | None:
    if any(d.geometry is None for d in data):
        return None
    return {d.subject: d.geometry for d in data}


def score_subject(
    model: str, fold: int, held_out: SubjectArrays, pred: np.ndarray,
    mag_names: list[str], sfreq: float, optimum: np.ndarray,
) -> pd.DataFrame:
    """One row per MEG channel: MSE, R², r, band R², and the references."""
    y = held_out.meg
    r2 = metrics.r2_per_channel(y, pred)
    table = pd.DataFrame({
        "model": model,
        "fold": fold,
        "subject": held_out.subject,
        "meg_channel": mag_names,
        "mse_ft2": metrics.mse_per_channel(y, pred),
        "r2": r2,
        "pearson_r": metrics.pearson_per_channel(y, pred),
        "within_subject_optimum_r2": optimum,
    })
    for band, values in metrics.band_r2(y, pred, sfreq).items():
        table[f"r2_{band}"] = values
    return table


@dataclass
class HeldOutPrediction:
    """One translator's prediction for one held-out subject."""

    model: str
    fold: int
    subject: str
    prediction: np.ndarray  # (n_windows, n_mag, n_times), like the subject's MEG
    translator: Any = None  # the fitted translator (None for the training mean)
    n_eeg: int = 0  # EEG channels the translator read


def fit_translator(translator: Any, eeg: np.ndarray, meg: np.ndarray, groups: np.ndarray,
                   geometry: dict | None, checkpoint_dir: Path | None) -> None:
    """Fit, checkpointing in ``checkpoint_dir`` when the translator trains iteratively."""
    kwargs: dict[str, Any] = {}
    if checkpoint_dir is not None and "checkpoint_dir" in inspect.signature(
        translator.fit
    ).parameters:
        kwargs["checkpoint_dir"] = str(checkpoint_dir)
    translator.fit(eeg, meg, groups=groups, geometry=geometry, **kwargs)


def held_out_predictions(
    data: list[SubjectArrays], config: Config, sfreq: float, seed: int, device: str,
    progress: Callable[[str], Any] | None = None, checkpoint_root: Path | None = None,
    scratch: Path | None = None, only_folds: Collection[int] | None = None,
    eeg_names: list[str] | None = None,
) -> Iterator[HeldOutPrediction]:
    """Fit every configured translator per fold and predict its held-out subjects.

    This is the only place where training and held-out data meet, and the
    held-out subjects' MEG is never read here: ``fit`` gets the training
    subjects' arrays, ``predict`` the held-out subject's EEG and geometry.
    ``tests/test_group_leakage.py`` poisons a held-out MEG to prove it.

    Parameters
    ----------
    checkpoint_root : Path, optional
        Where translators that train iteratively keep a checkpoint per fold
        (``<model>_fold-<k>``), so that an interrupted group run resumes.
    scratch : Path, optional
        Where each fold's training set is memory-mapped (see
        :func:`stack_subjects`); None concatenates in RAM.
    only_folds : collection of int, optional
        Run these folds (0-based) only.
    eeg_names : list of str, optional
        Names of the EEG channels (needed for ``group_eeg_channels="pruned"``,
        see :func:`fold_eeg_channels`).
    """
    by_subject = {d.subject: d for d in data}
    for k, (train_subjects, test_subjects) in enumerate(
        folds(list(by_subject), config.n_folds)
    ):
        if only_folds is not None and k not in only_folds:
            continue
        train = [by_subject[s] for s in train_subjects]
        channels = fold_eeg_channels(train, eeg_names or [], config)
        train = [select_eeg(d, channels) for d in train]
        eeg, meg, groups = stack_subjects(train, scratch)
        mean = meg.mean(axis=(0, 2), keepdims=True)
        for name in ("training-mean", *config.translators):
            if progress:
                progress(f"fold {k + 1}: {name}, held out {', '.join(test_subjects)}")
            translator = None
            if name != "training-mean":
                translator = get_translator(
                    name, **translator_params(name, config, sfreq, seed, device)
                )
                fit_translator(translator, eeg, meg, groups, _geometry(train),
                               None if checkpoint_root is None
                               else checkpoint_root / f"{name}_fold-{k}")
            for subject in test_subjects:
                held_out = select_eeg(by_subject[subject], channels)
                if translator is None:
                    pred = np.broadcast_to(mean, held_out.eeg.shape[:1] + meg.shape[1:])
                else:
                    pred = translator.predict(held_out.eeg, geometry=held_out.geometry)
                if held_out.meg_projection is not None:
                    # The held-out MEG lacks the field patterns its SSP projectors
                    # removed: every prediction is scored in the same subspace.
                    pred = np.einsum("mn,wnt->wmt", held_out.meg_projection, pred)
                yield HeldOutPrediction(name, k, subject, np.asarray(pred), translator,
                                        held_out.eeg.shape[1])


def evaluate(
    data: list[SubjectArrays], mag_names: list[str], config: Config, sfreq: float,
    seed: int, device: str, progress: Callable[[str], Any] | None = None,
    checkpoint_root: Path | None = None, scratch: Path | None = None,
    fold_results: Path | None = None, only_fold: int | None = None,
    save_folds: bool = True, eeg_names: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list], dict[str, np.ndarray]]:
    """Leave-subjects-out evaluation of every configured translator.

    Parameters
    ----------
    fold_results : Path, optional
        A folder of finished folds' results (scores, evoked fidelity,
        training curves). Folds found there are read, not recomputed; folds
        computed here are saved there. The caller keys the folder by
        everything the results depend on (data, configuration, seed,
        version), so folds run as separate jobs combine safely.
    only_fold : int, optional
        Compute (and save) this fold only (0-based), as one task of a job
        array does.
    save_folds : bool
        Save computed folds in ``fold_results`` (False on all but one rank
        of a distributed run).

    Returns
    -------
    scores : DataFrame
        One row per model, held-out subject and MEG channel.
    evoked : DataFrame
        Evoked-response fidelity per model, held-out subject and condition.
    histories : dict
        Training curves of the models that have them, per fold.
    examples : dict
        The first held-out subject's first window, translated by each model
        (``"real"`` holds its MEG), shape (n_mag, n_times), for the report;
        empty when that fold was read from ``fold_results``.
    """
    by_subject = {d.subject: d for d in data}
    n_folds = len(folds(list(by_subject), config.n_folds))
    if only_fold is not None and not 0 <= only_fold < n_folds:
        raise ValueError(f"fold {only_fold + 1} requested, but there are {n_folds} folds")
    done = {}
    if only_fold is not None:  # one task of an array: this fold, afresh
        to_run = {only_fold}
    else:
        if fold_results is not None:
            done = {k: _read_fold(fold_results, k) for k in range(n_folds)
                    if (fold_results / f"fold-{k}_scores.tsv").is_file()}
        to_run = set(range(n_folds)) - set(done)
    rows: dict[int, list] = {k: [] for k in to_run}
    evoked_rows: dict[int, list] = {k: [] for k in to_run}
    histories: dict[int, dict] = {k: {} for k in to_run}
    examples: dict[str, np.ndarray] = {}
    # The within-subject optimum is a reference computed from the held-out
    # subject's own EEG and MEG, by design; it never reaches a translator.
    optimum: dict[str, np.ndarray] = {}
    first = None
    for result in held_out_predictions(data, config, sfreq, seed, device, progress,
                                       checkpoint_root, scratch, only_folds=to_run,
                                       eeg_names=eeg_names):
        name, k, subject = result.model, result.fold, result.subject
        held_out = by_subject[subject]
        if subject not in optimum:
            optimum[subject] = metrics.within_subject_optimum(held_out.eeg, held_out.meg)
        history = getattr(result.translator, "history_", None)
        if history is not None and name not in histories[k]:
            histories[k][name] = history
        if first is None:
            first = (k, subject)
        if (k, subject) == first:
            examples[name] = result.prediction[0]
            examples["real"] = held_out.meg[0]
        rows[k].append(score_subject(name, k, held_out, result.prediction, mag_names, sfreq,
                                     optimum[subject]).assign(n_eeg_channels=result.n_eeg))
        for cond, r in metrics.evoked_fidelity(
            held_out.meg, result.prediction, held_out.conditions
        ).items():
            evoked_rows[k].append({"model": name, "fold": k, "subject": subject,
                                   "condition": cond, "evoked_r": r})
    for k in to_run:
        done[k] = (pd.concat(rows[k], ignore_index=True),
                   pd.DataFrame(evoked_rows[k], columns=EVOKED_COLUMNS), histories[k])
        if fold_results is not None and save_folds:
            _write_fold(fold_results, k, *done[k])
    order = sorted(done)
    scores = pd.concat([done[k][0] for k in order], ignore_index=True)
    evoked = pd.concat([done[k][1] for k in order], ignore_index=True)
    by_model: dict[str, list] = {}
    for k in order:
        for name, history in done[k][2].items():
            by_model.setdefault(name, []).append({"fold": k, "history": history})
    return scores, evoked, by_model, examples


EVOKED_COLUMNS = ["model", "fold", "subject", "condition", "evoked_r"]


def _write_fold(folder: Path, k: int, scores: pd.DataFrame, evoked: pd.DataFrame,
                histories: dict) -> None:
    # the scores last: their presence marks the fold as finished
    write_tsv(folder / f"fold-{k}_evoked.tsv", evoked)
    write_json(folder / f"fold-{k}_histories.json", histories)
    write_tsv(folder / f"fold-{k}_scores.tsv", scores)


def _read_fold(folder: Path, k: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    text = {"subject": str, "meg_channel": str, "model": str, "condition": str}
    scores = pd.read_csv(folder / f"fold-{k}_scores.tsv", sep="\t", dtype=text)
    evoked_path = folder / f"fold-{k}_evoked.tsv"
    evoked = (pd.read_csv(evoked_path, sep="\t", dtype=text)
              if evoked_path.stat().st_size > 1 else pd.DataFrame())
    histories = json.loads((folder / f"fold-{k}_histories.json").read_text())
    return scores, evoked, histories


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean R² over held-out subjects with a 95% interval, and its
    share of the within-subject optimum."""
    per_subject = scores.groupby(["model", "subject"]).agg(
        r2=("r2", "mean"), pearson_r=("pearson_r", "mean"),
        optimum=("within_subject_optimum_r2", "mean"),
        **({"ceiling": ("noise_ceiling_r2", "mean")} if "noise_ceiling_r2" in scores else {}),
    ).reset_index()
    per_subject["share_of_optimum"] = per_subject["r2"] / per_subject["optimum"]
    out = []
    for model, group in per_subject.groupby("model", sort=False):
        n = len(group)
        row = {"model": model, "n_subjects": n}
        for column in ("r2", "pearson_r", "share_of_optimum"):
            values = group[column].to_numpy()
            sem = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
            row[f"{column}_mean"] = values.mean()
            row[f"{column}_ci95"] = 1.96 * sem
        row["optimum_r2_mean"] = group["optimum"].mean()
        if "ceiling" in group:
            row["noise_ceiling_r2_mean"] = group["ceiling"].mean()
        out.append(row)
    return pd.DataFrame(out)
