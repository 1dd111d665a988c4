"""Benchmark of the simulator: wall time and peak memory.

Default: one ds000117-sized subject (6 runs x 7.5 min at 1100 Hz, 306 MEG +
74 EEG-type channels + STI101). Target: a few minutes, peak RSS < 4 GB.

    python benchmarks/bench_simulate.py                 # ds000117-sized subject
    python benchmarks/bench_simulate.py --subjects 3 --runs 2 --duration 60
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    # ru_maxrss is in kB on Linux, bytes on macOS
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--duration", type=float, default=450.0)
    parser.add_argument("--sfreq", type=float, default=1100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    args = parser.parse_args()

    import mne  # noqa: F401  (import cost is not simulation time)

    from synaptech_bids.simulate import simulate_dataset

    tmp = None
    if args.out is None:
        tmp = tempfile.mkdtemp(prefix="synaptech-bench-")
        out = Path(tmp) / "bids"
    else:
        out = args.out
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        simulate_dataset(
            out,
            n_subjects=args.subjects,
            n_runs=args.runs,
            duration=args.duration,
            seed=args.seed,
            sfreq=args.sfreq,
            verbose=True,
        )
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.subjects} subject(s) x {args.runs} run(s) x {args.duration:g} s "
        f"at {args.sfreq:g} Hz: wall {wall:.1f} s, CPU {cpu:.1f} s, "
        f"peak RSS {_peak_rss_mb():.0f} MB (after imports {rss0:.0f} MB), "
        f"dataset {size / 1024**3:.2f} GB"
    )


if __name__ == "__main__":
    main()
