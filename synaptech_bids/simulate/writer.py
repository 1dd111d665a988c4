"""Write the simulated dataset (BIDS) and its ground truth (derivatives).

Layout::

    ROOT/
      dataset_description.json, README, participants.tsv/.json
      sub-01/ses-meg/
        sub-01_ses-meg_task-facerecognition_channels.tsv   (style ds000117)
        sub-01_ses-meg_task-facerecognition_meg.json       (style ds000117)
        sub-01_ses-meg_scans.tsv
        meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif (+ .json,
            _channels.tsv, _events.tsv/.json), sub-01_ses-meg_coordsystem.json
      derivatives/simulation/
        dataset_description.json  (DatasetType: derivative)
        sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_<desc>_<suffix>.npy|.tsv|.json
        sub-01/ses-meg/meg/sub-01_ses-meg_desc-cortex*_sources.npy
      derivatives/forward/        (only with ``save_forward``)
        dataset_description.json
        sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_fwd.fif

See ``docs/simulator.md`` for the files and units of the ground truth.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mne
import mne_bids
import numpy as np
import pandas as pd

from .._version import __version__
from ..bids_io.atomic import json_default
from . import geometry, recording, sources

__all__ = ["simulate_dataset", "load_truth", "TASK", "SESSION"]

TASK = "facerecognition"
SESSION = "meg"
_STYLES = ("ds000117", "mne-bids")
_DERIV = ("derivatives", "simulation")
# Runs whose float64 array is larger go through a temporary file (memory).
_DIRECT_WRITE_BYTES = 256 * 1024**2

_DEFAULTS: dict[str, Any] = {
    "n_patches": 6,
    "n_background": 300,
    "background_sigma_mm": 8.0,
    "source_spacing_mm": 6.0,
    "spread_deg": None,
    "spread_amp": 0.2,
    "evoked_scale": 1.0,
    "dev_spread_mm": 3.5,
    "run_spread_mm": 1.0,
    "evoked": True,
    "ongoing": True,
    "artifacts": True,
    "line_noise": True,
    "sensor_noise": True,
    "style": "ds000117",
    "save_leadfield": True,
    "save_forward": False,
    "chunk_s": 10.0,
    "verbose": False,
}


def _seq(seed: int, *key: int) -> np.random.Generator:
    # Generators keyed by (seed, purpose, subject, run): subject 2 is the same
    # whatever the number of subjects or runs simulated.
    return np.random.default_rng(np.random.SeedSequence([int(seed), *key]))


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown simulate_dataset option(s): {', '.join(sorted(unknown))}")
    opts = {**_DEFAULTS, **options}
    if opts["style"] not in _STYLES:
        raise ValueError(f"style must be one of {_STYLES}, got {opts['style']!r}")
    if int(opts["n_background"]) < 1 or int(opts["n_patches"]) < 0:
        raise ValueError("n_background must be >= 1 and n_patches >= 0")
    return opts


def simulate_dataset(
    root: str | Path,
    n_subjects: int = 3,
    n_runs: int = 2,
    duration: float = 60.0,
    seed: int = 0,
    sfreq: float = 1100.0,
    spread_mm: float = 5.0,
    line_freq: float = 50.0,
    **options: Any,
) -> Path:
    """Simulate a ds000117-like BIDS dataset of simultaneous EEG + MEG.

    Parameters
    ----------
    root : str or Path
        BIDS root to create (may exist if empty).
    n_subjects : int
        Number of subjects (labels ``01``, ``02``, ...).
    n_runs : int
        Runs per subject (``run-01`` ...), session ``meg``, task
        ``facerecognition``.
    duration : float
        Length of each run in seconds.
    seed : int
        Seed; one seed gives identical data.
    sfreq : float
        Sampling frequency in Hz (ds000117: 1100).
    spread_mm : float
        Between-subject spread of the shared brain patches: RMS 3-D
        displacement of their centres, in mm.
    line_freq : float
        Power-line frequency (Hz).
    **options
        ``n_patches`` (6) extra shared 1/f patches; ``n_background`` (300)
        background components; ``background_sigma_mm`` (8.0) their width
        (the background's spatial correlation length); ``source_spacing_mm``
        (6.0) cortex sampling;
        ``spread_deg`` (``2 * spread_mm``) RMS rotation of shared patches;
        ``spread_amp`` (0.2) log-normal amplitude spread; ``evoked_scale``
        (1.0) multiplies the evoked dipole moments (tests use 2 to see
        responses in few trials); ``dev_spread_mm``
        (3.5) head-position spread between subjects; ``run_spread_mm`` (1.0)
        between runs; ``evoked``, ``ongoing`` (brain parts), ``artifacts``,
        ``line_noise``, ``sensor_noise`` (True) switch parts on/off;
        ``style`` (``"ds000117"`` or ``"mne-bids"``); ``save_leadfield``
        (True) also store the lead field of each run; ``save_forward``
        (False) write each subject's MNE forward solution on its cortex,
        as an MRI-based pipeline would (see :func:`write_forward`);
        ``chunk_s`` (10)
        synthesis chunk; ``verbose`` (False) print progress.

    Returns
    -------
    root : pathlib.Path
        The BIDS root.
    """
    opts = _check_options(options)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    if n_subjects < 1 or n_runs < 1 or n_subjects > 99 or n_runs > 99:
        raise ValueError("n_subjects and n_runs must be between 1 and 99")
    if duration < 5.0:
        raise ValueError("duration must be at least 5 s")
    if sfreq < 2.5 * 45:
        raise ValueError("sfreq must be at least 112.5 Hz (brain rhythms up to 45 Hz)")
    root.mkdir(parents=True, exist_ok=True)
    _write_readme(root)
    eeg_cache: dict = {}
    for s in range(1, n_subjects + 1):
        label = f"{s:02d}"
        geom, src, comps = subject_world(seed, s, spread_mm, opts)
        _write_subject_truth(root, label, src, comps)
        for r in range(1, n_runs + 1):
            _simulate_run(
                root,
                geom,
                src,
                comps,
                r,
                _seq(seed, 3, s, r),
                duration,
                sfreq,
                line_freq,
                seed,
                spread_mm,
                opts,
                eeg_cache,
            )
        if opts["style"] == "ds000117":
            _session_sidecars(root, label)
    _write_dataset_description(root, seed)
    return root


def subject_world(seed: int, subject: int, spread_mm: float, opts: dict) -> tuple:
    """Subject ``subject``'s geometry, source space and components, as drawn from ``seed``.

    The one place these draws are made: :func:`simulate_dataset` and the
    calibration (``calibration.py``) must see the same subject.
    """
    geom = geometry.make_subject_geometry(
        f"{subject:02d}", _seq(seed, 1, subject), dev_spread_mm=float(opts["dev_spread_mm"])
    )
    src = sources.subject_source_space(
        geom.sphere_origin, geom.sphere_radius, float(opts["source_spacing_mm"])
    )
    comps = sources.make_components(
        src,
        geom.sphere_origin,
        geom.sphere_radius,
        shared_rng=_seq(seed, 0),  # identical for every subject
        subject_rng=_seq(seed, 2, subject),
        spread_mm=float(spread_mm),
        spread_deg=opts["spread_deg"],
        spread_amp=float(opts["spread_amp"]),
        n_patches=int(opts["n_patches"]),
        n_background=int(opts["n_background"]),
        background_sigma_mm=float(opts["background_sigma_mm"]),
        evoked_scale=float(opts["evoked_scale"]),
    )
    return geom, src, comps


# ---------------------------------------------------------------------------
# one run


def _bids_path(root: Path, label: str, run: int) -> mne_bids.BIDSPath:
    return mne_bids.BIDSPath(
        subject=label,
        session=SESSION,
        task=TASK,
        run=f"{run:02d}",
        datatype="meg",
        suffix="meg",
        extension=".fif",
        root=root,
    )


_FORWARD_DERIV = ("derivatives", "forward")


def write_forward(root: Path, info: mne.Info, geom: geometry.SubjectGeometry,
                  src: sources.SourceSpace) -> Path:
    """Write the subject's MNE forward solution on its cortex, for ``forward_dir``.

    What an MRI-based pipeline (FreeSurfer surfaces, BEM, co-registration;
    MNE-BIDS-Pipeline) gives a user, made from the simulator's own world:
    its cortex (positions and normals), its sphere conductor, the first
    run's head position. So it is the best case: exact anatomy and
    conductor, where a real one carries segmentation, conductivity and
    co-registration errors. Written to a temporary file, then renamed.
    """
    label = geom.label
    folder = root.joinpath(*_FORWARD_DERIV, f"sub-{label}", f"ses-{SESSION}", "meg")
    folder.mkdir(parents=True, exist_ok=True)
    fwd = recording.cortex_forward(info, geom, src)
    target = folder / f"sub-{label}_ses-{SESSION}_task-{TASK}_fwd.fif"
    tmp = folder / f".tmp-{target.name}"  # keeps MNE's _fwd.fif ending
    mne.write_forward_solution(tmp, fwd, overwrite=True, verbose=False)
    tmp.replace(target)
    return target


def _truth_dir(root: Path, label: str) -> Path:
    return root.joinpath(*_DERIV, f"sub-{label}", f"ses-{SESSION}", "meg")


def _truth_prefix(label: str, run: int) -> str:
    return f"sub-{label}_ses-{SESSION}_task-{TASK}_run-{run:02d}"


def _simulate_run(
    root: Path,
    geom: geometry.SubjectGeometry,
    src: sources.SourceSpace,
    comps: list[sources.Component],
    run: int,
    rng: np.random.Generator,
    duration: float,
    sfreq: float,
    line_freq: float,
    seed: int,
    spread_mm: float,
    opts: dict[str, Any],
    eeg_cache: dict,
) -> None:
    label = geom.label
    log = print if opts["verbose"] else (lambda *a, **k: None)
    dev_head_t = geometry.make_dev_head_t(geom, rng, float(opts["run_spread_mm"]))
    info = geometry.make_info(
        geom, dev_head_t, sfreq, line_freq, aux_as_eeg=opts["style"] == "ds000117"
    )
    meas = _dt.datetime(2009, 4, 9, 9, 0, tzinfo=_dt.timezone.utc) + _dt.timedelta(
        days=7 * (int(label) - 1), minutes=12 * (run - 1)
    )
    info.set_meas_date(meas)
    subj_rng = _seq(seed, 4, int(label))  # same subject info in every run
    with info._unlock():
        info["subject_info"] = {
            "id": int(label),
            "his_id": f"sub-{label}",
            "sex": int(subj_rng.integers(1, 3)),
            "hand": 1,
            "birthday": _dt.date(
                1978 + int(subj_rng.integers(0, 8)), 1 + int(subj_rng.integers(0, 12)), 15
            ),
        }
    n_times = int(round(duration * sfreq))
    log(f"sub-{label} run-{run:02d}: forward model")
    gain, gain_art, picks = recording.compute_gain(info, geom, src, eeg_cache=eeg_cache)
    if opts["save_forward"] and run == 1:
        write_forward(root, info, geom, src)
    brain_mix = recording.brain_mixing_full(info, picks, comps, gain)
    art_mix = recording.artifact_mixing(info, picks, gain_art)
    events = recording.make_events(duration, sfreq, rng)

    tdir = _truth_dir(root, label)
    tdir.mkdir(parents=True, exist_ok=True)
    prefix = _truth_prefix(label, run)
    brain_sink = np.lib.format.open_memmap(
        tdir / f"{prefix}_desc-brain_timeseries.npy",
        mode="w+",
        dtype=np.float32,
        shape=(len(comps), n_times),
    )
    art_sink = np.lib.format.open_memmap(
        tdir / f"{prefix}_desc-artifacts_timeseries.npy",
        mode="w+",
        dtype=np.float32,
        shape=(len(recording.ARTIFACT_NAMES), n_times),
    )
    synth = recording.RunSynthesizer(
        info,
        comps,
        brain_mix,
        art_mix,
        events,
        n_times,
        rng,
        {k: opts[k] for k in ("evoked", "ongoing", "artifacts", "line_noise", "sensor_noise")}
        | {"line_freq": float(line_freq)},
    )
    log(f"sub-{label} run-{run:02d}: synthesis of {n_times} samples")
    data = np.empty((info["nchan"], n_times))
    synth.run(data, brain_sink, art_sink, chunk_s=float(opts["chunk_s"]))
    brain_sink.flush()
    art_sink.flush()
    del brain_sink, art_sink
    raw = mne.io.RawArray(data, info, copy="auto", verbose=False)
    del data
    bids_path = _bids_path(root, label, run)
    bids_kw = dict(
        events=events.mne_events(),
        event_id=recording.EVENT_ID,
        overwrite=True,
        verbose=False,
    )
    log(f"sub-{label} run-{run:02d}: write_raw_bids")
    if raw._data.nbytes <= _DIRECT_WRITE_BYTES:
        mne_bids.write_raw_bids(raw, bids_path, allow_preload=True, format="FIF", **bids_kw)
        del raw
    else:
        # Long run: save to a temporary FIF, free the float64 array, and let
        # MNE-BIDS copy the file; write_raw_bids(allow_preload=True) would
        # copy the whole preloaded array and double peak memory. Both routes
        # write the same float32 data.
        with tempfile.TemporaryDirectory(prefix="synaptech-sim-") as tmp:
            tmp_fif = Path(tmp) / f"sub-{label}_run-{run:02d}_raw.fif"
            raw.save(tmp_fif, fmt="single", verbose=False)
            del raw
            raw = mne.io.read_raw_fif(tmp_fif, preload=False, verbose=False)
            mne_bids.write_raw_bids(raw, bids_path, **bids_kw)
            del raw
    if opts["style"] == "ds000117":
        _ds000117_run_files(bids_path, events, sfreq)
    _write_run_truth(
        root,
        label,
        run,
        info,
        dev_head_t,
        comps,
        brain_mix,
        art_mix,
        gain,
        picks,
        events,
        synth,
        geom,
        seed,
        spread_mm,
        opts,
        n_times,
    )


# ---------------------------------------------------------------------------
# BIDS sidecars


def _write_readme(root: Path) -> None:
    (root / "README").write_text(
        "Simulated simultaneous EEG + MEG recordings in the layout of OpenNeuro\n"
        "ds000117 (Wakeman & Henson, face recognition), made by "
        f"synaptech-bids-simulate {__version__}.\n\n"
        "Not real data. The ground truth (latent sources, sensor mixing,\n"
        "artefacts, head positions) is in derivatives/simulation/.\n",
        encoding="utf-8",
    )


def _write_dataset_description(root: Path, seed: int) -> None:
    mne_bids.make_dataset_description(
        path=root,
        name="Synaptech simulated EEG+MEG face recognition (ds000117-like)",
        dataset_type="raw",
        authors=["synaptech-bids simulator"],
        data_license="CC0",
        generated_by=[
            {
                "Name": "synaptech-bids-simulate",
                "Version": __version__,
                "Description": f"physics simulation, seed {seed}",
            }
        ],
        overwrite=True,
        verbose=False,
    )
    deriv = root.joinpath(*_DERIV)
    deriv.mkdir(parents=True, exist_ok=True)
    desc = {
        "Name": "Simulation ground truth",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "synaptech-bids-simulate",
                "Version": __version__,
                "Description": f"seed {seed}",
            }
        ],
        "SourceDatasets": [{"URL": "../../"}],
    }
    (deriv / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")
    forward = root.joinpath(*_FORWARD_DERIV)
    if forward.is_dir():
        desc = {**desc, "Name": "Forward solutions on the simulated cortex",
                "Description": "What an MRI-based pipeline would give (one MNE forward "
                "per subject, first run's head position); exact here: the simulator's "
                "own cortex and sphere conductor."}
        (forward / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")


_EVENTS_JSON = {
    "onset": {"Description": "Stimulus onset from the start of the recording", "Units": "s"},
    "duration": {"Description": "Stimulus presentation duration", "Units": "s"},
    "trigger": {
        "Description": "Trigger code on STI101",
        "Levels": {
            "5": "Famous face, first presentation",
            "6": "Famous face, immediate repeat",
            "7": "Famous face, delayed repeat",
            "13": "Unfamiliar face, first presentation",
            "14": "Unfamiliar face, immediate repeat",
            "15": "Unfamiliar face, delayed repeat",
            "17": "Scrambled face, first presentation",
            "18": "Scrambled face, immediate repeat",
            "19": "Scrambled face, delayed repeat",
        },
    },
    "stim_type": {
        "Description": "Stimulus category",
        "Levels": {
            "Famous": "famous face",
            "Unfamiliar": "unfamiliar face",
            "Scrambled": "scrambled face",
        },
    },
    "stim_file": {"Description": "Stimulus image (simulated; no file shipped)"},
}


def _ds000117_run_files(
    bids_path: mne_bids.BIDSPath, events: recording.Events, sfreq: float
) -> None:
    """Rewrite events.tsv and channels.tsv of a run the way ds000117 has them."""
    ev_path = bids_path.copy().update(suffix="events", extension=".tsv")
    df = pd.DataFrame(
        {
            "onset": np.round(events.samples / sfreq, 6),
            "duration": events.duration,
            "trigger": events.triggers,
            "stim_type": events.stim_type,
            "stim_file": events.stim_file,
        }
    )
    df.to_csv(ev_path.fpath, sep="\t", index=False, na_rep="n/a")
    ev_path.copy().update(extension=".json").fpath.write_text(
        json.dumps(_EVENTS_JSON, indent=2) + "\n"
    )
    ch_path = bids_path.copy().update(suffix="channels", extension=".tsv")
    ch = pd.read_csv(ch_path.fpath, sep="\t", keep_default_na=False, dtype=str)
    for name, typ in geometry.AUX_BIDS_TYPES.items():
        row = ch["name"] == name
        ch.loc[row, "type"] = typ
        ch.loc[row, "units"] = "V" if typ != "MISC" else "n/a"
        desc = {
            "HEOG": "horizontal EOG",
            "VEOG": "vertical EOG",
            "ECG": "electrocardiogram",
            "MISC": "unconnected input",
        }[typ]
        ch.loc[row, "description"] = desc
    ch.to_csv(ch_path.fpath, sep="\t", index=False)
    # Keep the sidecar's channel counts consistent with channels.tsv.
    js_path = bids_path.copy().update(suffix="meg", extension=".json").fpath
    side = json.loads(js_path.read_text())
    counts = ch["type"].value_counts()
    side["EEGChannelCount"] = int(counts.get("EEG", 0))
    side["EOGChannelCount"] = int(counts.get("HEOG", 0) + counts.get("VEOG", 0))
    side["ECGChannelCount"] = int(counts.get("ECG", 0))
    side["MiscChannelCount"] = int(counts.get("MISC", 0))
    js_path.write_text(json.dumps(side, indent=4) + "\n")


def _session_sidecars(root: Path, label: str) -> None:
    """ds000117 keeps channels.tsv and meg.json at the session level.

    They are copied from run 1 (runs differ only in duration and head
    position); the run-level files stay and take precedence (BIDS
    inheritance), so the dataset is valid either way.
    """
    run1 = _bids_path(root, label, 1)
    ses_dir = root / f"sub-{label}" / f"ses-{SESSION}"
    stem = f"sub-{label}_ses-{SESSION}_task-{TASK}"
    shutil.copyfile(
        run1.copy().update(suffix="channels", extension=".tsv").fpath,
        ses_dir / f"{stem}_channels.tsv",
    )
    side = json.loads(run1.copy().update(suffix="meg", extension=".json").fpath.read_text())
    for run_specific in ("RecordingDuration",):
        side.pop(run_specific, None)
    (ses_dir / f"{stem}_meg.json").write_text(json.dumps(side, indent=4) + "\n")


# ---------------------------------------------------------------------------
# ground truth


def _write_subject_truth(
    root: Path, label: str, src: sources.SourceSpace, comps: list[sources.Component]
) -> None:
    tdir = _truth_dir(root, label)
    tdir.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{label}_ses-{SESSION}"
    np.save(tdir / f"{stem}_desc-cortexpos_sources.npy", src.rr)
    np.save(tdir / f"{stem}_desc-cortexnormals_sources.npy", src.nn)
    # Dipole moment per source for 1 nAm of each component (sum of patches).
    moments = np.zeros((len(comps), src.n_sources, 3), np.float32)
    for k, c in enumerate(comps):
        for p in c.patches:
            moments[k, p.vertices] += p.gain * p.weights[:, None] * p.orientations
    np.save(tdir / f"{stem}_desc-moments_sources.npy", moments)
    _components_table(comps).to_csv(
        tdir / f"{stem}_desc-brain_components.tsv", sep="\t", index=False
    )


def _components_table(comps: list[sources.Component]) -> pd.DataFrame:
    rows = []
    for c in comps:
        centre = np.mean([p.centre for p in c.patches], axis=0)
        rows.append(
            {
                "name": c.name,
                "kind": c.kind,
                "signal": c.signal,
                "amplitude_nAm": round(float(c.amplitude), 6),
                "n_patches": len(c.patches),
                "n_sources": int(sum(len(p.vertices) for p in c.patches)),
                "centre_x": float(centre[0]),
                "centre_y": float(centre[1]),
                "centre_z": float(centre[2]),
                "params": json.dumps(c.params, sort_keys=True),
            }
        )
    return pd.DataFrame(rows)


def _write_run_truth(
    root: Path,
    label: str,
    run: int,
    info: mne.Info,
    dev_head_t: np.ndarray,
    comps: list[sources.Component],
    brain_mix: np.ndarray,
    art_mix: np.ndarray,
    gain: np.ndarray,
    picks: np.ndarray,
    events: recording.Events,
    synth: recording.RunSynthesizer,
    geom: geometry.SubjectGeometry,
    seed: int,
    spread_mm: float,
    opts: dict[str, Any],
    n_times: int,
) -> None:
    tdir = _truth_dir(root, label)
    prefix = _truth_prefix(label, run)
    np.save(tdir / f"{prefix}_desc-brain_mixing.npy", brain_mix)
    np.save(tdir / f"{prefix}_desc-artifacts_mixing.npy", art_mix)
    np.save(tdir / f"{prefix}_desc-devhead_trans.npy", dev_head_t)
    pos, nrm = geometry.sensor_positions_head(info)
    np.save(tdir / f"{prefix}_desc-sensors_positions.npy", pos)
    np.save(tdir / f"{prefix}_desc-sensors_normals.npy", nrm)
    if opts["save_leadfield"]:
        np.save(tdir / f"{prefix}_desc-leadfield_forward.npy", gain.astype(np.float32))
    pd.DataFrame(
        {
            "name": list(recording.ARTIFACT_NAMES),
            "units": [
                "1 (peak blink = 1)",
                "1 (horizontal eye position)",
                "1 (ECG R peak = 1)",
                "1 (homogeneous field, RMS 1)",
                "1 (homogeneous field, RMS 1)",
                "1 (homogeneous field, RMS 1)",
            ],
        }
    ).to_csv(tdir / f"{prefix}_desc-artifacts_components.tsv", sep="\t", index=False)
    pd.DataFrame(
        {
            "sample": events.samples,
            "onset": events.samples / info["sfreq"],
            "trigger": events.triggers,
            "stim_type": events.stim_type,
            "repetition": events.repetition,
        }
    ).to_csv(tdir / f"{prefix}_desc-truth_events.tsv", sep="\t", index=False)
    types = info.get_channel_types()
    meta = {
        "Description": "Ground truth of a simulated run. recording = "
        "brain_mixing @ brain_timeseries + artifacts_mixing @ artifacts_timeseries"
        " + line noise + sensor noise (each part present if enabled below). "
        "Rows of the mixing matrices follow ChannelNames (the FIF order).",
        "SamplingFrequency": float(info["sfreq"]),
        "NTimes": int(n_times),
        "ChannelNames": list(info["ch_names"]),
        "ChannelTypesInFIF": list(types),
        "TrueChannelTypes": [
            geometry.AUX_CHANNELS.get(n, t) for n, t in zip(info["ch_names"], types)
        ],
        "LeadfieldChannels": [info["ch_names"][k] for k in picks],
        "ComponentNames": [c.name for c in comps],
        "ArtifactNames": list(recording.ARTIFACT_NAMES),
        "Enabled": {
            k: bool(opts[k])
            for k in ("evoked", "ongoing", "artifacts", "line_noise", "sensor_noise")
        },
        "Seed": int(seed),
        "SpreadMM": float(spread_mm),
        "Options": {k: v for k, v in opts.items() if k != "verbose"},
        "HeadSphere": {
            "origin_m": geom.sphere_origin.tolist(),
            "radius_m": geom.sphere_radius,
            "relative_radii": [0.90, 0.92, 0.97, 1.0],
            "conductivities_S_per_m": [0.33, 1.0, 0.004, 0.33],
        },
        "HeadScale": geom.head_scale,
        "SourceSpace": "folded cortex-like surface, fixed normal orientations, "
        f"{len(geom.eeg_names)} EEG electrodes; see docs/simulator.md",
        "Noise": synth.noise_description,
        "Units": {
            "brain_timeseries": "nAm (total dipole moment of the component)",
            "brain_mixing": "V, T or T/m per nAm (by channel type; 0 for aux/stim)",
            "artifacts_timeseries": "unitless (see artifacts_components.tsv)",
            "artifacts_mixing": "V, T or T/m per unit of the artefact time course",
            "devhead_trans": "4x4 rigid transform, device -> head, metres",
            "sensors_positions": "head frame, metres (MEG coil centres, EEG "
            "electrodes; NaN without position)",
            "sensors_normals": "head frame unit vectors (MEG only)",
            "leadfield_forward": "float32 (n LeadfieldChannels, 3 * n sources), "
            "V, T or T/m per A*m, x/y/z per source, head frame",
            "cortexpos_sources": "head frame, metres",
            "moments_sources": "(n components, n sources, 3) dipole moment (nAm)"
            " per nAm of the component",
        },
        "Files": sorted(p.name for p in tdir.glob(f"{prefix}_*"))
        + [
            f"sub-{label}_ses-{SESSION}_desc-cortexpos_sources.npy",
            f"sub-{label}_ses-{SESSION}_desc-cortexnormals_sources.npy",
            f"sub-{label}_ses-{SESSION}_desc-moments_sources.npy",
            f"sub-{label}_ses-{SESSION}_desc-brain_components.tsv",
        ],
    }
    (tdir / f"{prefix}_desc-simulation_meta.json").write_text(
        json.dumps(meta, indent=2, default=json_default) + "\n"
    )


def load_truth(
    bids_root: str | Path, subject: str | int, run: str | int, mmap: bool = True
) -> dict[str, Any]:
    """Read the ground truth of one simulated run.

    Parameters
    ----------
    bids_root : str or Path
        Root of the simulated BIDS dataset.
    subject : str or int
        ``"01"``, ``"sub-01"`` or ``1``.
    run : str or int
        ``"01"``, ``"run-01"`` or ``1``.
    mmap : bool
        Memory-map the large arrays (time courses) instead of reading them.

    Returns
    -------
    truth : dict
        ``brain_timeseries`` (n_comp, n_times) nAm; ``brain_mixing``
        (n_channels, n_comp); ``brain_components`` (DataFrame);
        ``artifacts_timeseries`` (6, n_times); ``artifacts_mixing``
        (n_channels, 6); ``artifact_names``; ``dev_head_t`` (4, 4);
        ``sensor_positions`` / ``sensor_normals`` (n_channels, 3, head
        frame); ``source_positions`` / ``source_normals`` (n_sources, 3);
        ``source_moments`` (n_comp, n_sources, 3); ``leadfield`` (or None)
        with ``leadfield_ch_names``; ``events`` (DataFrame); ``ch_names``;
        ``sfreq``; ``meta`` (the JSON, with units).
    """
    label = str(subject).removeprefix("sub-")
    label = f"{int(label):02d}" if label.isdigit() else label
    r = int(str(run).removeprefix("run-"))
    root = Path(bids_root)
    tdir = _truth_dir(root, label)
    prefix = _truth_prefix(label, r)
    meta_path = tdir / f"{prefix}_desc-simulation_meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no simulation ground truth at {meta_path}")
    meta = json.loads(meta_path.read_text())
    mode = "r" if mmap else None

    def load(name: str, big: bool = False) -> np.ndarray:
        return np.load(tdir / name, allow_pickle=False, mmap_mode=mode if big else None)

    stem = f"sub-{label}_ses-{SESSION}"
    lf = tdir / f"{prefix}_desc-leadfield_forward.npy"
    return {
        "brain_timeseries": load(f"{prefix}_desc-brain_timeseries.npy", big=True),
        "brain_mixing": load(f"{prefix}_desc-brain_mixing.npy"),
        "brain_components": pd.read_csv(tdir / f"{stem}_desc-brain_components.tsv", sep="\t"),
        "artifacts_timeseries": load(f"{prefix}_desc-artifacts_timeseries.npy", big=True),
        "artifacts_mixing": load(f"{prefix}_desc-artifacts_mixing.npy"),
        "artifact_names": list(meta["ArtifactNames"]),
        "dev_head_t": load(f"{prefix}_desc-devhead_trans.npy"),
        "sensor_positions": load(f"{prefix}_desc-sensors_positions.npy"),
        "sensor_normals": load(f"{prefix}_desc-sensors_normals.npy"),
        "source_positions": load(f"{stem}_desc-cortexpos_sources.npy"),
        "source_normals": load(f"{stem}_desc-cortexnormals_sources.npy"),
        "source_moments": load(f"{stem}_desc-moments_sources.npy", big=True),
        "leadfield": np.load(lf, allow_pickle=False, mmap_mode=mode) if lf.exists() else None,
        "leadfield_ch_names": list(meta["LeadfieldChannels"]),
        "events": pd.read_csv(tdir / f"{prefix}_desc-truth_events.tsv", sep="\t"),
        "ch_names": list(meta["ChannelNames"]),
        "sfreq": float(meta["SamplingFrequency"]),
        "meta": meta,
    }
