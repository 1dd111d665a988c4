"""Benchmark of the group level: inference speed and memory at ds000117 scale.

    python benchmarks/bench_group.py [--threads 2] [--subjects 16] [--windows 880]
                                     [--only inference|memory]

Prints:

1. inference speed of every translator for 70 EEG channels at 250 Hz
   (2-s windows, as the group level uses), as a multiple of real time
   (median of 3 calls)
   (goal: at least 1000x on the CPU); the training-mean prediction, which
   does no work, is the baseline measured in the same run;
2. the peak memory of a leave-subjects-out evaluation (ridge and physics)
   on ds000117's scale (16 subjects x about 880 two-second epochs, 70 EEG +
   102 magnetometers, float32: 4.5 GiB), run in a child process, with the
   windows memory-mapped as the group level does (``group/gather.py``
   ``cache_subject``, ``evaluate.stack_subjects``) against all in RAM (the
   baseline, measured in the same run). Peak anonymous memory is what must
   fit in RAM; mapped pages are file-backed and can be evicted.

Training throughput of Synaptech-Net (windows per second, 1 and 2
processes) is ``benchmarks/bench_training.py``. This is a script that
prints, not a test; the numbers depend on the machine's load.

Measured (2 cores): inference, with the machine otherwise idle, Synaptech-Net
(width 0.25) 1440x and 1454x real time, ridge 4265-4581x, physics
5312-5495x; memory at 16 x 880, peak anonymous 2.50 GiB memory-mapped
(0.55x the data) against 12.0 GiB all in RAM (2.66x), 1114 s and 1753 s
with other jobs running beside them.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

N_EEG, N_MAG, SFREQ, WINDOW_S = 70, 102, 250.0, 2.0


def _world(n_subjects: int, n_windows: int, seed: int = 0):
    """Subjects as low-rank mixtures of shared sources, float32, with lead fields."""
    from synaptech_bids.group.evaluate import SubjectArrays

    rng = np.random.default_rng(seed)
    n_src, n_times = 200, int(WINDOW_S * SFREQ)
    data = []
    for index in range(n_subjects):
        l_eeg = rng.standard_normal((N_EEG, n_src)).astype(np.float32)
        l_meg = rng.standard_normal((N_MAG, n_src)).astype(np.float32)
        eeg = np.empty((n_windows, N_EEG, n_times), np.float32)
        meg = np.empty((n_windows, N_MAG, n_times), np.float32)
        for w in range(n_windows):  # window by window: no float64 copy of everything
            sources = rng.standard_normal((n_src, n_times)).astype(np.float32)
            eeg[w] = l_eeg @ sources
            meg[w] = l_meg @ sources
        data.append(SubjectArrays(f"{index + 1:02d}", eeg, meg,
                                  np.array(["a", "b"] * (n_windows // 2) + ["a"] * (n_windows % 2)),
                                  {"L_eeg": l_eeg.astype(float), "L_meg": l_meg.astype(float)}))
    return data


def _median_time(run, repeats: int = 3) -> float:
    """Median wall time of ``repeats`` calls (one call is at the mercy of the machine's load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_inference(minutes: float) -> None:
    from synaptech_bids.config import Config
    from synaptech_bids.group.evaluate import translator_params
    from synaptech_bids.translators import get_translator

    n_windows = int(minutes * 60 / WINDOW_S)
    train = _world(3, 40)
    test = _world(1, n_windows, seed=1)[0]
    eeg = np.concatenate([d.eeg for d in train])
    meg = np.concatenate([d.meg for d in train])
    groups = np.concatenate([np.full(len(d.eeg), d.subject) for d in train])
    geometry = {d.subject: d.geometry for d in train}
    config = Config(max_epochs=1)
    duration = n_windows * WINDOW_S
    print(f"\n1. inference on {minutes:g} min of EEG ({N_EEG} channels, {SFREQ:g} Hz, "
          f"{n_windows} windows of {WINDOW_S:g} s), CPU")
    baseline = _median_time(
        lambda: np.broadcast_to(meg.mean(axis=(0, 2), keepdims=True), test.meg.shape).copy()
    )
    print(f"   {'training-mean (baseline)':28s} {baseline:8.3f} s  {duration / baseline:12.0f}x "
          "real time")
    for name in config.translators:
        model = get_translator(name, **translator_params(name, config, SFREQ, 0, "cpu"))
        model.fit(eeg, meg, groups=groups, geometry=geometry)
        model.predict(test.eeg[:2], geometry=test.geometry)  # warm-up
        elapsed = _median_time(lambda m=model: m.predict(test.eeg, geometry=test.geometry))
        verdict = "meets" if duration / elapsed >= 1000 else "MISSES"
        print(f"   {name:28s} {elapsed:8.3f} s  {duration / elapsed:12.0f}x real time "
              f"({elapsed / baseline:.0f}x the baseline; {verdict} the 1000x goal)")


class _AnonPeak:
    """Peak anonymous (non file-backed) resident memory, sampled every 50 ms.

    Memory-mapped windows are file-backed: the kernel can drop them under
    pressure, so what must fit in RAM is the anonymous part.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.05)

    def __enter__(self) -> _AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _evaluate_child(n_subjects: int, n_windows: int, streamed: bool) -> None:
    from synaptech_bids.config import Config
    from synaptech_bids.group.evaluate import SubjectArrays, evaluate

    config = Config(translators=("physics", "ridge"), n_folds=4)
    with tempfile.TemporaryDirectory() as tmp, _AnonPeak() as anon:
        data, data_bytes = [], 0
        for index in range(n_subjects):  # one subject in RAM at a time, as gather does
            (subject,) = _world(1, n_windows, seed=index)
            subject.subject = f"{index + 1:02d}"
            data_bytes += subject.eeg.nbytes + subject.meg.nbytes
            if streamed:
                for kind in ("eeg", "meg"):
                    path = Path(tmp) / f"{subject.subject}_{kind}.npy"
                    np.save(path, getattr(subject, kind))
                    setattr(subject, kind, np.load(path, mmap_mode="r"))
            data.append(SubjectArrays(subject.subject, subject.eeg, subject.meg,
                                      subject.conditions, subject.geometry))
        start = time.perf_counter()
        evaluate(data, [f"MEG{i:04d}" for i in range(N_MAG)], config, SFREQ, 0, "cpu",
                 scratch=Path(tmp) if streamed else None)
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{data_bytes} {peak} {anon.peak} {elapsed}")


def bench_memory(n_subjects: int, n_windows: int) -> None:
    print(f"\n2. leave-subjects-out evaluation (physics, ridge; 4 folds) on {n_subjects} "
          f"subjects x {n_windows} windows")
    for streamed in (False, True):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n_subjects), str(n_windows),
             str(int(streamed))],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        data_bytes, peak, anon = int(out[-4]), int(out[-3]), int(out[-2])
        label = "memory-mapped (as the app runs)" if streamed else "all in RAM (baseline)"
        print(f"   {label:32s} data {data_bytes / 2**30:.2f} GiB, peak RSS "
              f"{peak / 2**30:.2f} GiB, peak anonymous {anon / 2**30:.2f} GiB "
              f"({anon / data_bytes:.2f}x the data), {float(out[-1]):.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--windows", type=int, default=880)
    parser.add_argument("--only", choices=("inference", "memory"),
                        help="run one part (inference speed wants an idle machine; "
                        "memory does not)")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        if args.child:
            _evaluate_child(args.child[0], args.child[1], bool(args.child[2]))
            return
        print(f"threads: {args.threads}")
        if args.only != "memory":
            bench_inference(args.minutes)
        if args.only != "inference":
            bench_memory(args.subjects, args.windows)


if __name__ == "__main__":
    main()
