"""Calibration of the simulated world against a real EEG + MEG recording.

Three statistics summarise how low-dimensional EEG and MEG are and how much
of the MEG the EEG can linearly explain; they are computed the same way from
the real baseline covariance (``sample_audvis_trunc-cov.fif``, MNE "sample"
subject) and from a simulated recording's covariance:

* ``eeg_counts``: number of principal components of the average-referenced
  EEG needed for 50 / 90 / 99 % of its variance;
* ``mag_counts``: the same for the magnetometers after the real file's three
  SSP projectors (applied to the simulated magnetometers too);
* ``predictable_share``: ``trace(Cme Cee^+ Cme^T) / trace(Cmm)``, the share of
  magnetometer variance that the best instantaneous linear map from the EEG
  explains (the population, in-sample optimum).

Like is compared with like: the real file holds 60 EEG channels (EEG 001-060
of the MGH cap), so the simulated EEG001-EEG060 are used; both are average
referenced; the magnetometers of both get the same projectors.

The simulated covariance is computed analytically from the simulator's truth
(components are independent, so their covariance is diagonal), in the band
assumed for the real covariance (0.1-40 Hz, the band in which the MNE
"sample" averages and covariance were made; the file does not record it):
brain ongoing activity (no evoked responses, as in a pre-stimulus
baseline), the heartbeat and the room's field, white and
1/f sensor noise, and line noise if its frequency is in the band. Blinks and
saccades are left out, as epochs with them are rejected before a baseline
covariance is computed.

The real file is an *estimate*, though, from about 29 pre-stimulus windows
of 200 ms (:data:`REAL_BASELINE`, reconstructed from the MNE testing data),
and the tests compare like with like: :func:`baseline_statistics` estimates
the simulated statistics the same way, several times, and the medians are
held to the issue's tolerances. Removing each window's mean acts as a
high-pass, and the in-sample share of so small an estimate is biased
upwards (0.26-0.27 in the calibrated world, whose population share is
0.04-0.06).

>>> from synaptech_bids.simulate.calibration import compare_to_real
>>> print(compare_to_real().to_string())                  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
from scipy import signal

from . import geometry, recording, sources

__all__ = [
    "REAL_COV",
    "QUANTILES",
    "TOLERANCE_SHARE",
    "TOLERANCE_COUNTS",
    "calibration_statistics",
    "real_statistics",
    "simulated_covariance",
    "REAL_BASELINE",
    "baseline_covariances",
    "simulated_statistics",
    "baseline_statistics",
    "compare_to_real",
    "statistics_table",
    "source_variance_share",
]

#: The real covariance, relative to the repository root (never copied in).
REAL_COV = Path("..") / "shared" / "data" / "real" / "sample_audvis_trunc-cov.fif"
#: Variance shares for the component counts.
QUANTILES = (0.5, 0.9, 0.99)
#: Tolerances of the calibration (issue 6): absolute on the share, relative
#: on the counts.
TOLERANCE_SHARE = 0.05
TOLERANCE_COUNTS = 0.30
#: Band of the real covariance (Hz).
REAL_BAND = (0.1, 40.0)
#: The real file's EEG: EEG 001-060 of the MGH cap.
_REAL_EEG = [f"EEG{k:03d}" for k in range(1, 61)]


def _norm(name: str) -> str:
    return name.replace(" ", "")


def _neuromag_type(name: str) -> str | None:
    n = _norm(name)
    if n.startswith("MEG") and n[3:].isdigit():
        return "mag" if n.endswith("1") else "grad"
    if n.startswith("EEG") and n[3:].isdigit():
        return "eeg"
    return None


def _mag_projector(projs: list, mag_names: list[str]) -> np.ndarray:
    """Orthogonal projector removing the SSP vectors that act on magnetometers."""
    norm_names = [_norm(n) for n in mag_names]
    vecs = []
    for p in projs:
        cols = [_norm(c) for c in p["data"]["col_names"]]
        v = np.zeros(len(mag_names))
        hit = False
        for j, c in enumerate(cols):
            if c in norm_names:
                v[norm_names.index(c)] = p["data"]["data"][0, j]
                hit = True
        if hit and np.any(v):
            vecs.append(v)
    if not vecs:
        return np.eye(len(mag_names))
    u, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    u = u[:, s > s.max() * 1e-10]
    return np.eye(len(mag_names)) - u @ u.T


def _counts(c: np.ndarray) -> list[int]:
    ev = np.clip(np.linalg.eigvalsh(c)[::-1], 0.0, None)
    cum = np.cumsum(ev) / ev.sum()
    return [int(np.searchsorted(cum, q) + 1) for q in QUANTILES]


def calibration_statistics(
    cov: np.ndarray,
    ch_names: list[str],
    projs: list | None = None,
    eeg_names: list[str] | None = None,
) -> dict[str, Any]:
    """Component counts and the EEG -> magnetometer predictable share.

    Parameters
    ----------
    cov : ndarray, shape (n_channels, n_channels)
        Sensor covariance (SI units).
    ch_names : list of str
        Its channels, Neuromag names (``MEG 0111`` or ``MEG0111``; ``EEG 001``
        or ``EEG001``). Magnetometers are the MEG names ending in 1.
    projs : list of mne.Projection or None
        SSP projectors to apply to the magnetometers (matched by name,
        spaces ignored); those without a magnetometer are skipped.
    eeg_names : list of str or None
        EEG channels to use (default: all ``EEG`` channels of ``ch_names``).

    Returns
    -------
    stats : dict
        ``eeg_counts``, ``mag_counts`` (lists for :data:`QUANTILES`),
        ``predictable_share`` (float), ``n_eeg``, ``n_mag``,
        ``eeg_rms`` (V, average reference), ``mag_rms`` (T, after SSP).
    """
    names = [_norm(n) for n in ch_names]
    mag = [k for k, n in enumerate(names) if _neuromag_type(n) == "mag"]
    if eeg_names is None:
        eeg = [k for k, n in enumerate(names) if _neuromag_type(n) == "eeg"]
    else:
        eeg = [names.index(_norm(n)) for n in eeg_names]
    if len(mag) < 2 or len(eeg) < 2:
        raise ValueError("need at least two magnetometers and two EEG channels")
    pm = _mag_projector(projs or [], [names[k] for k in mag])
    ne = len(eeg)
    pe = np.eye(ne) - 1.0 / ne  # average reference
    cmm = pm @ cov[np.ix_(mag, mag)] @ pm
    cee = pe @ cov[np.ix_(eeg, eeg)] @ pe
    cme = pm @ cov[np.ix_(mag, eeg)] @ pe
    # rcond far below the EEG's smallest real eigenvalue, far above the
    # numerical zero that the average reference leaves.
    cee_pinv = np.linalg.pinv(cee, rcond=1e-12, hermitian=True)
    share = float(np.trace(cme @ cee_pinv @ cme.T) / np.trace(cmm))
    return {
        "eeg_counts": _counts(cee),
        "mag_counts": _counts(cmm),
        "predictable_share": share,
        "n_eeg": ne,
        "n_mag": len(mag),
        "eeg_rms": float(np.sqrt(np.trace(cee) / ne)),
        "mag_rms": float(np.sqrt(np.trace(cmm) / len(mag))),
    }


def _real_cov(fname: str | Path | None) -> mne.Covariance:
    fname = Path(fname) if fname is not None else REAL_COV
    if not fname.exists():
        raise FileNotFoundError(f"real covariance not found: {fname}")
    return mne.read_cov(fname, verbose=False)


def _mag_projs(cov: mne.Covariance) -> list:
    """The real file's SSP projectors but its average EEG reference."""
    return [p for p in cov["projs"] if not p["desc"].lower().startswith("average eeg")]


