"""The participant level's linear cleaning, replayed on each subject's lead fields.

The data the translators read went through linear maps on the channels:

1. Maxwell filtering (SSS) of the MEG: the internal multipole expansion
   kept (order 8, regularised: ~73 of its 80 components), the room's
   external expansion dropped; the EEG's bad channels interpolated
   (spherical splines), then the average reference;
2. ICA: the blink and heartbeat components removed from the MEG (all 306
   channels together) and, for ``group_eeg = "ica"``, from the EEG;
3. SSP: the EOG projectors left active on the MEG
   (:func:`.lead_fields.project_gains`).

Each map also removes whatever brain field lies along what it removes. A
model that predicts the data from lead fields must therefore see gains that
went through the same maps, as MNE projects a forward solution before it
builds an inverse. Measured on the simulator's forward model: SSS changes
the magnetometer gains by ~11 % (relative norm) and the ICA by a further
~28 %, the EEG's ICA its gains by ~14 %.

Each map is MNE's own, read off its public functions rather than
re-implemented: :func:`mne.preprocessing.compute_maxwell_basis` with the
origin the participant level logged (it reproduces ``maxwell_filter`` to
1e-7), ``Evoked.interpolate_bads`` and ``ICA.apply`` on the identity. Runs
are averaged with equal weights, as the SSP projections are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AppError, ExitCode
from ..translators.physics import average_reference

logger = logging.getLogger(__name__)

#: A linear map on channels: ``(operator (n, n), names)``, cleaned = ``operator @ data``.
Operator = tuple[np.ndarray, list[str]]


def _bare(info: Any) -> Any:
    """A copy of ``info`` without projectors or processing history: each map
    below depends on the sensors (and the head position) only, and MNE would
    otherwise apply the projectors on top of it or refuse an info after SSS."""
    info = info.copy()
    with info._unlock():
        info["proc_history"], info["projs"] = [], []
    return info


def ica_operator(ica: Any) -> Operator:
    """The linear map by which ``ica`` cleaned its channels.

    ``ica.apply`` is affine on the data (it removes and restores the PCA
    mean), so the map is read off by applying it to the identity and
    subtracting its response to zeros.
    """
    import mne

    info = _bare(ica.info)  # the ICA's own whitening is what it applies
    n = len(ica.ch_names)
    evoked = [mne.EvokedArray(data, info, verbose=False) for data in (np.eye(n), np.zeros((n, n)))]
    cleaned = [ica.apply(e, verbose=False).data for e in evoked]
    return cleaned[0] - cleaned[1], list(ica.ch_names)


def maxwell_operator(info: Any, origin: Any) -> Operator:
    """The SSS reconstruction the participant level applied, on all MEG channels.

    ``compute_maxwell_basis`` with ``maxwell_filter``'s defaults (internal
    order 8, external 3, regularised internal space) and the logged origin:
    ``S_in pS_in``, from the good channels to every MEG channel. ``info`` may
    be a run's after SSS: its processing history and projectors are dropped
    first, since the basis depends on the sensors and the head position only.
    """
    import mne

    info = _bare(info)
    s, ps, _, n_in = mne.preprocessing.compute_maxwell_basis(
        info, origin=np.asarray(origin, float), coord_frame="head", verbose=False)
    meg = mne.pick_types(info, meg=True, exclude=[])
    good = mne.pick_types(info, meg=True, exclude="bads")
    operator = np.zeros((len(meg), len(meg)))
    operator[:, np.searchsorted(meg, good)] = s[:, :n_in] @ ps[:n_in]
    return operator, [info["ch_names"][i] for i in meg]


def interpolation_operator(info: Any, bads: list[str]) -> Operator:
    """The interpolation of the EEG channels ``bads`` from the others (MNE's
    spherical splines, origin fitted to the digitisation, as
    ``Raw.interpolate_bads`` did), on every EEG channel of ``info``."""
    import mne

    info = mne.pick_info(_bare(info), _eeg(info), copy=False)
    info["bads"] = list(bads)
    evoked = mne.EvokedArray(np.eye(len(info["ch_names"])), info, verbose=False)
    evoked.interpolate_bads(reset_bads=True, verbose=False)
    return evoked.data, list(info["ch_names"])


def average_reference_operator(info: Any) -> Operator:
    """``I - 1 1^T / n`` on every EEG channel of ``info``."""
    names = [info["ch_names"][i] for i in _eeg(info)]
    return average_reference(len(names)), names


def _eeg(info: Any) -> np.ndarray:
    """Indices of every EEG channel of ``info``, bad ones included."""
    import mne

    return mne.pick_types(info, meg=False, eeg=True, exclude=[])


def _embedded(operator: Operator, names: list[str]) -> np.ndarray:
    """``operator`` on ``names``, the identity on the other channels."""
    index = {n: i for i, n in enumerate(names)}
    full = np.eye(len(names))
    rows = [index[n] for n in operator[1]]
    full[np.ix_(rows, rows)] = operator[0]
    return full


def _read_ica(path: Path) -> Any:
    import mne

    try:
        return mne.preprocessing.read_ica(path, verbose=False)
    except Exception as err:  # noqa: BLE001  (MNE raises several kinds)
        raise AppError(f"cannot read ICA {Path(path).name}: {err}".splitlines()[0],
                       ExitCode.BAD_DATA) from err


def _channels(operators: list[Operator]) -> list[str]:
    """Every channel some operator acts on, in order of appearance."""
    return list(dict.fromkeys(n for _, chans in operators for n in chans))


def run_cleaning(maps: list[Operator]) -> Operator:
    """Maps applied one after the other (first first), on the union of their channels.

    No maps: the identity on no channel.
    """
    names = _channels(maps)
    total = np.eye(len(names))
    for operator in maps:
        total = _embedded(operator, names) @ total
    return total, names


def average_over_runs(runs: list[Operator]) -> Operator:
    """The runs' maps averaged with equal weights, each the identity where it did not act.

    As for the SSP projections (:func:`.lead_fields.projection_of_runs`), the
    mean of the runs' maps is the one map closest to each run's.
    """
    names = _channels(runs)
    return np.mean([_embedded(r, names) for r in runs], axis=0), names


def cleaning_of_subject(
    infos: list[Any],
    logs: list[dict],
    ica_files: dict[str, list[Path | None]],
    eeg_ica: bool = True,
) -> dict[str, Operator]:
    """Each modality's cleaning of one subject, averaged over its runs.

    Parameters
    ----------
    infos, logs : list
        Each run's measurement info (after the participant level) and its
        ``desc-preproc_log.json``, in the same order.
    ica_files : dict
        ``"meg"`` / ``"eeg"``: each run's ``desc-<modality>_ica.fif``, or None
        where the participant level wrote none.
    eeg_ica : bool
        Whether the EEG the group level reads is the ICA-cleaned one
        (``group_eeg = "ica"``); the MEG is ICA-cleaned in both versions.

    Returns
    -------
    cleaning : dict
        ``modality -> (operator, names)``; a modality no run cleaned is
        absent. The ICA of a modality is left out, with a warning, where a
        run removed components but its ICA file is missing (derivatives of
        an earlier version): cleaning only some runs' gains would be wrong
        in a way no one could see.
    """
    cleaning = {}
    for modality in ("meg", "eeg"):
        files = ica_files.get(modality, [None] * len(logs))
        removed = [bool(log.get("ICA", {}).get(modality.upper(), {}).get("Excluded"))
                   for log in logs]
        use_ica = modality == "meg" or eeg_ica
        if use_ica and any(r and f is None for r, f in zip(removed, files)):
            logger.warning("%s ICA removed components but some runs' ICA files are missing: "
                           "lead fields not cleaned by it (re-run the participant level "
                           "with --force to write them)", modality.upper())
            use_ica = False
        runs, acted = [], False
        for info, log, path, was_removed in zip(infos, logs, files, removed):
            steps = log.get("Preprocessing", {})
            maps = []
            if modality == "meg" and "OriginHeadM" in steps.get("MaxwellFilter", {}):
                maps.append(maxwell_operator(info, steps["MaxwellFilter"]["OriginHeadM"]))
            if modality == "eeg" and steps.get("InterpolatedEEGChannels"):
                maps.append(interpolation_operator(info, steps["InterpolatedEEGChannels"]))
            if modality == "eeg" and steps.get("EEGReference") == "average":
                maps.append(average_reference_operator(info))
            if use_ica and was_removed:
                maps.append(ica_operator(_read_ica(path)))
            acted = acted or bool(maps)
            # a run that did nothing to this modality still counts, as the identity
            runs.append(run_cleaning(maps))
        if acted:
            cleaning[modality] = average_over_runs(runs)
    return cleaning


def clean_gains(
    lead_fields: dict[str, Any],
    cleaning: dict[str, Operator],
    eeg_names: list[str],
    mag_names: list[str],
) -> dict[str, Any]:
    """The lead fields cleaned as the data were, on the group's channels.

    Parameters
    ----------
    lead_fields : dict
        With rows (``"eeg_names"``, ``"meg_names"``) for every channel of
        ``cleaning`` (gradiometers included) and of the group's channels.
    cleaning : dict
        ``"eeg"`` and/or ``"meg"``: from :func:`cleaning_of_subject`.
    eeg_names, mag_names : list of str
        The group's channels: the rows kept, in this order.

    Returns
    -------
    lead_fields : dict
        A new dict with ``"L_eeg"`` and ``"L_meg"`` cleaned and reduced to
        ``eeg_names`` and ``mag_names``; ``"source"`` says so.
    """
    out = dict(lead_fields)
    done = []
    for key, rows_key, modality, keep in (("L_eeg", "eeg_names", "eeg", eeg_names),
                                          ("L_meg", "meg_names", "meg", mag_names)):
        rows = list(lead_fields[rows_key])
        gain = np.asarray(lead_fields[key], float)
        if modality in cleaning:
            operator, names = cleaning[modality]
            index = {n: i for i, n in enumerate(rows)}
            missing = [n for n in names if n not in index]
            if missing:
                raise ValueError(f"lead fields lack the cleaned channels {missing[:5]}")
            at = [index[n] for n in names]
            gain = gain.copy()
            gain[at] = operator @ gain[at]
            done.append(modality.upper())
        out[key] = gain[[rows.index(n) for n in keep]]
        out[rows_key] = list(keep)
    if done:
        out["source"] = f"{out.get('source', '')}; cleaned as the data ({', '.join(done)})"
    return out
