"""Simulated vs real calibration statistics (issue 6), side by side.

Run from the repository root (the real covariance is read from
``../shared/data/real/``)::

    python benchmarks/bench_calibration.py                 # subjects 1-3, seed 0
    python benchmarks/bench_calibration.py --sampled 10    # + finite-sample estimates

The analytic columns are population statistics of the simulated baseline
(0.1-40 Hz, from the truth). ``--sampled N`` also estimates each subject's
covariance from N short baselines the size of the real estimate (1767
samples at 600 Hz) and reports the median counts and the mean share: the
in-sample predictable share of so small an estimate is biased upwards.
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
        real = cal._real_cov(None)
        projs = [p for p in real["projs"] if not p["desc"].lower().startswith("average eeg")]
        eeg = [f"EEG{k:03d}" for k in range(1, 61)]
        for s in args.subjects:
            covs, names = cal.sampled_covariances(
                args.sampled, subject=s, seed=args.seed, spread_mm=args.spread_mm
            )
            st = [cal.calibration_statistics(c, names, projs, eeg) for c in covs]
            share = [x["predictable_share"] for x in st]
            print(
                f"sub-{s:02d} sampled ({args.sampled} x {cal.REAL_N_SAMPLES} samples): "
                f"eeg {np.median([x['eeg_counts'] for x in st], 0).tolist()} "
                f"mag {np.median([x['mag_counts'] for x in st], 0).tolist()} "
                f"share {np.mean(share):.3f} +/- {np.std(share):.3f}"
            )


if __name__ == "__main__":
    main()
