"""What the container costs: image build time and participant-level run time.

    .venv/bin/python benchmarks/bench_container.py [--skip-cold] [--repeat N]

Prints

- the image build time cold (``make image IMAGE_BUILD_OPTS=--no-cache``: no
  layer cache; the base image stays) and with the layer cache (``make image``
  again, nothing changed), and the image's size;
- the participant level on a small simulated dataset (1 subject x 1 run x
  30 s at 500 Hz), inside the container exactly as users run it
  (``--read-only --tmpfs /tmp --user 1000:1000``) beside the same command on
  the host with the project's own ``synaptech-bids``, run alternately,
  ``--repeat`` times each, each into a fresh output folder; the container's
  extra cost in percent (the goal: under 10 %), by wall time (median and
  best) and by the CPU time the app used (user + system, measured around the
  ``synaptech-bids`` process on each side), which other load on the machine
  disturbs far less than wall time.

The engine is the one ``make image`` picks (ENGINE=docker|podman to force).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "container"))
from test_image import IMAGE, choose_engine  # noqa: E402

# Runs the entry point as a child and prints its CPU time (user + system) as
# the last line of stderr: the container's processes are not the benchmark's
# children, so their CPU time is measured inside.
CPU_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(['synaptech-bids', *sys.argv[1:]])\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(f'cpu_seconds={r.ru_utime + r.ru_stime:.3f}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def cpu_seconds(result: subprocess.CompletedProcess) -> float:
    return float(re.findall(r"cpu_seconds=([\d.]+)", result.stderr)[-1])


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed (exit {result.returncode}): {' '.join(command)}\n"
                 f"{(result.stdout + result.stderr)[-3000:]}")
    return seconds, result


def build(engine: str, options: str = "") -> tuple[float, str]:
    seconds, result = timed(["make", "-C", str(ROOT), "image", f"ENGINE={engine}",
                             f"IMAGE={IMAGE}", f"IMAGE_BUILD_OPTS={options}"])
    output = result.stdout + result.stderr
    size = re.search(r"image size ([\d.]+ GB)", output)
    tag = re.search(r"built (\S+) with", output)
    return seconds, f"{tag.group(1) if tag else IMAGE}, {size.group(1) if size else '?'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-cold", action="store_true", help="no cold build")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side")
    parser.add_argument("--config", help="pipeline options (TOML), for both sides")
    args = parser.parse_args()
    engine = choose_engine()
    print(f"engine: {engine}; machine: {os.cpu_count()} CPUs")

    if not args.skip_cold:
        seconds, image = build(engine, "--no-cache")
        print(f"build, cold (no layer cache):  {seconds:7.1f} s   ({image})")
    seconds, image = build(engine)
    print(f"build, with the layer cache:   {seconds:7.1f} s   ({image})")

    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        tmp = Path(tmp)
        data = tmp / "bids"
        timed([str(BIN / "synaptech-bids-simulate"), str(data), "--subjects", "1",
               "--runs", "1", "--duration", "30", "--seed", "0", "--sfreq", "500"])
        extra_c: list[str] = []
        extra_h: list[str] = []
        if args.config:
            (data / "code").mkdir(exist_ok=True)
            shutil.copy(args.config, data / "code" / "bench.toml")
            extra_c = ["--config", "/data/code/bench.toml"]
            extra_h = ["--config", str(data / "code" / "bench.toml")]
        for path in [data, *data.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        level = ["participant", "--participant-label", "01"]
        host: list[float] = []
        container: list[float] = []
        host_cpu: list[float] = []
        container_cpu: list[float] = []
        for i in range(args.repeat):
            out_h, out_c = tmp / f"host-{i}", tmp / f"container-{i}"
            out_c.mkdir()
            if os.geteuid() == 0:
                os.chown(out_c, 1000, 1000)
            else:
                out_c.chmod(0o777)
            seconds, result = timed([sys.executable, "-c", CPU_WRAPPER, str(data),
                                     str(out_h), *level, *extra_h],
                                    env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
            host.append(seconds)
            host_cpu.append(cpu_seconds(result))
            seconds, result = timed([engine, "run", "--rm", "--read-only", "--tmpfs", "/tmp",
                                     "--user", "1000:1000", "--network", "none",
                                     "-v", f"{data}:/data:ro", "-v", f"{out_c}:/out",
                                     "--entrypoint", "python", IMAGE, "-c", CPU_WRAPPER,
                                     "/data", "/out", *level, *extra_c])
            container.append(seconds)
            container_cpu.append(cpu_seconds(result))
            print(f"  run {i + 1}: host {host[-1]:6.1f} s wall, {host_cpu[-1]:6.1f} s CPU   "
                  f"container {container[-1]:6.1f} s wall, {container_cpu[-1]:6.1f} s CPU")

    def overhead(h: float, c: float) -> str:
        return f"{100 * (c - h) / h:+6.1f} %"

    rows = [("wall, median", statistics.median(host), statistics.median(container)),
            ("wall, best", min(host), min(container)),
            ("CPU, median", statistics.median(host_cpu), statistics.median(container_cpu))]
    print(f"participant level ({len(host)} runs each):   host   container   overhead")
    for name, h, c in rows:
        print(f"  {name:14s}  {h:22.1f} s {c:9.1f} s   {overhead(h, c)}")
    print("goal: under 10 % extra")


if __name__ == "__main__":
    main()