def real_statistics(fname: str | Path | None = None) -> dict[str, Any]:
    """Calibration statistics of the real baseline covariance.

    Parameters
    ----------
    fname : str, Path or None
        Covariance file (default :data:`REAL_COV`, relative to the working
        directory, i.e. the repository root).

    Returns
    -------
    stats : dict
        See :func:`calibration_statistics`.
    """
    cov = _real_cov(fname)
    return calibration_statistics(cov["data"], list(cov["names"]), _mag_projs(cov))


# ---------------------------------------------------------------------------
# analytic covariance of a simulated recording


def _band_fraction(sos: np.ndarray, sfreq: float, band: tuple[float, float] | None) -> float:
    """Share of a filter's output variance (white input) inside ``band``."""
    if band is None:
        return 1.0
    f, h = signal.sosfreqz(sos, worN=2**16, fs=sfreq)
    p = np.abs(h) ** 2
    inside = (f >= band[0]) & (f <= band[1])
    return float(p[inside].sum() / p.sum())


@functools.lru_cache(maxsize=16)
def _pink_fraction(sfreq: float, band: tuple[float, float] | None) -> float:
    # hundreds of background components share one filter
    return _band_fraction(sources._pink_sos(sfreq), sfreq, band)


def _white_fraction(sfreq: float, band: tuple[float, float] | None) -> float:
    if band is None:
        return 1.0
    return float(max(0.0, min(band[1], sfreq / 2) - band[0]) / (sfreq / 2))


