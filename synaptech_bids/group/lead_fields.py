"""Each subject's lead fields, for the translators that work through sources.

``physics``, ``sourcespace``, ``adaptive`` and ``spectral`` map EEG to MEG
through the held-out subject's own lead fields. Two sources for them:

* by default the app builds them itself (:func:`.translators.lead_fields_from_info`):
  a sphere fitted to the digitised head shape and a volume grid of free
  dipoles. No MRI is needed, but a volume grid has no cortical normals, and
  without them a source fitted to the EEG has no definite MEG: measured on
  simulated data, the SBL translators then predict nothing
  (docs/translatability.md);
* with ``forward_dir`` (config), each subject's MNE forward solution, e.g.
  the one MNE-BIDS-Pipeline computes from the subject's FreeSurfer
  surfaces, BEM and co-registration. Its dipoles are turned to the cortical
  normals (fixed orientation), which ties the radial part of a patch that
  EEG sees to the tangential part that MEG sees.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AppError, ExitCode

logger = logging.getLogger(__name__)

#: Most sources kept from a forward solution. An ``oct6`` surface source
#: space has ~8,200; the SBL translators hold source-by-source patch
#: matrices, so denser spaces are thinned (see :func:`thin_sources`).
MAX_SOURCES = 3000


def find_forward(forward_dir: str | Path, subject: str) -> Path:
    """The forward solution of ``sub-<subject>`` under ``forward_dir``.

    Files named ``sub-<subject>_*fwd.fif`` (BIDS, as MNE-BIDS-Pipeline writes
    them, or MNE's ``-fwd.fif``) are searched for in all sub-folders; of
    several (one per task or run), the first in sorted order is used and
    named in the log.

    Raises
    ------
    AppError
        The folder does not exist, or holds no forward for the subject.
    """
    root = Path(forward_dir)
    if not root.is_dir():
        raise AppError(f"forward_dir {root} is not a folder", ExitCode.NO_INPUT)
    found = sorted(p for p in root.rglob(f"sub-{subject}_*fwd.fif") if p.is_file())
    if not found:
        raise AppError(
            f"no forward solution for sub-{subject} under {root} (expected a file "
            f"sub-{subject}_*fwd.fif, as MNE-BIDS-Pipeline writes); remove forward_dir "
            "from the config to use the app's sphere model instead",
            ExitCode.NO_INPUT,
        )
    if len(found) > 1:
        logger.info("sub-%s: %d forward solutions, using %s", subject, len(found), found[0])
    return found[0]


def thin_sources(pos: np.ndarray, max_sources: int = MAX_SOURCES) -> np.ndarray:
    """Indices of at most ``max_sources`` sources, about evenly spread.

    One source per cubic cell (the first in the forward's order), with the
    cell grown by 1 mm until few enough remain; all sources when there are
    few enough already. Deterministic.
    """
    if len(pos) <= max_sources:
        return np.arange(len(pos))
    cell_mm = 2.0
    while True:
        cells = np.floor(np.asarray(pos) * 1e3 / cell_mm).astype(np.int64)
        _, first = np.unique(cells, axis=0, return_index=True)
        if len(first) <= max_sources:
            return np.sort(first)
        cell_mm += 1.0


def lead_fields_from_forward(
    path: str | Path,
    eeg_names: list[str],
    mag_names: list[str],
    info: Any = None,
    max_sources: int = MAX_SOURCES,
) -> dict[str, Any]:
    """A lead-field set from an MNE forward solution, dipoles along the normals.

    Parameters
    ----------
    path : path-like
        ``*-fwd.fif`` / ``*_fwd.fif`` with the EEG and magnetometers named.
    eeg_names, mag_names : list of str
        Channels, in the order of the data rows.
    info : mne.Info, optional
        The subject's recording info: its digitised head shape gives the
        sphere origin that aligns brains across subjects (sphere-normalised
        space of :mod:`.translators.sourcespace`).
    max_sources : int
        Denser source spaces are thinned (:func:`thin_sources`).

    Returns
    -------
    lead_fields : dict
        ``"L_eeg"`` (n_eeg, n_src) and ``"L_meg"`` (n_meg, n_src) in SI
        (V/Am, T/Am), one fixed-orientation dipole per source;
        ``"src_pos"`` (n_src, 3) in head coordinates (m),
        ``"orientation"`` = ``"fixed"``, ``"source"`` (the file's name) and,
        with ``info``, ``"sphere_origin"``.

    Raises
    ------
    AppError
        The file cannot be read, is not in head coordinates, lacks a
        channel, or its sources have no normals to fix orientations to.
    """
    import mne

    path = Path(path)
    try:
        fwd = mne.read_forward_solution(path, verbose=False)
    except Exception as err:  # noqa: BLE001  (MNE raises several kinds)
        raise AppError(f"cannot read forward solution {path}: {err}", ExitCode.BAD_DATA) from err
    missing = [n for n in eeg_names + mag_names if n not in fwd["sol"]["row_names"]]
    if missing:
        raise AppError(
            f"{path.name} lacks {len(missing)} channel(s) the group level uses "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})",
            ExitCode.BAD_DATA,
        )
    try:
        fwd = mne.convert_forward_solution(
            fwd, surf_ori=True, force_fixed=True, use_cps=True, verbose=False
        )
    except Exception as err:  # noqa: BLE001
        raise AppError(
            f"{path.name}: cannot fix dipoles to the cortical normals ({err}); a forward "
            "on a cortical surface source space is needed", ExitCode.BAD_DATA,
        ) from err
    if fwd["coord_frame"] != mne.io.constants.FIFF.FIFFV_COORD_HEAD:
        raise AppError(f"{path.name} is not in head coordinates", ExitCode.BAD_DATA)
    rows = {name: i for i, name in enumerate(fwd["sol"]["row_names"])}
    gain = fwd["sol"]["data"]
    keep = thin_sources(fwd["source_rr"], max_sources)
    lead_fields: dict[str, Any] = {
        "L_eeg": gain[[rows[n] for n in eeg_names]][:, keep],
        "L_meg": gain[[rows[n] for n in mag_names]][:, keep],
        "eeg_names": list(eeg_names),
        "meg_names": list(mag_names),
        "src_pos": np.asarray(fwd["source_rr"])[keep],
        "orientation": "fixed",
        "source": path.name,
    }
    if info is not None:
        _, origin, _ = mne.bem.fit_sphere_to_headshape(info, units="m", verbose=False)
        lead_fields["sphere_origin"] = np.asarray(origin, float)
    return lead_fields


def projection_of_runs(infos: list[Any], names: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """The SSP projection the runs' data went through, on the channels ``names``.

    The participant level leaves active projectors in the data (its EOG
    projectors on the magnetometers; a recording's own, such as empty-room
    projectors, where it kept them), so a model that predicts the data from
    lead fields must project its gains alike, as MNE does when it builds an
    inverse operator. Without it, a lead-field prediction carries the
    projected-out field pattern that the data lack (measured on simulated
    data, adaptive's held-out R² at 10 mm: 0.043 unprojected, 0.061 projected,
    on the same subject).

    Parameters
    ----------
    infos : list of mne.Info
        One per run of the subject (each run can have its own projectors).
    names : list of str
        Channels, in the order of the data rows.

    Returns
    -------
    projection : ndarray, shape (n, n), or None
        The runs' projection matrices averaged with equal weights: of all linear maps,
        the mean is the one closest to each run's projection of a signal,
        for runs of equal length. None where no run has an active projector
        on these channels.
    projectors : list of str
        The projectors' descriptions, for provenance.
    """
    mats, descriptions = [], []
    for info in infos:
        projection, used = _projector([p for p in info["projs"] if p["active"]], names)
        mats.append(np.eye(len(names)) if projection is None else projection)
        descriptions += [d for d in used if d not in descriptions]
    if not descriptions:
        return None, []
    return np.mean(mats, axis=0), descriptions


def project_gains(lead_fields: dict[str, Any], infos: list[Any]) -> dict[str, Any]:
    """The lead fields projected as the runs' data were (:func:`projection_of_runs`).

    ``lead_fields`` needs ``"eeg_names"`` and ``"meg_names"`` (the rows);
    ``"L_eeg"`` and ``"L_meg"`` are replaced and ``"source"`` names the
    projectors. Returns a new dict.
    """
    out, used = dict(lead_fields), []
    for key, names in (("L_eeg", "eeg_names"), ("L_meg", "meg_names")):
        projection, projectors = projection_of_runs(infos, list(lead_fields[names]))
        if projection is not None:
            out[key] = projection @ lead_fields[key]
            used += projectors
    if used:
        out["source"] = f"{out.get('source', '')}; projected as the data ({', '.join(used)})"
    return out


def _projector(projs: list[Any], names: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """``I - U U^T`` for the projectors' vectors restricted to ``names``, and
    the descriptions of the projectors that touch them.

    MNE's own rule (``mne._fiff.proj.make_projector``, private, hence
    written out): each vector restricted to the channels and normalised, an
    orthonormal basis of their span by SVD, directions under 1 % of the
    largest singular value dropped. None where no vector touches ``names``.
    """
    vectors, used = [], []
    for proj in projs:
        index = {name: i for i, name in enumerate(proj["data"]["col_names"])}
        rows = [index.get(name) for name in names]
        for vector in np.atleast_2d(proj["data"]["data"]):
            v = np.array([0.0 if i is None else vector[i] for i in rows])
            norm = np.linalg.norm(v)
            if norm > 0:
                vectors.append(v / norm)
                used += [proj["desc"]] if proj["desc"] not in used else []
    if not vectors:
        return None, []
    u, s, _ = np.linalg.svd(np.array(vectors, float).T, full_matrices=False)
    u = u[:, s > 1e-2 * s[0]]
    return np.eye(len(names)) - u @ u.T, used


def subject_lead_fields(
    info: Any, subject: str, eeg_names: list[str], mag_names: list[str],
    forward_dir: str | Path | None = None,
    cleaning: dict[str, tuple[np.ndarray, list[str]]] | None = None,
) -> dict[str, Any]:
    """One subject's lead fields: its forward solution when ``forward_dir`` is set.

    Otherwise the app's own (sphere model, volume grid, free orientations).
    With ``cleaning`` (:func:`.cleaning.cleaning_of_subject`), the gains are
    cleaned as the data were (:func:`.cleaning.clean_gains`), which needs
    them on every channel the cleaning mixed. SI units; ``"source"`` says
    where they came from.
    """
    cleaning = cleaning or {}
    # the gains of every channel the cleaning mixes, the group's first
    eeg_rows, meg_rows = (
        list(dict.fromkeys([*names, *(cleaning[m][1] if m in cleaning else [])]))
        for m, names in (("eeg", eeg_names), ("meg", mag_names)))
    if forward_dir is not None:
        path = find_forward(forward_dir, subject)
        lead_fields = lead_fields_from_forward(path, eeg_rows, meg_rows, info=info)
    else:
        from ..translators.physics import lead_fields_from_info

        lead_fields = lead_fields_from_info(info, eeg_rows, meg_rows)
        lead_fields["source"] = "sphere model, volume grid"
    if cleaning:
        from .cleaning import clean_gains

        lead_fields = clean_gains(lead_fields, cleaning, eeg_names, mag_names)
    return lead_fields
