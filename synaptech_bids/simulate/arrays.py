"""Simulated subjects as arrays, without BIDS: for transfer experiments and tests.

:func:`simulate_subject_arrays` builds subjects exactly as
:func:`.writer.simulate_dataset` does (sphere head, canonical Neuromag-306,
mgh70 cap, head positions differing by ~3.5 mm, the folded-cortex source
model with its networks, shared patches and subject-specific background,
spread between subjects by ``spread_mm``), but draws their ongoing activity
as independent Gaussian time courses of each component at its RMS amplitude
(the instantaneous covariance is what a spatial map sees; evoked
components, artefacts and line noise are left out), plus white sensor noise
at the simulator's levels (magnetometers 3 fT/sqrt(Hz), EEG 1.25 uV). It
takes seconds per subject where a recording takes minutes.
"""

from __future__ import annotations

import numpy as np

from . import recording as _recording

#: V -> uV and T -> fT, the units of the group level's arrays.
EEG_SCALE, MEG_SCALE = 1e6, 1e15
#: V, white: the simulator's white and 1/f electrode noise as one white level
EEG_NOISE = float(np.hypot(_recording.EEG_WHITE_NOISE, _recording.EEG_PINK_NOISE))


def simulate_subject_arrays(
    spread_mm: float,
    n_subjects: int,
    seed: int = 0,
    n_windows: int = 12,
    n_times: int = 500,
    grid_mm: float = 15.0,
    sfreq: float = 250.0,
    oracle: bool = False,
    spectra: bool = False,
    background_sigma_mm: float | None = None,
) -> list[dict]:
    """EEG and magnetometer windows of simulated subjects, with lead fields.

    Parameters
    ----------
    spread_mm : float
        Between-subject spread of the shared networks (see docs/simulator.md).
    n_subjects : int
        Subjects ``01`` ... (seeded per subject, so subject 2 is the same
        whatever ``n_subjects``).
    seed : int
        Seed of the world.
    n_windows, n_times : int
        Windows per subject and samples per window.
    grid_mm : float
        Grid spacing of the app's lead fields (ignored with ``oracle``).
    sfreq : float
        Sampling rate (Hz), which sets the white-noise level per sample.
    oracle : bool
        Give the simulator's own cortex and forward model (per nAm, normal
        orientations, ``src_pos`` the cortex) as the lead fields, instead of
        the app's (:func:`synaptech_bids.translators.lead_fields_from_info`:
        sphere model, volume grid, free orientations). The oracle separates
        what the head model costs from what differences between brains cost.
    background_sigma_mm : float or None
        Width of the background patches (default: ``simulate_dataset``'s);
        the calibration allows 3 mm as well as the default 8 mm
        (docs/simulator.md, "Calibration").

    Returns
    -------
    subjects : list of dict
        ``label``, ``eeg`` (n_windows, n_eeg, n_times) in uV, ``meg``
        (n_windows, 102, n_times) in fT, ``lf`` the lead-field set (in the
        same units per source unit), ``optimum_r2`` (102,) the population
        within-subject optimum: the R² per magnetometer of the best
        instantaneous linear map from this subject's EEG, from the
        simulator's true covariance (no estimation noise, unlike
        :func:`synaptech_bids.group.metrics.within_subject_optimum` on the
        windows), and ``truth``: the components' sensor topographies
        scaled by their RMS amplitudes (``a_eeg`` (n_eeg, n_comp) in uV,
        ``a_meg`` (102, n_comp) in fT), their ``kinds``, ``spectra`` (n_comp,
        n_times // 2 + 1) their power per rFFT bin of a window relative to
        their variance (the mean periodogram of the drawn time courses; a
        white component's is ``n_times`` in every bin), the white noise
        variances ``var_eeg``, ``var_meg``, and ``bg_eeg``, ``bg_meg``:
        the background's *expected* covariance seen by the sensors
        (``L K K^T L^T`` scaled to its power, ``K`` Gaussian patches of the
        background's width centred on every cortical source; rows EEG
        (n_eeg, n_eeg) and MEG (102, n_eeg)), what a model that knew the
        simulator but not where this subject's background patches lie
        would assume.
    """
    import mne

    from ..translators import lead_fields_from_info
    from . import geometry, recording, sources
    from .writer import _DEFAULTS

    background_mm = float(
        _DEFAULTS["background_sigma_mm"] if background_sigma_mm is None else background_sigma_mm
    )

    mag_noise = 3e-15 * np.sqrt(sfreq / 2)

    def seq(*key):
        return np.random.default_rng(np.random.SeedSequence([seed, *key]))

    out = []
    for s in range(1, n_subjects + 1):
        geom = geometry.make_subject_geometry(f"{s:02d}", seq(1, s), dev_spread_mm=3.5)
        src = sources.subject_source_space(geom.sphere_origin, geom.sphere_radius, 6.0)
        comps = sources.make_components(
            src, geom.sphere_origin, geom.sphere_radius, shared_rng=seq(0),
            subject_rng=seq(2, s), spread_mm=spread_mm, background_sigma_mm=background_mm,
        )
        comps = [c for c in comps if c.kind != "evoked"]
        info = geometry.make_info(geom, geom.dev_head_t, sfreq)
        gain, _, picks = recording.compute_gain(info, geom, src)
        mix = sources.component_mixing(comps, gain)  # (n_picks, n_comp), per nAm
        names = [info["ch_names"][p] for p in picks]
        types = np.array(info.get_channel_types())[picks]
        mags = [n for n, t in zip(names, types) if t == "mag"]
        eegs = [n for n, t in zip(names, types) if t == "eeg"]
        rows_m = [names.index(n) for n in mags]
        rows_e = [names.index(n) for n in eegs]
        amp = np.array([c.amplitude for c in comps])
        rng = seq(3, s)
        if spectra:
            run = sources.ContinuousSignals(comps, sfreq, rng).next(n_windows * n_times)
            z = run.astype(float).reshape(len(comps), n_windows, n_times).transpose(1, 0, 2)
        else:
            z = rng.standard_normal((n_windows, len(comps), n_times)) * amp[None, :, None]  # nAm
        eeg = np.einsum("ck,wkt->wct", mix[rows_e], z)
        meg = np.einsum("ck,wkt->wct", mix[rows_m], z)
        eeg += EEG_NOISE * rng.standard_normal(eeg.shape)
        meg += mag_noise * rng.standard_normal(meg.shape)
        optimum = _population_optimum(mix[rows_e] * amp, mix[rows_m] * amp,
                                      EEG_NOISE**2, mag_noise**2)
        normal = np.einsum("cso,so->cs", gain.reshape(len(gain), -1, 3), src.nn) * 1e-9
        background = [c for c in comps if c.kind == "background"]
        truth = {"a_eeg": mix[rows_e] * amp * EEG_SCALE, "a_meg": mix[rows_m] * amp * MEG_SCALE,
                 "kinds": [c.kind for c in comps], "var_eeg": (EEG_NOISE * EEG_SCALE) ** 2,
                 "var_meg": (mag_noise * MEG_SCALE) ** 2,
                 "spectra": (np.abs(np.fft.rfft(z, axis=-1)) ** 2).mean(0) / amp[:, None] ** 2}
        if background:
            truth["bg_eeg"], truth["bg_meg"] = _expected_background(
                normal[rows_e] * EEG_SCALE, normal[rows_m] * MEG_SCALE, src.rr,
                background_mm, sum(c.amplitude**2 for c in background))
        if oracle:
            lf = {"L_eeg": normal[rows_e], "L_meg": normal[rows_m], "src_pos": src.rr,
                  "sphere_origin": geom.sphere_origin}
        else:
            lf = lead_fields_from_info(info, eegs, mags, sphere=mne.make_sphere_model(
                geom.sphere_origin, geom.sphere_radius, info, verbose=False), grid_mm=grid_mm)
        lf["L_eeg"] = lf["L_eeg"] * EEG_SCALE
        lf["L_meg"] = lf["L_meg"] * MEG_SCALE
        out.append({"label": f"{s:02d}", "eeg": eeg * EEG_SCALE, "meg": meg * MEG_SCALE,
                    "lf": lf, "optimum_r2": optimum, "truth": truth})
    return out


