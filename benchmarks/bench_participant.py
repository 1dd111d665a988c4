"""Benchmark of the participant level on one ds000117-sized subject, and its peer.

    python benchmarks/bench_participant.py            # 6 runs x 7.5 min at 1100 Hz
    python benchmarks/bench_participant.py --quick    # 1 run x 60 s (smoke test)
    python benchmarks/bench_participant.py --bids DIR # reuse a simulated dataset

Each measured job runs in its own child process, with the same thread limit
(``OMP_NUM_THREADS`` etc. and the app's ``--omp-nthreads``) and one job; its
wall time is measured here and its peak memory is the child's ``ru_maxrss``
from ``os.wait4``. The jobs:

1. ``synaptech-bids ... participant``, default configuration (ICA, MI with
   surrogates, TE, distance curves, report): wall time and peak memory
   against the goals (10 min on 2 cores, 6 GB), with the per-step times
   every run writes in its ``desc-preproc_log.json`` (``TimingsSeconds``,
   ``CPUSeconds``),
   among them the information step (goal: under 3 min in all);
2. the same steps as MNE-BIDS-Pipeline runs, with synaptech-bids' own step
   functions (read, notch, band-pass, resample, epochs, peak-to-peak
   rejection, epochs written), no ICA;
3. MNE-BIDS-Pipeline (``--steps init,preprocessing``) with the committed
   ``benchmarks/mne_bids_pipeline_config.py`` and no ICA: ratios of wall
   time and peak memory to 2., and the epochs each kept (goal: within 5%);
   its time includes the report sections it writes at each step;
4. with ``--peer-ica``, MNE-BIDS-Pipeline again with its ICA on, compared
   with the ICA time of 1 (``--only peer-ica``: this job alone, MEG only, since
   the peer aborts with ICA on MEG+EEG on this layout).

The peer runs from its own virtual environment (``--peer-python``, default
``/tmp/mbp-venv/bin/python``: mne-bids-pipeline pulls in packages the app's
environment should not get) with the same mne, numpy and scipy versions.
A script that prints, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_CONFIG = HERE / "mne_bids_pipeline_config.py"


def run_measured(cmd: list[str], log: Path, threads: int,
                 env: dict[str, str] | None = None) -> tuple[float, float, int, float]:
    """Run ``cmd`` as a child; return (wall s, peak RSS MB, exit status, CPU s).

    CPU is the child's user + system time: on a shared machine the wall
    time grows with the load, the CPU time much less.
    """
    full_env = {**os.environ, **(env or {})}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS"):
        full_env[name] = str(threads)
    full_env["MPLBACKEND"] = "Agg"
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
        # wait4 gives this child's own rusage (ru_maxrss in kB on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"    (this job: wall {wall:.1f} s, CPU {cpu:.1f} s = {cpu / wall:.2f} cores "
          "on average)", flush=True)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode, cpu


def check_peer_config() -> None:
    """Fail if the peer's config no longer mirrors the app's defaults."""
    from synaptech_bids.config import Config
    from synaptech_bids.participant._01_preprocess import line_frequencies

    os.environ.setdefault("BENCH_BIDS_ROOT", "")
    os.environ.setdefault("BENCH_DERIV_ROOT", "")
    peer: dict = {}
    exec(PEER_CONFIG.read_text(), peer)  # a plain settings file  # noqa: S102
    c = Config()
    expected = {
        "l_freq": c.l_freq, "h_freq": c.h_freq, "raw_resample_sfreq": c.resample_sfreq,
        "epochs_tmin": c.epochs_tmin, "epochs_tmax": c.epochs_tmax,
        "baseline": tuple(c.baseline),
        "notch_freq": [float(f) for f in line_frequencies(50.0, c.h_freq, 1100.0)],
        "reject": {"eeg": c.reject_eeg_uv * 1e-6, "mag": c.reject_mag_ft * 1e-15,
                   "grad": c.reject_grad_ft_cm * 1e-15 / 1e-2},
        "ica_n_components": c.ica_n_components,
    }
    wrong = {k: (peer[k], v) for k, v in expected.items() if peer[k] != v}
    if wrong:
        sys.exit(f"{PEER_CONFIG.name} disagrees with Config() (peer, app): {wrong}")


def same_steps_child(bids: Path, out: Path) -> None:
    """Job 2: synaptech-bids' steps that MNE-BIDS-Pipeline also runs, no ICA."""
    from synaptech_bids.bids_io.read import find_runs, read_run
    from synaptech_bids.config import Config
    from synaptech_bids.participant._01_preprocess import preprocess_raw
    from synaptech_bids.participant._03_epochs import make_epochs

    # the peer's committed config runs neither ICA nor Maxwell filtering
    config = Config(ica=False, maxwell_filter=False)
    out.mkdir(parents=True, exist_ok=True)
    kept = total = 0
    for run in find_runs(bids, "01"):
        raw, _ = preprocess_raw(read_run(run.bids_path), config)
        epochs, log = make_epochs(raw, config)
        del raw
        epochs.save(out / f"{run.name}_epo.fif", overwrite=True, verbose=False)
        kept, total = kept + log["Kept"], total + log["Total"]
    (out / "counts.json").write_text(json.dumps({"kept": kept, "total": total}))


