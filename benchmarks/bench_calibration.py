"""Simulated vs real calibration statistics (issue 6), side by side.

Run from the repository root (the real covariance is read from
``../shared/data/real/``)::

    python benchmarks/bench_calibration.py                 # subjects 1-3, seed 0
    python benchmarks/bench_calibration.py --sampled 6     # + estimated as the real one was

The analytic columns are population statistics of the simulated baseline
(0.1-40 Hz, from the truth). ``--sampled N`` also estimates each subject's
covariance N times as the real file was estimated (29 baseline-corrected
pre-stimulus windows of 200 ms at 300 Hz, ``calibration.REAL_BASELINE``) and
reports the median counts, the share (mean and SD over draws), the EEG and
magnetometer RMS and the share of windows that the real file's
peak-to-peak rejection would have kept.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread-mm", type=float, default=5.0)
    parser.add_argument("--sampled", type=int, default=0, help="finite-sample draws")
    args = parser.parse_args()

    from synaptech_bids.simulate import calibration as cal

    t0 = time.perf_counter()
    cols = {"real": cal.real_statistics()}
    for s in args.subjects:
        cols[f"sub-{s:02d}"] = cal.simulated_statistics(
            subject=s, seed=args.seed, spread_mm=args.spread_mm
        )
    print(cal.statistics_table(cols).to_string())
    print(f"analytic: {time.perf_counter() - t0:.0f} s")
    if args.sampled:
        for s in args.subjects:
            st = cal.baseline_statistics(
                n_draws=args.sampled, subject=s, seed=args.seed, spread_mm=args.spread_mm
            )
            share = [x["predictable_share"] for x in st]
            print(
                f"sub-{s:02d} baseline windows ({args.sampled} draws): "
                f"eeg {np.median([x['eeg_counts'] for x in st], 0).tolist()} "
                f"mag {np.median([x['mag_counts'] for x in st], 0).tolist()} "
                f"share {np.mean(share):.3f} +/- {np.std(share):.3f} "
                f"EEG {np.mean([x['eeg_rms'] for x in st]) * 1e6:.1f} uV "
                f"mag {np.mean([x['mag_rms'] for x in st]) * 1e15:.0f} fT "
                f"kept by the real rejection {np.mean([x['kept'] for x in st]):.0%}"
            )

if __name__ == "__main__":
    main()
