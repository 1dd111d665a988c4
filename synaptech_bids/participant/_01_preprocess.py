"""Step 1: clean one continuous run — filters, resampling, bad channels, reference.

Why in this order:

- the notch removes the power-line frequency (from the sidecar's
  ``PowerLineFrequency``) and its harmonics below the low-pass edge, then a
  zero-phase FIR band-pass (default 0.1–100 Hz, as in the paper), then
  resampling (after the low-pass, which is its anti-alias filter);
- bad channels come next: those of ``channels.tsv`` and, when
  ``auto_bad_channels`` is on, those found automatically. The search runs on
  the band-passed data at the low rate, which is what it needs (drifts and
  line noise would otherwise dominate the amplitudes it compares) at a
  fraction of the cost at the recording's rate;
- signal-space separation (Maxwell filtering, on by default for MEG not
  already Maxwell-filtered) then removes the fields of sources outside the
  helmet: in a magnetically shielded room the room's field still dominates
  the magnetometers (81% of their variance on a simulated run), and it is
  not brain signal; left in, it is a target no EEG can predict (the
  within-subject EEG-to-magnetometer optimum went from 0.03 to 0.29 on that
  run). It needs the bad MEG channels marked first;
- bad EEG channels are interpolated with spherical splines *before*
  re-referencing, so a broken electrode does not leak into the average
  reference, and so every subject keeps the full EEG channel set the group
  level needs;
- EEG is average-referenced last (the reference is a modelling choice that
  changes every EEG–MEG statistic; it is stated in every output).

Filtering and resampling are linear and the same for every channel, so
doing them before the interpolation and the average reference gives the same
data as doing them after.

MEG bad channels are marked, not interpolated: Maxwell filtering leaves
them out of its fit, and they stay marked after it, so magnetometer targets
with a bad sensor are dropped at group level instead of invented.
"""

from __future__ import annotations

import logging
from typing import Any

import mne
import numpy as np
from threadpoolctl import threadpool_limits

from ..config import Config

logger = logging.getLogger(__name__)

#: Automatic EEG bad-channel limits (see :func:`find_bad_channels_eeg`).
#: A flat electrode's robust amplitude is below this share of the median
#: electrode's (-40 dB).
EEG_FLAT_RATIO = 0.01
#: A noisy electrode's log amplitude lies this many robust standard deviations
#: above the median (PREP's deviation criterion uses 5).
EEG_NOISY_Z = 5.0
#: Floor of that robust standard deviation, in natural-log units: with
#: electrodes of near-equal amplitude the spread is tiny, and a channel only
#: 20 % louder than the rest would otherwise count as noisy. With the floor,
#: noisy means at least e^(5 x 0.1) = 1.65 times the median amplitude.
EEG_MIN_LOG_SPREAD = 0.1
#: An uncorrelated electrode's largest absolute correlation with any other
#: electrode is below this (PREP's correlation criterion uses 0.4).
EEG_MIN_CORRELATION = 0.4
#: ``find_bad_channels_maxwell`` looks at a 40-Hz low-passed copy, as
#: MaxFilter and MNE-BIDS-Pipeline do.
MEG_AUTOBAD_H_FREQ = 40.0


def line_frequencies(line_freq: float | None, h_freq: float, sfreq: float) -> np.ndarray:
    """Return the line-noise harmonics to notch: those the band-pass would keep.

    Harmonics up to 1.25 × ``h_freq`` are included, since the low-pass
    transition band still passes part of them.
    """
    if not line_freq:
        return np.array([])
    top = min(1.25 * h_freq, sfreq / 2.0 - 1.0)
    return np.arange(line_freq, top, line_freq)