def _component_variance(
    comp: sources.Component, sfreq: float, band: tuple[float, float] | None
) -> float:
    """Variance (nAm^2) of an ongoing component's time course in ``band``."""
    if comp.signal == "pink":
        frac = _pink_fraction(float(sfreq), band)
    elif comp.signal == "band":
        sos = sources._band_sos(
            float(sfreq), round(comp.params["freq"], 3), comp.params.get("bandwidth", 2.0)
        )
        frac = _band_fraction(sos, sfreq, band)
    elif comp.signal == "mu_beta":
        mu = sources._band_sos(float(sfreq), round(comp.params["freq"], 3), 2.0)
        beta = sources._band_sos(float(sfreq), round(comp.params["beta_freq"], 3), 6.0)
        frac = (_band_fraction(mu, sfreq, band) + 0.36 * _band_fraction(beta, sfreq, band)) / 1.36
    else:
        return 0.0  # evoked: absent from a baseline
    return comp.amplitude**2 * frac


def _filtered_variance(x: np.ndarray, sfreq: float, band: tuple[float, float] | None) -> float:
    if band is None:
        return float(np.var(x))
    spec = np.fft.rfft(x - x.mean())
    f = np.fft.rfftfreq(len(x), 1.0 / sfreq)
    spec[(f < band[0]) | (f > band[1])] = 0.0
    return float(np.var(np.fft.irfft(spec, len(x))))


def _setup(
    subject: int,
    run: int,
    seed: int,
    sfreq: float,
    spread_mm: float,
    line_freq: float,
    options: dict[str, Any],
) -> tuple:
    """The subject's components and the run's mixing, drawn as simulate_dataset does."""
    from .writer import _check_options, _seq, subject_world

    opts = _check_options(options)
    geom, src, comps = subject_world(seed, subject, spread_mm, opts)
    rng = _seq(seed, 3, subject, run)
    dev_head_t = geometry.make_dev_head_t(geom, rng, float(opts["run_spread_mm"]))
    info = geometry.make_info(geom, dev_head_t, sfreq, line_freq, aux_as_eeg=False)
    gain, gain_art, picks = recording.compute_gain(info, geom, src)
    mix = recording.brain_mixing_full(info, picks, comps, gain)
    return info, comps, mix, picks, gain_art, rng


def simulated_covariance(
    subject: int = 1,
    run: int = 1,
    seed: int = 0,
    duration: float = 60.0,
    sfreq: float = 1100.0,
    spread_mm: float = 5.0,
    line_freq: float = 50.0,
    band: tuple[float, float] | None = REAL_BAND,
    artifacts: bool = True,
    noise: bool = True,
    **options: Any,
) -> tuple[np.ndarray, list[str]]:
    """Covariance of a simulated baseline recording, from the simulator's truth.

    The subject and run are those :func:`~synaptech_bids.simulate.simulate_dataset`
    with the same arguments writes (same random streams), but nothing is
    synthesised: the covariance is ``M diag(v) M^T`` over the independent
    ongoing brain components (``v`` their variance in ``band``) plus the
    heartbeat and room-field artefacts (unless ``artifacts=False``), the
    white and 1/f sensor noise and the line noise in the band. Evoked
    responses, blinks and saccades are left out (a baseline covariance).

    Parameters
    ----------
    subject, run : int
        Which subject and run.
    seed, duration, sfreq, spread_mm, line_freq : see ``simulate_dataset``
    band : tuple of float or None
        Pass band (Hz) of the covariance; None for the raw band.
    artifacts : bool
        Include the heartbeat and the room's field.
    noise : bool
        Include sensor and line noise (False: brain and artefacts only).
    **options
        ``simulate_dataset`` options (``n_patches``, ``n_background``...).

    Returns
    -------
    cov : ndarray, shape (n_channels, n_channels)
        SI units, channels of the run's FIF except the stim channel.
    ch_names : list of str
    """
    info, comps, mix, picks, gain_art, rng = _setup(
        subject, run, seed, sfreq, spread_mm, line_freq, options
    )
    var = np.array([_component_variance(c, sfreq, band) for c in comps])
    cov = (mix * var) @ mix.T
    # The synthesiser's noise streams, drawn as RunSynthesizer.run draws them.
    recording.make_events(duration, sfreq, rng)
    ss = np.random.SeedSequence(int(rng.integers(2**63)))
    r_noise = np.random.default_rng(ss.spawn(4)[3])
    sensor = recording._SensorNoise(info, r_noise, line_freq, True, True)
    if artifacts:
        art = recording.artifact_mixing(info, picks, gain_art)
        beats = recording.ArtifactSignals(int(60 * sfreq), sfreq, np.random.default_rng(0))
        heart = beats.next(0, int(60 * sfreq))[2]
        env_frac = _band_fraction(beats.env_sos, sfreq, band)
        v_art = np.array([0.0, 0.0, _filtered_variance(heart, sfreq, band), *[env_frac] * 3])
        cov += (art * v_art) @ art.T
    keep = [k for k, t in enumerate(info.get_channel_types()) if t != "stim"]
    if not noise:
        return cov[np.ix_(keep, keep)], [info["ch_names"][k] for k in keep]
    white = sensor.white**2 * _white_fraction(sfreq, band)
    cov[np.diag_indices_from(cov)] += white
    pink_frac = _band_fraction(sensor.pink_sos, sfreq, band)
    cov[sensor.pink_rows, sensor.pink_rows] += sensor.pink_sd**2 * pink_frac
    for (h, g), ph in zip(sensor.harmonics, sensor.line_phase):
        f = h * line_freq
        if band is not None and not band[0] <= f <= band[1]:
            continue
        a = g * sensor.line_amp
        vec = np.c_[a * np.cos(ph), a * np.sin(ph)]
        cov += vec @ vec.T / 2.0
    return cov[np.ix_(keep, keep)], [info["ch_names"][k] for k in keep]


