"""The container image, built and run as users run it (`make test-container`).

Builds ``synaptech/bids:<version>`` with ``make image`` (Docker where an
engine answers, else Podman, prepared by docker/prepare_podman.sh; the layer
cache makes a rebuild quick), simulates a small dataset, and runs

    ENGINE run --rm --read-only --tmpfs /tmp --user 1000:1000 \\
        -v SIM:/data:ro -v OUT:/out synaptech/bids /data /out participant ...

for each participant, then ``group``, and the same commands outside the
container with the project's own ``synaptech-bids``. Checked: exit 0, files
owned by uid 1000, the same derivatives inside and out (TSV numbers within
1e-6 relative, epochs within 1e-5; provenance may differ in paths and
times), ``GeneratedBy`` naming the image, and the same one-line errors and
exit codes for bad inputs. ``--read-only`` makes any write outside /out and
/tmp fail the run.

Where containers cannot be built or run, these tests FAIL with the reason:
they never skip. They are not part of ``make test`` (tests/ excludes this
folder via its own invocation); ``.ci/run`` runs them after it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("IMAGE", "synaptech/bids")
UID = 1000
BUILD_TIMEOUT = 40 * 60
RUN_TIMEOUT = 30 * 60
# A small dataset: 2 subjects x 1 run x 30 s at 500 Hz.
SIMULATE = ["--subjects", "2", "--runs", "1", "--duration", "30", "--seed", "0",
            "--sfreq", "500"]
LABELS = ["01", "02"]
# Pipeline options that keep the run short; lies in the dataset's code/
# folder (which BIDS leaves alone), so the container reads it from /data.
CONFIG = """\
# synaptech-bids options for the container test: a quick pipeline
# (a 1 Hz high-pass suits 30-s recordings: 0.1 Hz needs a 33-s filter)
l_freq = 1.0
n_surrogates = 20
max_epochs = 3
ica_n_components = 15
resample_sfreq = 400.0
"""
TSV_RTOL = 1e-6
EPOCHS_RTOL = 1e-5
# Provenance keys whose values depend on where and when the run happened,
# and measured durations (JSON keys and TSV columns): wall-clock times, not
# results. The Python version under Provenance/Versions differs too (the
# image's is Debian's 3.11.2).
VOLATILE_KEYS = {"CommandLine", "DateTime", "Platform", "Container", "Hostname",
                 "Duration", "DurationSeconds", "ElapsedSeconds", "URL", "Elapsed",
                 "time_s", "duration_s", "elapsed_s", "wall_s", "cpu_s", "seconds",
                 "TimingsSeconds", "CPUSeconds"}
VOLATILE_VERSIONS = {"python"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?")


def fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------
# engine, image, dataset


def choose_engine() -> str:
    """The engine docker/build_image.sh picks: ENGINE, else a live Docker, else podman."""
    if os.environ.get("ENGINE"):
        return os.environ["ENGINE"]
    docker = shutil.which("docker")
    if docker:
        version = subprocess.run([docker, "--version"], capture_output=True, text=True)
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode == 0 and "podman" not in version.stdout.lower():
            return "docker"
    return "podman"


@pytest.fixture(scope="module")
def engine() -> str:
    return choose_engine()


@pytest.fixture(scope="module")
def image(engine) -> dict:
    """``make image``; returns what it printed (size, torch, build time)."""
    make = shutil.which("make")
    if make is None:
        fail("make is not installed: cannot build the image")
    start = time.monotonic()
    try:
        result = subprocess.run(
            [make, "-C", str(ROOT), "image", f"ENGINE={engine}", f"IMAGE={IMAGE}"],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        fail(f"`make image` ran past {BUILD_TIMEOUT} s:\n{tail(str(err.stdout or ''))}")
    output = result.stdout + result.stderr
    if result.returncode != 0:
        fail(f"`make image` failed (exit {result.returncode}): containers cannot be "
             f"built or run here with {engine}:\n{tail(output)}")
    size = re.search(r"image size [\d.]+ GB \((\d+) bytes\)", output)
    torch = re.search(r"build_image: torch (\S+)", output)
    version = re.search(r"built \S+:(\S+) with", output)
    assert size and torch and version, tail(output)
    print(last_line(output[: size.end()]))
    return {"size": int(size.group(1)), "torch": torch.group(1),
            "tag": f"{IMAGE}:{version.group(1)}", "version": version.group(1),
            "seconds": time.monotonic() - start}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("container") / "bids"
    result = subprocess.run(
        [str(BIN / "synaptech-bids-simulate"), str(root), *SIMULATE],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"the simulator failed:\n{tail(result.stdout + result.stderr)}"
    (root / "code").mkdir(exist_ok=True)
    (root / "code" / "synaptech.toml").write_text(CONFIG)
    for path in [root, *root.rglob("*")]:  # readable by uid 1000 in the container
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return root


def output_dir(parent: Path, name: str) -> Path:
    """An empty folder that uid 1000 (the container's user) owns."""
    path = parent / name
    path.mkdir()
    if os.geteuid() == 0:
        os.chown(path, UID, UID)
    else:
        path.chmod(0o777)
    return path


def container_command(engine: str, tag: str, data: Path, out: Path, *args: str,
                      data_mode: str = "ro", out_mode: str = "rw") -> list[str]:
    """Exactly the documented command (docs/containers.md)."""
    return [engine, "run", "--rm", "--read-only", "--tmpfs", "/tmp",
            "--user", f"{UID}:{UID}", "--network", "none",
            "-v", f"{data}:/data:{data_mode}", "-v", f"{out}:/out:{out_mode}",
            tag, "/data", "/out", *args]


def run(command: list[str], timeout: int = RUN_TIMEOUT,
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"ran past {timeout} s: {' '.join(command)}")
    return result, time.monotonic() - start


LEVEL_ARGS = [["participant", "--participant-label", label] for label in LABELS] + [["group"]]


@pytest.fixture(scope="module")
def runs(engine, image, dataset, tmp_path_factory) -> dict:
    """Participant (each label) then group, in the container and on the host."""
    parent = dataset.parent
    out_container = output_dir(parent, "out-container")
    out_host = parent / "out-host"
    results: dict = {"container": out_container, "host": out_host, "steps": []}
    for args in LEVEL_ARGS:
        step = {"args": args}
        config_c = ["--config", "/data/code/synaptech.toml"]
        config_h = ["--config", str(dataset / "code" / "synaptech.toml")]
        inside, step["container_s"] = run(
            container_command(engine, image["tag"], dataset, out_container, *args, *config_c))
        outside, step["host_s"] = run(
            [str(BIN / "synaptech-bids"), str(dataset), str(out_host), *args, *config_h])
        step["container"], step["host"] = inside, outside
        results["steps"].append(step)
        print(f"{' '.join(args)}: container {step['container_s']:.1f} s "
              f"(exit {inside.returncode}), host {step['host_s']:.1f} s "
              f"(exit {outside.returncode})")
    return results


def step_result(runs, level: str) -> list[dict]:
    return [s for s in runs["steps"] if s["args"][0] == level]


# --------------------------------------------------------------------------
# comparison helpers


def read_tsv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def compare_tsv(a: Path, b: Path) -> list[str]:
    rows_a, rows_b = read_tsv(a), read_tsv(b)
    if len(rows_a) != len(rows_b):
        return [f"{a.name}: {len(rows_a)} rows vs {len(rows_b)}"]
    problems = []
    header = rows_a[0] if rows_a else []
    volatile = {j for j, name in enumerate(header) if name in VOLATILE_KEYS}
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        if len(ra) != len(rb):
            problems.append(f"{a.name} row {i}: {len(ra)} columns vs {len(rb)}")
            continue
        for j, (x, y) in enumerate(zip(ra, rb)):
            if x == y or (i > 0 and j in volatile):
                continue
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                problems.append(f"{a.name} row {i} col {j}: {x!r} vs {y!r}")
                continue
            if not (math.isclose(fx, fy, rel_tol=TSV_RTOL, abs_tol=1e-12)
                    or (math.isnan(fx) and math.isnan(fy))):
                problems.append(f"{a.name} row {i} col {j}: {fx!r} vs {fy!r}")
    return problems[:10]


def normalise(text: str, paths: dict[str, str]) -> str:
    for host, container in paths.items():
        text = text.replace(Path(host).as_uri(), Path(container).as_uri())
        text = text.replace(host, container)
    return text


def compare_json(a, b, paths: dict[str, str], where: str = "") -> list[str]:
    """Equal but for volatile provenance keys, paths and timestamps; numbers to 1e-6."""
    if isinstance(a, dict) and isinstance(b, dict):
        problems = []
        for key in sorted(set(a) | set(b)):
            if key in VOLATILE_KEYS or (where.endswith("/Versions")
                                        and key in VOLATILE_VERSIONS):
                continue
            if key not in a or key not in b:
                problems.append(f"{where}/{key}: only in one of them")
            else:
                problems += compare_json(a[key], b[key], paths, f"{where}/{key}")
        return problems
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items vs {len(b)}"]
        return [p for i, (x, y) in enumerate(zip(a, b))
                for p in compare_json(x, y, paths, f"{where}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b or math.isclose(a, b, rel_tol=TSV_RTOL, abs_tol=1e-12):
            return []
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return []  # e.g. no validation loss without validation subjects
        return [f"{where}: {a!r} vs {b!r}"]
    if isinstance(a, str) and isinstance(b, str):
        if TIMESTAMP.search(a) and TIMESTAMP.search(b):
            return []
        if a == b or normalise(a, paths) == normalise(b, paths):
            return []
        return [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def compare_epochs(a: Path, b: Path) -> list[str]:
    import mne

    ea = mne.read_epochs(a, preload=True, verbose="error")
    eb = mne.read_epochs(b, preload=True, verbose="error")
    if ea.ch_names != eb.ch_names or len(ea) != len(eb):
        return [f"{a.name}: channels or epochs differ ({len(ea)} vs {len(eb)} epochs)"]
    problems = []
    for kind in ("eeg", "mag", "grad"):
        picks = mne.pick_types(ea.info, meg=kind if kind != "eeg" else False,
                               eeg=kind == "eeg", exclude=[])
        if len(picks) == 0:
            continue
        x, y = ea.get_data(picks=picks), eb.get_data(picks=picks)
        scale = float(np.max(np.abs(x))) or 1.0
        if not np.allclose(x, y, rtol=EPOCHS_RTOL, atol=EPOCHS_RTOL * scale):
            worst = float(np.max(np.abs(x - y)) / scale)
            problems.append(f"{a.name} {kind}: max difference {worst:.2e} of the range")
    return problems


def derivative_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and ".lock" not in p.name}


# --------------------------------------------------------------------------
# the tests


def test_image_is_small_and_cpu(image):
    print(f"image {image['tag']}: {image['size'] / 1e9:.2f} GB, torch {image['torch']}")
    assert image["size"] < 2e9, f"image is {image['size'] / 1e9:.2f} GB, over 2 GB"
    assert "+cpu" in image["torch"], f"torch {image['torch']} is not the CPU build"


def test_runs_exit_zero(runs):
    for step in runs["steps"]:
        for where in ("container", "host"):
            result = step[where]
            assert result.returncode == 0, (
                f"{' '.join(step['args'])} {where}: exit {result.returncode}\n"
                f"{tail(result.stdout + result.stderr)}")


def test_outputs_belong_to_the_user(runs):
    out = runs["container"]
    expected = UID if os.geteuid() == 0 else os.geteuid()
    wrong = [str(p.relative_to(out)) for p in out.rglob("*") if p.lstat().st_uid != expected]
    assert not wrong, f"not owned by uid {expected}: {wrong[:10]}"
    assert derivative_files(out), "the container wrote nothing"


def test_generated_by_names_the_image(runs, image):
    description = json.loads((runs["container"] / "dataset_description.json").read_text())
    containers = [g.get("Container") for g in description["GeneratedBy"]]
    assert {"Type": "docker", "Tag": image["tag"]} in containers, description["GeneratedBy"]
    host = json.loads((runs["host"] / "dataset_description.json").read_text())
    assert not any(g.get("Container") for g in host["GeneratedBy"]), host["GeneratedBy"]


@pytest.mark.parametrize("level", ["participant", "group"])
def test_same_derivatives_inside_and_outside(runs, dataset, level):
    steps = step_result(runs, level)
    failed = [s for s in steps if s["container"].returncode or s["host"].returncode]
    assert not failed, f"{level} level failed; see test_runs_exit_zero"
    inside, outside = runs["container"], runs["host"]
    files_in, files_out = derivative_files(inside), derivative_files(outside)
    if level == "participant":  # what exists after the participant level
        files_in = {f for f in files_in if f.startswith("sub-")}
        files_out = {f for f in files_out if f.startswith("sub-")}
    assert files_in == files_out, (
        f"only in the container: {sorted(files_in - files_out)[:10]}; "
        f"only on the host: {sorted(files_out - files_in)[:10]}")
    paths = {str(dataset): "/data", str(outside): "/out", str(dataset.resolve()): "/data",
             str(outside.resolve()): "/out"}
    problems: list[str] = []
    compared = 0
    for name in sorted(files_in):
        a, b = inside / name, outside / name
        if name.endswith(".tsv"):
            problems += compare_tsv(a, b)
        elif name.endswith("_epo.fif") or name.endswith("-epo.fif"):
            problems += compare_epochs(a, b)
        elif name.endswith(".json"):
            problems += [f"{name}{p}" for p in compare_json(
                json.loads(b.read_text()), json.loads(a.read_text()), paths)]
        elif name.endswith(".npy"):
            x, y = np.load(a), np.load(b)
            if x.shape != y.shape or not np.allclose(x, y, rtol=EPOCHS_RTOL, atol=0):
                problems.append(f"{name}: arrays differ")
        elif name.endswith(".safetensors"):  # trained weights
            from safetensors.numpy import load_file

            x, y = load_file(a), load_file(b)
            if x.keys() != y.keys() or not all(
                    x[k].shape == y[k].shape and np.allclose(
                        x[k], y[k], rtol=EPOCHS_RTOL,
                        atol=EPOCHS_RTOL * (float(np.max(np.abs(x[k]))) if x[k].size else 0))
                    for k in x):
                problems.append(f"{name}: weights differ")
        else:
            continue
        compared += 1
    assert compared, f"no TSV, JSON or epochs file among {sorted(files_in)[:20]}"
    assert not problems, "\n".join(problems[:30])


# --------------------------------------------------------------------------
# bad inputs: the same one-line error and exit code inside and outside


def host_unprivileged(command: list[str]) -> list[str]:
    """As root, drop the capabilities that let root write anywhere."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        fail("setpriv (util-linux) is needed to run the host side without root's powers")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--",
            *command]


@pytest.mark.parametrize("case,code", [("not-bids", 16), ("unknown-label", 18),
                                       ("unwritable-output", 73)])
def test_same_errors_inside_and_outside(engine, image, dataset, tmp_path, case, code):
    data, out = dataset, output_dir(tmp_path, "out")
    args = ["participant"]
    host_wrap = list
    if case == "not-bids":
        data = tmp_path / "not-bids"
        (data / "sub-01").mkdir(parents=True)
        (data / "README").write_text("not a BIDS dataset\n")
        for p in (data, data / "sub-01"):
            p.chmod(0o755)
    elif case == "unknown-label":
        args = ["participant", "--participant-label", "99"]
    else:  # an output folder that belongs to root and that others may not write
        out = tmp_path / "root-owned"
        out.mkdir()
        out.chmod(0o555)
        if os.geteuid() == 0:
            os.chown(out, 0, 0)
        host_wrap = host_unprivileged
    inside, _ = run(container_command(engine, image["tag"], data, out, *args), timeout=600)
    outside, _ = run(host_wrap([str(BIN / "synaptech-bids"), str(data), str(out), *args]),
                     timeout=600)
    paths = {str(data): "/data", str(out): "/out"}
    line_in, line_out = last_line(inside.stderr), normalise(last_line(outside.stderr), paths)
    assert outside.returncode == code, f"host: exit {outside.returncode}: {line_out}"
    assert inside.returncode == code, f"container: exit {inside.returncode}: {tail(inside.stderr)}"
    assert line_in == line_out, f"container: {line_in!r}\nhost:      {line_out!r}"
    assert line_in.startswith("synaptech-bids: error: "), line_in
    assert len(inside.stderr.strip().splitlines()) == 1, inside.stderr