def preprocess_raw(raw: mne.io.BaseRaw, config: Config) -> tuple[mne.io.BaseRaw, dict]:
    """Clean one run in place and describe what was done.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        One run with EEG and MEG, channel types and bad channels set from
        ``channels.tsv``; loaded here if it is not yet.
    config : Config
        Filter edges, resampling rate, notch and automatic bad-channel switches.

    Returns
    -------
    raw : mne.io.BaseRaw
        The cleaned recording: the same object, or a new one when Maxwell
        filtering ran.
    log : dict
        What was done, with numbers, for the run's preprocessing log.
    """
    raw.load_data()
    log: dict[str, Any] = {
        "OriginalSamplingFrequency": raw.info["sfreq"],
        "DurationSeconds": raw.times[-1] - raw.times[0],
        "BadChannelsFromSidecar": list(raw.info["bads"]),
    }

    line_freq = raw.info.get("line_freq")
    freqs = line_frequencies(line_freq, config.h_freq, raw.info["sfreq"]) if config.notch else []
    # Channels marked bad are left unfiltered: EEG ones are interpolated from
    # filtered good ones below, MEG ones are not used.
    picks = mne.pick_types(raw.info, meg=True, eeg=True, eog=True, ecg=True)
    if len(freqs):
        raw.notch_filter(freqs, picks=picks, verbose=False)
    log["NotchFrequencies"] = [float(f) for f in freqs]
    log["PowerLineFrequency"] = line_freq

    raw.filter(config.l_freq, config.h_freq, picks=picks, phase="zero",
               fir_design="firwin", verbose=False)
    log["BandPass"] = {"l_freq": config.l_freq, "h_freq": config.h_freq,
                       "method": "FIR (firwin), zero-phase"}

    if raw.info["sfreq"] != config.resample_sfreq:
        # Polyphase (scipy's resample_poly) rather than MNE's default FFT
        # method: the low-pass above has already band-limited the data, and
        # on a 7.5-min run at 1100 Hz it takes 3.7 s instead of 10.8 s with
        # the same spectrum below the low-pass edge (measured).
        raw.resample(config.resample_sfreq, method="polyphase", verbose=False)
        log["Resampling"] = "polyphase (scipy.signal.resample_poly)"
    log["SamplingFrequency"] = raw.info["sfreq"]

    if config.auto_bad_channels:
        log["AutoBadChannels"] = mark_auto_bad_channels(raw)
    if config.maxwell_filter:
        raw, log["MaxwellFilter"] = apply_maxwell_filter(raw)
    eeg_names = set(_names(raw, "eeg"))
    eeg_bads = [ch for ch in raw.info["bads"] if ch in eeg_names]
    if eeg_bads:
        # Spherical splines need positions; origin from the digitisation.
        raw.interpolate_bads(reset_bads=True, exclude=[
            ch for ch in raw.info["bads"] if ch not in eeg_bads
        ], verbose=False)
    log["InterpolatedEEGChannels"] = eeg_bads
    log["MarkedBadMEGChannels"] = [b for b in raw.info["bads"] if b not in eeg_bads]

    raw.set_eeg_reference("average", projection=False, verbose=False)
    log["EEGReference"] = "average"
    return raw, log


#: Where the sphere's origin goes when the digitisation cannot place it
#: (head frame, m): MNE's default for adults.
DEFAULT_SSS_ORIGIN = (0.0, 0.0, 0.04)