#: How the real covariance was estimated, as far as the MNE testing data
#: record it: its folder holds the description file ``audvis.cov`` of
#: ``mne_process_raw`` (pre-stimulus windows -0.2..0 s of the four
#: conditions, each baseline corrected over the whole window; epochs
#: rejected above these peak-to-peak amplitudes) and the events log of the
#: truncated raw (``sample_audvis_trunc-ave.log``: 300 Hz, a stimulus every
#: ~0.7 s). Windows are 61 samples; 29 of them hold 1769 samples, the file's
#: 1767 degrees of freedom within one window.
REAL_BASELINE: dict[str, Any] = {
    "sfreq": 600.614990234375 / 2,
    "n_window_samples": 61,
    "n_windows": 29,
    "soa_s": 0.7,
    "reject": {"eeg": 40e-6, "mag": 4e-12, "grad": 2000e-13},
}


def baseline_covariances(
    n_draws: int = 6,
    subject: int = 1,
    run: int = 1,
    seed: int = 0,
    spread_mm: float = 5.0,
    line_freq: float = 50.0,
    band: tuple[float, float] = REAL_BAND,
    projs: list | None = None,
    **options: Any,
) -> tuple[list[np.ndarray], list[str], list[float]]:
    """Covariances estimated as the real one was: from short baseline windows.

    The real file is not a population covariance but an estimate from about
    29 pre-stimulus windows of 200 ms (:data:`REAL_BASELINE`). Each window's
    mean is removed, which takes away most activity below ~3 Hz, and with
    60 EEG regressors and ~1800 correlated samples the in-sample predictable
    share of such an estimate is biased upwards. To compare like with like,
    each draw synthesises a baseline of the subject (ongoing brain activity,
    heartbeat, room field, sensor and line noise; no evoked responses,
    blinks or saccades) at the real rate, band-passes it (4th-order
    Butterworth, forward-backward, 20 s of padding), cuts 29 windows one
    stimulus interval apart, baseline-corrects each and pools them.

    The real windows also passed a peak-to-peak rejection (EEG 40 uV,
    magnetometers 4 pT, gradiometers 2000 fT/cm; EEG average referenced);
    the share of simulated windows that would pass it is returned, but the
    covariance uses every window, so that it exists whatever that share.
    ``projs`` (the real file's SSP projectors) are applied to the
    magnetometers before their rejection, as ``mne_process_raw --projon``
    rejects projected data.

    Returns
    -------
    covs : list of ndarray
        One (n_channels, n_channels) estimate per draw (channels without the
        stim channel).
    ch_names : list of str
    pass_rates : list of float
        Per draw, the share of windows that the real rejection would keep.
    """
    spec = REAL_BASELINE
    sfreq, n_win, n_len = spec["sfreq"], spec["n_windows"], spec["n_window_samples"]
    info, comps, mix, picks, gain_art, _ = _setup(
        subject, run, seed, sfreq, spread_mm, line_freq, options
    )
    art = recording.artifact_mixing(info, picks, gain_art)
    art[:, :2] = 0.0  # no blinks or saccades in a baseline
    keep = [k for k, t in enumerate(info.get_channel_types()) if t != "stim"]
    names = [info["ch_names"][k] for k in keep]
    types = np.array(info.get_channel_types())[keep]
    eeg = [names.index(n) for n in _REAL_EEG]
    mags = np.flatnonzero(types == "mag")
    pm = _mag_projector(projs or [], [_norm(names[k]) for k in mags])
    sos = signal.butter(4, band, btype="bandpass", fs=sfreq, output="sos")
    pad = int(20 * sfreq)
    starts = (np.arange(n_win) * spec["soa_s"] * sfreq).astype(int)
    n_tot = starts[-1] + n_len + 2 * pad
    covs, rates = [], []
    for d in range(n_draws):
        rng = np.random.default_rng([seed, 98, subject, run, d])
        tc = sources.ContinuousSignals(comps, sfreq, rng).next(n_tot)
        x = mix @ tc.astype(np.float64)
        x += art @ recording.ArtifactSignals(n_tot, sfreq, rng).next(0, n_tot)
        recording._SensorNoise(info, rng, line_freq, True, True).add(x, 0)
        x = signal.sosfiltfilt(sos, x[keep], axis=-1)[:, pad:-pad]
        win = np.stack([x[:, s : s + n_len] for s in starts], axis=1)
        win -= win.mean(axis=2, keepdims=True)  # baseline -0.2..0 s
        # largest peak-to-peak amplitude of each window, per channel type
        eeg_avg = win[eeg] - win[eeg].mean(axis=0)
        mag_proj = np.einsum("ij,jwt->iwt", pm, win[mags])
        ok = np.ones(n_win, dtype=bool)
        for kind, x_kind in (("eeg", eeg_avg), ("mag", mag_proj), ("grad", win[types == "grad"])):
            ok &= np.ptp(x_kind, axis=2).max(axis=0) < spec["reject"][kind]
        rates.append(float(ok.mean()))
        flat = win.reshape(len(keep), -1)
        covs.append(flat @ flat.T / (flat.shape[1] - n_win))
    return covs, names, rates