def truth_filter(truth: dict, eeg: np.ndarray, shared_only: bool) -> np.ndarray:
    """Reference: the frequency-domain Wiener filter of a model that knows the brain.

    Per rFFT bin ``f`` of a window, ``W_f = S_me(f) S_ee(f)^+`` from the
    components' true topographies and true spectra (``truth["spectra"]``)
    and the white sensor noise: the best linear predictor of the MEG from
    the window's average-referenced EEG that uses time (up to the window's
    edges), what ``spectral`` approximates with nine bands and estimated
    components, and what no translator can beat on these windows but by
    chance.

    Parameters
    ----------
    truth : dict
        A subject's ``truth`` from :func:`simulate_subject_arrays`.
    eeg : ndarray, shape (n_windows, n_eeg, n_times)
        Its EEG windows (the sensor noise's level is the truth's).
    shared_only : bool
        Know the shared components (networks, shared patches) exactly and
        the background only as its expected covariance (``bg_eeg``,
        ``bg_meg``) with its mean spectrum: a model that knows everything
        but where this subject's background patches lie.

    Returns
    -------
    meg : ndarray, shape (n_windows, n_meg, n_times)
        The predicted magnetometer windows.
    """
    from ..translators.physics import average_reference

    n_times = eeg.shape[-1]
    kinds = np.array(truth["kinds"])
    spectra = truth["spectra"]
    keep = kinds != "background" if shared_only else np.ones(len(kinds), bool)
    a_e, a_m = truth["a_eeg"][:, keep], truth["a_meg"][:, keep]
    background = spectra[kinds == "background"].mean(0) if shared_only else None
    p = average_reference(len(a_e))
    spectrum = np.fft.rfft(np.einsum("ef,wft->wet", p, eeg), axis=-1)
    out = np.empty((len(eeg), len(a_m), spectrum.shape[-1]), complex)
    for f in range(spectrum.shape[-1]):
        gram = (a_e * spectra[keep, f]) @ a_e.T + n_times * truth["var_eeg"] * np.eye(len(a_e))
        cross = (a_m * spectra[keep, f]) @ a_e.T
        if shared_only:
            gram = gram + background[f] * truth["bg_eeg"]
            cross = cross + background[f] * truth["bg_meg"]
        w = cross @ p @ np.linalg.pinv(p @ gram @ p, rcond=1e-10, hermitian=True)
        out[..., f] = spectrum[..., f] @ w.T
    return np.fft.irfft(out, n=n_times, axis=-1)