def apply_maxwell_filter(raw: mne.io.BaseRaw) -> tuple[mne.io.BaseRaw, dict[str, Any]]:
    """Signal-space separation of the MEG (MNE's ``maxwell_filter``).

    Keeps the internal multipole expansion (order 8: sources inside the
    helmet) and drops the external one (order 3: the room), with the
    expansion's origin fitted to the digitised head shape in head
    coordinates, as MNE-BIDS-Pipeline's ds000117 configuration does. No
    fine-calibration or cross-talk file is used (the simulated data have
    none; ds000117 keeps them in a derivative). Bad MEG channels are left
    out of the fit and stay marked bad afterwards. Data already
    Maxwell-filtered, or without MEG, are left alone.

    Returns
    -------
    raw : mne.io.BaseRaw
        The filtered recording (a new object), or ``raw`` itself when skipped.
    log : dict
        Method, origin, number of internal components kept, or why skipped.
    """
    if not len(mne.pick_types(raw.info, meg=True)):
        return raw, {"Skipped": "no MEG channels"}
    if _maxwell_filtered(raw.info):
        return raw, {"Skipped": "the MEG was already Maxwell-filtered"}
    meg_names = {raw.ch_names[i] for i in mne.pick_types(raw.info, meg=True, exclude=[])}
    meg_bads = [ch for ch in raw.info["bads"] if ch in meg_names]
    try:
        origin = mne.bem.fit_sphere_to_headshape(raw.info, units="m", verbose=False)[1]
        origin_source = "fitted to the digitised head shape"
    except (RuntimeError, ValueError):
        origin, origin_source = np.array(DEFAULT_SSS_ORIGIN), "default (no head shape)"
    sss = mne.preprocessing.maxwell_filter(raw, origin=origin, coord_frame="head",
                                           verbose=False)
    sss.info["bads"] = sorted(set(sss.info["bads"]) | set(meg_bads))
    n_kept = sss.info["proc_history"][0]["max_info"]["sss_info"].get("nfree")
    return sss, {
        "Method": "signal-space separation (mne.preprocessing.maxwell_filter), "
        "internal order 8, external order 3, head frame",
        "OriginHeadM": [round(float(v), 4) for v in origin],
        "OriginSource": origin_source,
        "InternalComponentsKept": int(n_kept) if n_kept is not None else None,
        "BadMEGChannelsLeftOut": meg_bads,
    }


def mark_auto_bad_channels(raw: mne.io.BaseRaw) -> dict[str, dict[str, Any]]:
    """Find bad MEG and EEG channels, add them to ``raw.info["bads"]``, say which and why.

    Channels already marked bad (from ``channels.tsv``) are neither searched
    nor listed again.

    Returns
    -------
    found : dict
        ``{"MEG": {...}, "EEG": {...}}``: per modality, the ``"Method"`` and
        the ``"Channels"`` found by each criterion (a channel may meet
        several); ``"Skipped"`` says why a modality was not searched.
    """
    found: dict[str, dict[str, Any]] = {}
    if len(mne.pick_types(raw.info, meg=True, exclude="bads")):
        found["MEG"] = {
            "Method": "mne.preprocessing.find_bad_channels_maxwell (SSS residual, "
            f"{MEG_AUTOBAD_H_FREQ:g} Hz low-pass, 5-s chunks, limit 7, bad in at "
            "least 5 chunks)",
        }
        if _maxwell_filtered(raw.info):
            # MNE refuses to apply SSS twice; SSS data hide bad sensors anyway
            found["MEG"].update(Channels={}, Skipped="the MEG was already Maxwell-filtered")
        else:
            found["MEG"]["Channels"] = find_bad_channels_meg(raw)
    if len(mne.pick_types(raw.info, meg=False, eeg=True, exclude="bads")):
        found["EEG"] = {
            "Method": "robust amplitude (0.7413 x interquartile range) below "
            f"{EEG_FLAT_RATIO:g} x the median electrode's (Flat); robust z-score of "
            f"its log above {EEG_NOISY_Z:g} (Noisy); largest absolute correlation "
            f"with another electrode below {EEG_MIN_CORRELATION:g} (Uncorrelated)",
            "Channels": find_bad_channels_eeg(raw),
        }
    for modality, entry in found.items():
        flagged = sorted({ch for chs in entry["Channels"].values() for ch in chs})
        if flagged:
            logger.info("automatic bad %s channels: %s", modality, ", ".join(flagged))
        # in channel order, once each
        bads = set(raw.info["bads"]) | set(flagged)
        raw.info["bads"] = [ch for ch in raw.ch_names if ch in bads]
    return found