def simulated_statistics(real_fname: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Calibration statistics of a simulated recording (see :func:`simulated_covariance`).

    The real file's magnetometer projectors are applied and the EEG is
    restricted to EEG001-EEG060, the channels the real file has.
    """
    cov, names = simulated_covariance(**kwargs)
    return calibration_statistics(cov, names, _mag_projs(_real_cov(real_fname)), _REAL_EEG)


def baseline_statistics(
    real_fname: str | Path | None = None, n_draws: int = 6, **kwargs: Any
) -> list[dict[str, Any]]:
    """Calibration statistics of baselines estimated as the real file was.

    One dict per draw of :func:`baseline_covariances` (keys of
    :func:`calibration_statistics`, plus ``kept``: the share of its windows
    that the real file's rejection would keep); projectors and EEG channels
    as in :func:`simulated_statistics`.
    """
    projs = _mag_projs(_real_cov(real_fname))
    covs, names, kept = baseline_covariances(n_draws, projs=projs, **kwargs)
    return [
        calibration_statistics(c, names, projs, _REAL_EEG) | {"kept": k}
        for c, k in zip(covs, kept)
    ]


def compare_to_real(
    subjects: tuple[int, ...] = (1,), real_fname: str | Path | None = None, **kwargs: Any
) -> pd.DataFrame:
    """Simulated vs real calibration statistics, side by side.

    Parameters
    ----------
    subjects : tuple of int
        Simulated subjects (one column each).
    real_fname : str, Path or None
        Real covariance (default :data:`REAL_COV`).
    **kwargs
        Passed to :func:`simulated_covariance`.

    Returns
    -------
    table : pandas.DataFrame
        Rows: the statistics; columns ``real``, ``sub-01``...
    """
    cols = {"real": real_statistics(real_fname)}
    for s in subjects:
        cols[f"sub-{s:02d}"] = simulated_statistics(real_fname, subject=s, **kwargs)
    return statistics_table(cols)


def statistics_table(columns: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Side-by-side table of calibration statistics (one column per entry).

    Parameters
    ----------
    columns : dict
        Column name -> output of :func:`calibration_statistics`.

    Returns
    -------
    table : pandas.DataFrame
    """
    rows = {}
    for key in ("eeg_counts", "mag_counts"):
        for i, q in enumerate(QUANTILES):
            rows[f"{key[:3]} components {int(q * 100)}%"] = {
                c: v[key][i] for c, v in columns.items()
            }
    rows["predictable share"] = {c: round(v["predictable_share"], 3) for c, v in columns.items()}
    rows["EEG RMS (uV)"] = {c: round(v["eeg_rms"] * 1e6, 2) for c, v in columns.items()}
    rows["mag RMS (fT)"] = {c: round(v["mag_rms"] * 1e15, 1) for c, v in columns.items()}
    return pd.DataFrame(rows).T


# ---------------------------------------------------------------------------
# noise ceiling of a simulated recording


def source_variance_share(
    root: str | Path,
    subject: str | int,
    run: str | int | None = None,
    l_freq: float | None = None,
    h_freq: float | None = None,
) -> dict[str, float]:
    """Share of each magnetometer's variance that comes from brain sources.

    The noise ceiling of any EEG -> MEG translator on simulated data: the
    brain part of a magnetometer (``brain_mixing @ brain_timeseries`` of the
    ground truth: ongoing and evoked components) over the variance of the
    recorded channel (the FIF: brain + artefacts + room field + line and
    sensor noise), both with their mean removed and pooled over runs. What
    is not brain cannot be predicted from brain signals; it is an upper
    bound, not what EEG can reach (EEG sees only part of the brain).

    It is computed on the **raw** recording, at the raw sampling rate,
    without SSP or ICA; with ``l_freq`` / ``h_freq`` both parts are first
    band-passed with the same :func:`mne.filter.filter_data` FIR filter (e.g.
    0.1-100 Hz, the participant-level band). The participant level also
    resamples to 250 Hz and removes ICA components (blinks, heartbeat),
    which raises the share a little; the room field below a few tenths of a
    Hz, not removed by a 0.1 Hz high-pass, keeps it low on unprojected
    magnetometers.

    Parameters
    ----------
    root : str or Path
        Root of a simulated BIDS dataset.
    subject : str or int
        ``"01"``, ``"sub-01"`` or ``1``.
    run : str, int or None
        One run, or None for all runs of the subject (pooled).
    l_freq, h_freq : float or None
        Optional band-pass applied to both parts (Hz).

    Returns
    -------
    share : dict of str to float
        Magnetometer name -> share in [0, 1], and ``"mean"`` (mean over
        magnetometers of the per-channel shares).
    """
    from .writer import _bids_path, _truth_dir, load_truth

    root = Path(root)
    label = str(subject).removeprefix("sub-")
    label = f"{int(label):02d}" if label.isdigit() else label
    if run is None:
        tdir = _truth_dir(root, label)
        runs = sorted(
            int(p.name.split("_run-")[1].split("_")[0])
            for p in tdir.glob("*_desc-simulation_meta.json")
        )
        if not runs:
            raise FileNotFoundError(f"no simulation ground truth for sub-{label} in {root}")
    else:
        runs = [int(str(run).removeprefix("run-"))]
    brain_ss = data_ss = None
    names: list[str] = []
    for r in runs:
        truth = load_truth(root, label, r)
        types = truth["meta"]["TrueChannelTypes"]
        mags = [k for k, t in enumerate(types) if t == "mag"]
        names = [truth["ch_names"][k] for k in mags]
        brain = truth["brain_mixing"][mags] @ np.asarray(truth["brain_timeseries"], np.float64)
        raw = mne.io.read_raw_fif(_bids_path(root, label, r).fpath, verbose=False)
        data = raw.get_data(picks=names)
        if l_freq is not None or h_freq is not None:
            kw = dict(sfreq=truth["sfreq"], l_freq=l_freq, h_freq=h_freq, verbose=False)
            brain = mne.filter.filter_data(brain, **kw)
            data = mne.filter.filter_data(data, **kw)
        b = ((brain - brain.mean(1, keepdims=True)) ** 2).sum(1)
        d = ((data - data.mean(1, keepdims=True)) ** 2).sum(1)
        brain_ss = b if brain_ss is None else brain_ss + b
        data_ss = d if data_ss is None else data_ss + d
    share = np.clip(brain_ss / data_ss, 0.0, 1.0)
    out = {n: float(s) for n, s in zip(names, share)}
    out["mean"] = float(share.mean())
    return out