def _expected_background(l_eeg: np.ndarray, l_meg: np.ndarray, pos: np.ndarray,
                         sigma_mm: float, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Sensor covariance of background patches placed uniformly over the cortex.

    The background is ``n`` Gaussian patches at random sources; averaged
    over where they land, its source covariance is ``power / n_src K K^T``
    with ``K`` the patches centred on every source.
    """
    from ..translators.adaptive import patch_basis

    basis = patch_basis(pos, sigma_mm)
    ke, km = l_eeg @ basis, l_meg @ basis
    scale = power / basis.shape[1]
    return scale * ke @ ke.T, scale * km @ ke.T


def _population_optimum(a_eeg: np.ndarray, a_meg: np.ndarray, var_eeg: float,
                        var_meg: float) -> np.ndarray:
    """R² per MEG channel of ``Cme Cee^-1 Cem`` for ``x = A_e z + n_e``, ``y = A_m z + n_m``.

    ``a_eeg`` (n_eeg, n_comp) and ``a_meg`` (n_meg, n_comp) are the mixing
    scaled by the components' RMS amplitudes (``z`` white, unit variance);
    the sensor noises are white with variances ``var_eeg``, ``var_meg``.
    """
    c_ee = a_eeg @ a_eeg.T + var_eeg * np.eye(len(a_eeg))
    c_me = a_meg @ a_eeg.T
    explained = (c_me * np.linalg.solve(c_ee, c_me.T).T).sum(1)
    return explained / ((a_meg**2).sum(1) + var_meg)