def find_bad_channels_meg(raw: mne.io.BaseRaw) -> dict[str, list[str]]:
    """Flat and noisy MEG sensors, from how far each departs from its SSS reconstruction.

    MNE's ``find_bad_channels_maxwell`` with its defaults (as
    MNE-BIDS-Pipeline's ``find_flat_channels_meg`` / ``find_noisy_channels_meg``),
    head origin fitted to the digitisation, on a 40-Hz low-passed copy of the
    MEG channels. No fine-calibration or cross-talk file is used.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Loaded run with ``dev_head_t`` and digitisation, not yet
        Maxwell-filtered; not modified.

    Returns
    -------
    found : dict
        ``{"Noisy": [...], "Flat": [...]}``, channel names.
    """
    meg = raw.copy().pick("meg")  # bads kept in info: Maxwell leaves them out
    meg.filter(None, MEG_AUTOBAD_H_FREQ, phase="zero", fir_design="firwin", verbose=False)
    # One BLAS thread: the search is thousands of SVDs of small (306 x ~80)
    # matrices, which threads only slow down. Measured on a 40-s simulated
    # run: 2.3 s of CPU with one thread, 127 s with two on a busy 2-core machine.
    with threadpool_limits(limits=1):
        noisy, flat = mne.preprocessing.find_bad_channels_maxwell(
            meg, origin="auto", coord_frame="head", h_freq=None, verbose=False,
        )
    return {"Noisy": list(noisy), "Flat": list(flat)}


def _maxwell_filtered(info: mne.Info) -> bool:
    """Whether SSS (MaxFilter or MNE's maxwell_filter) was applied to the data."""
    return any(entry.get("max_info", {}).get("sss_info") for entry in info["proc_history"])


def find_bad_channels_eeg(raw: mne.io.BaseRaw) -> dict[str, list[str]]:
    """Flat, noisy and uncorrelated EEG electrodes among those not yet marked bad.

    Written here because the stack has no cheap routine for it: pyprep (the
    PREP pipeline) is not a dependency, and autoreject's RANSAC works on
    epochs and predicts every channel from random subsets (slow on long
    runs). These are PREP's deviation and correlation criteria, simplified to
    one value per channel over the whole run; the data should be band-passed
    and not yet average-referenced (a bad electrode would spread into every
    other one through the average).

    - Flat: robust amplitude (0.7413 × interquartile range, the standard
      deviation of Gaussian data, insensitive to blinks and brief artefacts)
      below ``EEG_FLAT_RATIO`` × the median electrode's.
    - Noisy: robust z-score (median, 1.4826 × MAD) of the log amplitude above
      ``EEG_NOISY_Z``, with the spread floored at ``EEG_MIN_LOG_SPREAD``.
    - Uncorrelated: largest absolute correlation with any other electrode
      below ``EEG_MIN_CORRELATION`` (volume conduction correlates every good
      electrode strongly with its neighbours).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Loaded, band-passed run; not modified.

    Returns
    -------
    found : dict
        ``{"Flat": [...], "Noisy": [...], "Uncorrelated": [...]}``, channel names.
    """
    picks = mne.pick_types(raw.info, meg=False, eeg=True, exclude="bads")
    names = np.array([raw.ch_names[p] for p in picks])
    found: dict[str, list[str]] = {"Flat": [], "Noisy": [], "Uncorrelated": []}
    if len(picks) < 3:  # nothing to compare with
        return found
    data = raw.get_data(picks=picks)
    q25, q75 = np.percentile(data, [25, 75], axis=1)
    amplitude = 0.7413 * (q75 - q25)
    flat = amplitude < EEG_FLAT_RATIO * np.median(amplitude)
    live = ~flat

    log_amp = np.log(amplitude[live])
    centre = np.median(log_amp)
    spread = max(1.4826 * np.median(np.abs(log_amp - centre)), EEG_MIN_LOG_SPREAD)
    noisy = np.zeros(len(picks), bool)
    noisy[live] = (log_amp - centre) / spread > EEG_NOISY_Z

    uncorrelated = np.zeros(len(picks), bool)
    if live.sum() > 1:
        corr = np.abs(np.corrcoef(data[live]))
        np.fill_diagonal(corr, 0.0)
        uncorrelated[live] = corr.max(axis=1) < EEG_MIN_CORRELATION
    found["Flat"] = names[flat].tolist()
    found["Noisy"] = names[noisy].tolist()
    found["Uncorrelated"] = names[uncorrelated].tolist()
    return found


def _names(raw: mne.io.BaseRaw, ch_type: str) -> list[str]:
    picks = mne.pick_types(raw.info, meg=False, eeg=ch_type == "eeg", exclude=[])
    return [raw.ch_names[p] for p in picks]