def _peer_epochs(deriv: Path) -> int | None:
    import mne

    files = sorted(deriv.rglob("*_proc-clean_epo.fif")) or sorted(deriv.rglob("*_epo.fif"))
    if not files:
        return None
    return len(mne.read_epochs(files[0], preload=False, verbose=False))


def peer_step_times(log: Path) -> dict[str, float]:
    """Seconds per step from MNE-BIDS-Pipeline's log ("done (1m 8s)" lines)."""
    times: dict[str, float] = {}
    name = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("┌") and "/" in line:
            name = line.split("┬", 1)[1].split()[0]
        elif line.startswith("└") and "done (" in line and name:
            text = line.split("done (", 1)[1].split(")", 1)[0]
            units = {"h": 3600.0, "m": 60.0, "s": 1.0}
            seconds = sum(float(tok[:-1]) * units[tok[-1]] for tok in text.split()
                          if tok[-1] in units and tok[:-1].replace(".", "").isdigit())
            times[name] = times.get(name, 0.0) + seconds
            name = None
    return times


def _tail(log: Path, n: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run x 60 s (smoke test)")
    parser.add_argument("--bids", type=Path, help="use this simulated dataset (sub-01)")
    parser.add_argument("--work", type=Path, help="keep outputs here (default: temporary)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-python", default="/tmp/mbp-venv/bin/python")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--peer-ica", action="store_true",
                        help="also run the peer with its ICA on")
    parser.add_argument("--only", choices=("app", "peer", "peer-ica"),
                        help="run job 1 only, jobs 2-4 only (e.g. in two sittings), or "
                        "only the peer with its ICA on the MEG (compare with the ICA "
                        "time job 1 prints)")
    parser.add_argument("--_same-steps", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._same_steps:
        same_steps_child(*args._same_steps)
        return

    check_peer_config()
    work = args.work or Path(tempfile.mkdtemp(prefix="synaptech-bench-participant-"))
    work.mkdir(parents=True, exist_ok=True)
    n_runs, duration = (1, 60.0) if args.quick else (6, 450.0)
    bids = args.bids or work / "bids"
    print(f"threads {args.threads}, 1 job; os.cpu_count()={os.cpu_count()}; "
          f"load average at start {os.getloadavg()}", flush=True)
    if args.bids is None:
        t0 = time.perf_counter()
        from synaptech_bids.simulate import simulate_dataset

        simulate_dataset(bids, n_subjects=1, n_runs=n_runs, duration=duration, seed=0,
                         sfreq=1100.0)
        print(f"simulated 1 subject x {n_runs} run(s) x {duration:g} s at 1100 Hz in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    size = sum(p.stat().st_size for p in bids.joinpath("sub-01").rglob("*") if p.is_file())
    print(f"input: {bids} (sub-01: {size / 1024**3:.2f} GB)\n", flush=True)
    results: dict[str, tuple[float, float, int, float]] = {}
    ica_app = peer_ica = None

    # 1. the whole participant level -------------------------------------------
    beside = Path(sys.executable).parent / "synaptech-bids"  # the venv running this script
    app = (str(beside) if beside.is_file() else shutil.which("synaptech-bids")) or sys.exit(
        "synaptech-bids is not installed")
    if args.only not in ("peer", "peer-ica"):
        out = work / "app"
        wall, rss, rc, cpu = run_measured(
            [app, str(bids), str(out), "participant", "--participant-label", "01",
             "--n-jobs", "1", "--omp-nthreads", str(args.threads), "--force", "-v"],
            work / "app.log", args.threads)
        if rc:
            sys.exit(f"synaptech-bids failed ({rc}):\n{_tail(work / 'app.log')}")
        logs = [json.loads(p.read_text())
                for p in sorted(out.rglob("*_desc-preproc_log.json"))]
        steps: dict[str, float] = {}
        cpu_steps: dict[str, float] = {}
        for log in logs:
            for name, seconds in log.get("TimingsSeconds", {}).items():
                steps[name] = steps.get(name, 0.0) + seconds
            for name, seconds in log.get("CPUSeconds", {}).items():
                cpu_steps[name] = cpu_steps.get(name, 0.0) + seconds
        info_keys = ("information", "information_write")
        kept = sum(log["Epochs"]["Kept"] for log in logs)
        total = sum(log["Epochs"]["Total"] for log in logs)
        print(f"[1] synaptech-bids participant (default config, {len(logs)} runs): "
              f"wall {wall:.0f} s (goal < 600), peak RSS {rss / 1024:.2f} GB (goal < 6); "
              f"epochs kept {kept}/{total}")
        print("    per step, summed over runs, wall (CPU) s: "
              + ", ".join(f"{k} {v:.1f} ({cpu_steps.get(k, float('nan')):.1f})"
                          for k, v in steps.items())
              + f"; subject level and report {wall - sum(steps.values()):.1f}")
        print(f"    information step (MI, surrogates, TE, distance, written): wall "
              f"{sum(steps.get(k, 0.0) for k in info_keys):.1f} s, CPU "
              f"{sum(cpu_steps.get(k, 0.0) for k in info_keys):.1f} s (goal < 180)\n",
              flush=True)
        results["app"] = (wall, rss, kept, cpu)
        if "ica" in steps:
            ica_app = (steps["ica"], cpu_steps.get("ica", float("nan")))

    if args.only == "app":
        print(f"outputs and logs in {work}")
        return

    # 2. the same steps as the peer, with the app's step functions -------------
    if args.only != "peer-ica":
        out = work / "same"
        wall, rss, rc, cpu = run_measured(
            [sys.executable, __file__, "--_same-steps", str(bids), str(out)],
            work / "same.log", args.threads)
        if rc:
            sys.exit(f"same-steps job failed ({rc}):\n{_tail(work / 'same.log')}")
        counts = json.loads((out / "counts.json").read_text())
        print(f"[2] synaptech-bids, peer's steps (notch, band-pass, resample, epochs, "
              f"rejection; no ICA): wall {wall:.1f} s, peak RSS {rss:.0f} MB, "
              f"epochs kept {counts['kept']}/{counts['total']}", flush=True)
        results["same"] = (wall, rss, counts["kept"], cpu)

    # 3./4. the peer -------------------------------------------------------------
    if not args.no_peer:
        peer_bin = Path(args.peer_python).with_name("mne_bids_pipeline")
        if not peer_bin.is_file():
            sys.exit(f"{peer_bin} not found: pip install mne-bids-pipeline into the venv "
                     "of --peer-python, or pass --no-peer")
        version = subprocess.run(
            [args.peer_python, "-c", "import mne_bids_pipeline, mne; "
             "print(mne_bids_pipeline.__version__, mne.__version__)"],
            capture_output=True, text=True).stdout.split()
        jobs = [("peer", "", "meg,eeg")]
        if args.only == "peer-ica":
            jobs = [("peer_ica_meg", "ica", "meg")]
        elif args.peer_ica:
            jobs += [("peer_ica", "ica", "meg,eeg"), ("peer_ica_meg", "ica", "meg")]
        for key, spatial_filter, ch_types in jobs:
            deriv = work / key
            shutil.rmtree(deriv, ignore_errors=True)
            deriv.mkdir()
            wall, rss, rc, cpu = run_measured(
                [str(peer_bin), "--config", str(PEER_CONFIG), "--steps",
                 "init,preprocessing"],
                work / f"{key}.log", args.threads,
                env={"BENCH_BIDS_ROOT": str(bids), "BENCH_DERIV_ROOT": str(deriv),
                     "BENCH_SPATIAL_FILTER": spatial_filter, "BENCH_CH_TYPES": ch_types})
            label = (f"MNE-BIDS-Pipeline {version[0] if version else '?'} (mne "
                     f"{version[1] if len(version) > 1 else '?'})"
                     + (f", with ICA, ch_types {ch_types}" if spatial_filter else ""))
            if rc:
                print(f"[{'4' if spatial_filter else '3'}] {label}: FAILED (exit {rc}) after "
                      f"{wall:.0f} s; last lines of {work / (key + '.log')}:\n"
                      f"{_tail(work / (key + '.log'), 8)}", flush=True)
                continue
            n = _peer_epochs(deriv)
            print(f"[{'4' if spatial_filter else '3'}] {label}: wall {wall:.1f} s, "
                  f"peak RSS {rss:.0f} MB, epochs kept {n}", flush=True)
            steps = peer_step_times(work / f"{key}.log")
            print("    its steps (s, from its log): " + ", ".join(
                f"{k.split('/')[-1]} {v:.0f}" for k, v in steps.items() if v > 1), flush=True)
            results[key] = (wall, rss, n, cpu)
            if spatial_filter:
                peer_ica = sum(v for k, v in steps.items() if "ica" in k)
        if "peer" in results:
            (w1, r1, k1, c1), (w2, r2, k2, c2) = results["same"], results["peer"]
            diff = 100.0 * (k1 - k2) / k2 if k2 else float("nan")
            print(f"\n    peer / synaptech-bids, same steps: wall x{w2 / w1:.2f} "
                  f"(goal >= 2), CPU x{c2 / c1:.2f}, peak RSS x{r2 / r1:.2f} (goal >= 1); "
                  f"epochs kept {k1} vs {k2} ({diff:+.1f}%, goal within 5%)")
        if peer_ica is not None and ica_app is not None:
            print(f"    ICA: synaptech-bids wall {ica_app[0]:.1f} s, CPU {ica_app[1]:.1f} s "
                  "(EEG and MEG ICAs, summed over runs); the peer's ICA steps (fit, "
                  f"find artefacts, apply; MEG only): wall {peer_ica:.0f} s")
        elif peer_ica is not None:
            print(f"    the peer's ICA steps (fit, find artefacts, apply; MEG only): wall "
                  f"{peer_ica:.0f} s; compare with the ICA step of job 1")
    print(f"\nload average at the end {os.getloadavg()}; outputs and logs in {work}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
