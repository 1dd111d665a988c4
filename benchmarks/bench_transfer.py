"""Transfer benchmark (issue 6, item 4): scores against between-subject spread.

For each between-subject spread of the simulator's brains (0, 5, 10, 20 mm)
it builds subjects exactly as ``simulate_dataset`` does (sphere head,
canonical Neuromag-306, mgh70 cap, head positions differing by ~3.5 mm, the
folded-cortex source model with its networks, shared patches and
subject-specific background, spread by ``spread_mm``), draws their ongoing
activity with the recordings' own generators (1/f background and patches,
alpha, mu/beta and theta networks; ``--white``: independent white Gaussian
time courses of the same variance, what a spatial map alone sees; evoked
components, artefacts and line noise are left out either way) plus white
sensor noise at the simulator's levels (mags 3 fT/sqrt(Hz), EEG 1.25 uV),
60 two-second windows per subject (two minutes, as the app's runs). Then
leave-one-subject-out, every translator is fitted on the other subjects and
scored on the held-out one, as a share of that subject's within-subject
optimum (``group.metrics.within_subject_optimum``, cross-validated in time):

- ``physics``: the lead-field Wiener map with a uniform source prior;
- ``ridge``: sensor-space ridge map (no lags), penalty by inner CV;
- ``sourcespace``: the learned source prior through the subject's lead fields;
- ``adaptive``: SBL on the subject's EEG, seeded by that prior or not as
  the training subjects' inner leave-subjects-out decides (the app's);
- ``adaptive-learned``: SBL always seeded by the learned prior;
- ``subject-sbl``: SBL over 10-mm patches on the subject's EEG from a flat
  prior, no training data in its prior (reference);
- ``subject-sbl-points``: the same over single locations (as in issue 6's
  measurement);
- ``spectral``: the adaptive source model re-weighted per frequency band
  (a filter; uses time); ``spectral-white`` with white noise per band,
  ``spectral-sources`` with a variance per kept patch and band
  (``band_sources=True``);
- ``shared-truth`` (reference, not a translator): the Wiener map of a model
  that knows the held-out subject's shared networks and patches exactly
  (after the spread) and its background only as its expected covariance,
  i.e. everything but where this subject's background patches lie;
- ``shared-truth-filter`` and ``truth-filter`` (references that use time,
  :func:`synaptech_bids.simulate.arrays.truth_filter`): per frequency bin,
  the Wiener map of the components' true topographies and true spectra,
  knowing the background only as its expected covariance, or exactly. The
  last is the best any linear filter of a window's EEG can do;
- with ``--networks``: ``synaptechnet`` and ``hybrid`` (ridge plus the
  network on its residual) at the group level's CPU test size (width 0.125,
  at most 15 epochs).

The translators' lead fields are the app's own (``lead_fields_from_info``:
sphere model, volume grid in head coordinates, free dipoles), not the
simulator's cortex: like real data, the model's source space is not the
truth's. ``--oracle`` gives them the simulator's own cortex and forward
model instead, to separate what the head model costs from what the
differences between brains cost; the group level gets the same lead fields
from ``forward_dir`` and the forward solutions that ``simulate_dataset(...,
save_forward=True)`` writes (``bench_translators.py --forward`` runs that
end to end).

    python benchmarks/bench_transfer.py --oracle           # 4 subjects, 4 spreads
    python benchmarks/bench_transfer.py --oracle --spreads 0 10 --translators ridge spectral

On the calibrated world (docs/simulator.md, "Calibration"; seed 0, 60
windows, ``--oracle --translators ridge adaptive subject-sbl
spectral-sources``, then ``--translators sourcespace``, ~10 min per spread
on one core; share of the estimated optimum, mean over 4 held-out subjects,
spreads 0/5/10/20 mm, optimum R² 0.12/0.15/0.18/0.22): ridge 47/31/6/-3 %,
sourcespace 51/42/11/1 %, adaptive = subject-sbl 80/72/59/43 %,
spectral-sources 106/96/82/61 % (above every other translator on all 16
held-out subjects: issue 6's goals, 90 % at 5 mm and 60 % at 10 mm, met),
shared-truth-filter 98/104/114/134 %, truth-filter 154/148/150/161 %. With
``--background-mm 3``, the other calibrated world (5/10 mm): ridge 37/34 %,
adaptive 34/32 %, spectral-sources 35/35 %, shared-truth-filter 71/75 %.

Everything below was measured on the world before its calibration.

Measured with the recordings' spectra (seed 0, 60 windows, ``--oracle
--translators ridge sourcespace adaptive subject-sbl spectral``, ~11 min per
spread on one core; share of the estimated optimum, mean over 4 held-out
subjects, spreads 0/5/10/20 mm, optimum R² 0.18/0.25/0.31/0.38): ridge
50/7/-2/-9 %, sourcespace 53/26/4/1 %, adaptive 79/59/42/27 %, subject-sbl
70/59/42/27 %, spectral 96/72/51/32 % with ``band_noise="white"`` (above
adaptive on all 16 held-out subjects; the default, noise learned above the
white floor: 70/49 % at 5/10 mm), shared-truth 76/83/87/92 %. Then
``--translators adaptive spectral-sources`` (same seed, ~20 min per spread
under load): adaptive 79/59/42/27 %, spectral-sources 94/76/58/39 %
(above adaptive on all 16 held-out subjects). The references that use time
(``--spreads 0 5 10 --translators ridge``, same seed): shared-truth-filter
98/103/113 %, truth-filter 145/135/136 %.

Measured with ``--white --windows 12`` (before ``spectral``; seed 0, share of
the estimated optimum, mean over 4 held-out subjects; spreads 0/5/10/20 mm;
optimum R² 0.18/0.25/0.32/0.39, population optimum 0.20/0.27/0.34/0.40).
With ``--oracle``: ridge 46/4/-1/-9 %,
sourcespace 48/22/4/0 %, adaptive 73/55/39/26 % (the learned seed kept at
0 mm, dropped at every other spread), adaptive-learned 73/51/20/7 %,
subject-sbl (10-mm patches) 66/55/39/26 %, subject-sbl-points
0/-10/-14/-21 %; as shares of the population optimum, adaptive 67/51/37/25
%. With the app's lead fields (0/5/10 mm, before ``prior="cv"``): ridge
46/4/-1 %, sourcespace -1/5/3 %, every SBL variant 0 % (its inner CV picks
the largest penalty: the map shrinks to predicting zero). The subject's own
EEG carries what transfers, but only with a cortical source space; on that
world issue 6's goals (90 % at 5 mm, 60 % at 10 mm) were not met, with time
either. See docs/translatability.md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SFREQ = 250.0


def make_subjects(spread_mm: float, n_subjects: int, seed: int, n_windows: int,
                  n_times: int, grid_mm: float, oracle: bool = False,
                  spectra: bool = True, background_mm: float | None = None) -> list[dict]:
    """See :func:`synaptech_bids.simulate.arrays.simulate_subject_arrays`."""
    from synaptech_bids.simulate.arrays import simulate_subject_arrays

    return simulate_subject_arrays(spread_mm, n_subjects, seed, n_windows, n_times,
                                   grid_mm=grid_mm, sfreq=SFREQ, oracle=oracle,
                                   spectra=spectra, background_sigma_mm=background_mm)


def shared_truth_map(truth: dict) -> np.ndarray:
    """Reference: the Wiener map of a model that knows this subject's brain
    except where its background patches lie.

    Source covariance: the subject's true shared components (networks and
    shared patches, after the spread) plus the background's *expected*
    covariance (its patches spread evenly over the cortex), with the true
    sensor noise; map (n_meg, n_eeg) of average-referenced EEG.
    """
    from synaptech_bids.translators.physics import average_reference

    shared = np.array([k != "background" for k in truth["kinds"]])
    a_e, a_m = truth["a_eeg"][:, shared], truth["a_meg"][:, shared]
    p = average_reference(len(a_e))
    gram = p @ (a_e @ a_e.T + truth["bg_eeg"] + truth["var_eeg"] * np.eye(len(a_e))) @ p
    cross = (a_m @ a_e.T + truth["bg_meg"]) @ p
    return np.linalg.lstsq(gram, cross.T, rcond=1e-10)[0].T @ p


def transfer_scores(subjects: list[dict], networks: bool = False,
                    only: list[str] | None = None) -> dict:
    """Leave-one-subject-out share of the within-subject optimum per translator."""
    from synaptech_bids.group.metrics import within_subject_optimum
    from synaptech_bids.simulate.arrays import truth_filter
    from synaptech_bids.translators import (
        AdaptiveTranslator,
        HybridTranslator,
        PhysicsTranslator,
        RidgeTranslator,
        SourceSpaceTranslator,
        SpectralTranslator,
        SynaptechNetTranslator,
        r2_per_channel,
    )

    models = {
        "physics": PhysicsTranslator,
        "ridge": lambda: RidgeTranslator(lags=(0,)),
        "sourcespace": SourceSpaceTranslator,
        "adaptive": AdaptiveTranslator,
        "adaptive-learned": lambda: AdaptiveTranslator(prior="learned"),
        "subject-sbl": lambda: AdaptiveTranslator(prior="none"),
        "subject-sbl-points": lambda: AdaptiveTranslator(prior="none", patch_mm=0.0),
        "spectral": lambda: SpectralTranslator(SFREQ),
        "spectral-white": lambda: SpectralTranslator(SFREQ, band_noise="white"),
        "spectral-sources": lambda: SpectralTranslator(SFREQ, band_sources=True),
    }
    if networks:  # the group level's CPU test size: width 0.125, at most 15 epochs
        net = {"width": 0.125, "max_epochs": 15, "device": "cpu"}
        models["synaptechnet"] = lambda: SynaptechNetTranslator(**net)
        models["hybrid"] = lambda: HybridTranslator(ridge_lags=(0,), **net)
    models = {k: v for k, v in models.items() if only is None or k in only}
    references = ["shared-truth", "shared-truth-filter", "truth-filter"]
    shares: dict = {k: [] for k in [*models, *references]}
    shares["optimum_r2"], shares["population_optimum_r2"] = [], []
    r2s: dict[str, list[float]] = {k: [] for k in shares}
    for k, test in enumerate(subjects):
        train = [s for j, s in enumerate(subjects) if j != k]
        eeg = np.concatenate([s["eeg"] for s in train])
        meg = np.concatenate([s["meg"] for s in train])
        groups = np.concatenate([np.full(len(s["eeg"]), s["label"]) for s in train])
        geometry = {s["label"]: s["lf"] for s in train}
        optimum = float(np.mean(within_subject_optimum(test["eeg"], test["meg"])))
        shares["optimum_r2"].append(optimum)
        shares["population_optimum_r2"].append(float(np.mean(test["optimum_r2"])))
        for name, pred in [
            ("shared-truth", np.einsum("me,wet->wmt", shared_truth_map(test["truth"]),
                                       test["eeg"])),
            ("shared-truth-filter", truth_filter(test["truth"], test["eeg"], True)),
            ("truth-filter", truth_filter(test["truth"], test["eeg"], False)),
        ]:
            r2 = float(np.mean(r2_per_channel(test["meg"], pred)))
            shares[name].append(r2 / optimum)
            r2s[name].append(r2)
            print(f"    held out {test['label']}: {name:18s} R² {r2:6.3f} "
                  f"({100 * r2 / optimum:5.1f}% of optimum {optimum:.3f})", flush=True)
        for name, make in models.items():
            t0 = time.perf_counter()
            model = make().fit(eeg, meg, groups, geometry=geometry)
            pred = model.predict(test["eeg"], geometry=test["lf"])
            r2 = float(np.mean(r2_per_channel(test["meg"], pred)))
            shares[name].append(r2 / optimum)
            r2s[name].append(r2)
            print(f"    held out {test['label']}: {name:18s} R² {r2:6.3f} "
                  f"({100 * r2 / optimum:5.1f}% of optimum {optimum:.3f}) "
                  f"{time.perf_counter() - t0:5.1f} s"
                  + (f", seed {model.seed_}" if hasattr(model, "seed_") else ""), flush=True)
    shares["population"] = {  # share of the population optimum, from the truth
        name: [r / p for r, p in zip(r2s[name], shares["population_optimum_r2"])]
        for name in r2s}
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.0, 5.0, 10.0, 20.0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--windows", type=int, default=60,
                        help="2 s windows per subject (60: two minutes, as the app's runs)")
    parser.add_argument("--grid-mm", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--networks", action="store_true",
                        help="also Synaptech-Net and the hybrid (width 0.125, 15 epochs; slow)")
    parser.add_argument("--oracle", action="store_true",
                        help="give the translators the simulator's own cortex and forward "
                        "model instead of the app's sphere-model volume grid (what the "
                        "group level's forward_dir gives them from the forward solutions "
                        "the simulator writes with save_forward)")
    parser.add_argument("--white", action="store_true",
                        help="white Gaussian time courses (the covariance only) instead of "
                        "the recordings' spectra (1/f, alpha, mu/beta, theta)")
    parser.add_argument("--translators", nargs="+", default=None,
                        help="only these translators (default: all)")
    parser.add_argument("--background-mm", type=float, default=None,
                        help="width of the subjects' background patches (default: the "
                        "simulator's 8 mm; 3 mm is the other calibrated world)")
    args = parser.parse_args()
    summary = {}
    for spread in args.spreads:
        t0 = time.perf_counter()
        print(f"spread {spread:g} mm: simulating {args.subjects} subjects", flush=True)
        subjects = make_subjects(spread, args.subjects, args.seed, args.windows,
                                 int(2 * SFREQ), args.grid_mm, args.oracle, not args.white,
                                 args.background_mm)
        summary[spread] = transfer_scores(subjects, args.networks, args.translators)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nshare of the held-out subject's within-subject optimum, mean [min, max] "
          "over held-out subjects")
    names = [n for n in next(iter(summary.values()))
             if n not in ("optimum_r2", "population_optimum_r2", "population")]
    print(f"{'spread':>8s} {'optimum R²':>11s} " + " ".join(f"{n:>20s}" for n in names))
    for spread, shares in summary.items():
        cells = [f"{100 * np.mean(shares[n]):5.1f}% [{100 * min(shares[n]):4.0f},"
                 f"{100 * max(shares[n]):4.0f}]" for n in names]
        print(f"{spread:6.0f}mm {np.mean(shares['optimum_r2']):11.3f} "
              + " ".join(f"{c:>20s}" for c in cells))
    print("\nshare of the population optimum (the simulator's true covariance, no estimation "
          "noise)")
    print(f"{'spread':>8s} {'optimum R²':>11s} " + " ".join(f"{n:>20s}" for n in names))
    for spread, shares in summary.items():
        pop = shares["population"]
        cells = [f"{100 * np.mean(pop[n]):5.1f}% [{100 * min(pop[n]):4.0f},"
                 f"{100 * max(pop[n]):4.0f}]" for n in names]
        print(f"{spread:6.0f}mm {np.mean(shares['population_optimum_r2']):11.3f} "
              + " ".join(f"{c:>20s}" for c in cells))


if __name__ == "__main__":
    main()
