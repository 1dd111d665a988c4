"""The participant level as a SLURM array and the dependent group job, on a real SLURM.

``scripts/slurm/submit.sh`` submits one array task per participant of a
3-subject simulated dataset and the group job (``--dependency=afterok``,
``--kill-on-invalid-dep=yes``) to the single-node SLURM of ``conftest.py``.
Checked: every task and the group job complete; each task has its own log;
the derivatives equal those of a serial run of the same subjects;
``dataset_description.json`` is valid after the concurrent writers; each task
computes with the threads SLURM gave it. Then a dataset whose sub-02 cannot
be read: that task alone fails, with the app's error in its log, SLURM
cancels the group job, and the group level run by hand names sub-02. Last,
``train_multinode.sbatch`` (srun, torchrun, c10d rendezvous) on one node
with two CPU processes.

Run with ``make test-scheduler`` (installs slurm-wlm and munge when missing;
as root). About ten minutes on two busy CPUs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = ROOT / "scripts" / "slurm"
SUBMIT = SLURM_DIR / "submit.sh"
BIN = Path(sys.executable).parent
SUBJECTS = ("01", "02", "03")
# One CPU per task: two of the three tasks run at once on a 2-CPU machine, so
# they write dataset_description.json concurrently, and one thread differs
# from what the app would take unconstrained (every CPU of the machine).
CPUS_PER_TASK = 1
PARTICIPANT_OPTS = f"--cpus-per-task={CPUS_PER_TASK} --mem=3G --time=30"
GROUP_OPTS = "--cpus-per-task=2 --mem=4G --time=30"
# Group-only options (participant outputs do not depend on them): the group
# job runs the fast translators; what is tested here is that it runs, and when.
CONFIG = 'translators = ["physics", "ridge"]\n'
JOB_TIMEOUT = 20 * 60
# JSON keys whose values depend on when and how a run was started, not on
# the data: the serial run and the array tasks differ in these only (and in
# measured durations, such as TimingsSeconds and CPUSeconds).
VOLATILE_KEYS = {"DateTime", "CommandLine", "Hostname"}
MEASURED_DURATION = re.compile(r"\w*(Timings|CPU|Wall|Elapsed)\w*Seconds")


def fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """3 subjects x 1 run x 20 s, and a config file for both levels."""
    root = tmp_path_factory.mktemp("data")
    bids = root / "bids"
    result = run(BIN / "synaptech-bids-simulate", bids, "--subjects", len(SUBJECTS),
                 "--runs", 1, "--duration", 20, "--seed", 0)
    if result.returncode:
        fail(f"simulation failed: {result.stderr}")
    (root / "config.toml").write_text(CONFIG)
    return bids


def job_env(slurm) -> dict[str, str]:
    """The submitting environment: the jobs inherit it (sbatch --export=ALL)."""
    env = slurm.env
    env["PATH"] = os.pathsep.join([str(BIN), env["PATH"]])
    for name in ("SYNAPTECH_CONTAINER", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        env.pop(name, None)  # the tasks must get their threads from SLURM alone
    return env


def submit(slurm, bids: Path, out: Path) -> tuple[str, str]:
    """Submit with scripts/slurm/submit.sh; return the array and group job ids."""
    result = run("bash", SUBMIT, "--participant-opts", PARTICIPANT_OPTS,
                 "--group-opts", GROUP_OPTS, bids, out,
                 "--config", bids.parent / "config.toml", env=job_env(slurm),
                 cwd=bids.parent, timeout=60)
    if result.returncode:
        fail(f"submit.sh failed ({result.returncode}): {result.stderr}\n{slurm.logs()}")
    ids = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
    array_job, group_job = ids["ARRAY_JOB"], ids["GROUP_JOB"]
    # Pending on every task of the array (SLURM shows it until it is met).
    group = slurm.job(group_job)[0]
    assert group["Dependency"].startswith(f"afterok:{array_job}_*"), group["Dependency"]
    return array_job, group_job


def wait(slurm, *job_ids: str, timeout: float = JOB_TIMEOUT) -> None:
    """Wait until none of the jobs (array tasks included) is pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = slurm.run("squeue", "--noheader", "--format=%i %T",
                           f"--jobs={','.join(job_ids)}", check=False)
        if queued.returncode == 0 and not queued.stdout.strip():
            return
        time.sleep(3)
    fail(f"jobs {job_ids} still queued after {timeout:.0f} s:\n{queued.stdout}\n"
         f"{slurm.logs()}")


def task_states(slurm, array_job: str) -> dict[int, dict[str, str]]:
    """``scontrol show job`` of every task of an array, by task id."""
    return {int(job["ArrayTaskId"]): job for job in slurm.job(array_job)}


def task_log(out: Path, array_job: str, task: int) -> Path:
    return out / "logs" / f"synaptech-participant_{array_job}_{task}.log"


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items()
                if k not in VOLATILE_KEYS and not MEASURED_DURATION.fullmatch(k)}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def compare_file(a: Path, b: Path) -> str | None:
    """``None`` when two derivative files hold the same results, else why not."""
    name = a.name
    if name.endswith(".json"):
        ja, jb = (strip_volatile(json.loads(p.read_text())) for p in (a, b))
        return None if ja == jb else f"{name}: JSON differs"
    if name.endswith(".npy"):
        return None if np.array_equal(np.load(a), np.load(b)) else f"{name}: arrays differ"
    if name.endswith("_ica.fif"):
        import mne

        ia, ib = (mne.preprocessing.read_ica(p, verbose="error") for p in (a, b))
        if ia.ch_names != ib.ch_names or ia.exclude != ib.exclude:
            return f"{name}: channels or excluded components differ"
        if not all(np.array_equal(getattr(ia, k), getattr(ib, k))
                   for k in ("unmixing_matrix_", "mixing_matrix_", "pca_components_")):
            return f"{name}: decompositions differ"
        return None
    if name.endswith(".fif"):
        import mne

        ea, eb = (mne.read_epochs(p, preload=True, verbose="error") for p in (a, b))
        if ea.ch_names != eb.ch_names or ea.info["bads"] != eb.info["bads"]:
            return f"{name}: channels differ"
        if not np.array_equal(ea.events, eb.events):
            return f"{name}: events differ"
        da, db = ea.get_data(), eb.get_data()
        if not np.array_equal(da, db):
            return f"{name}: data differ (max |diff| {np.abs(da - db).max():.3g})"
        return None
    # TSV and anything else: the same bytes (numbers are written with %.8g).
    return None if a.read_bytes() == b.read_bytes() else f"{name}: contents differ"


def compare_subjects(array_out: Path, serial_out: Path, subjects) -> list[str]:
    problems = []
    for subject in subjects:
        files_a = {p.relative_to(array_out) for p in (array_out / f"sub-{subject}").rglob("*")
                   if p.is_file()}
        files_b = {p.relative_to(serial_out)
                   for p in (serial_out / f"sub-{subject}").rglob("*") if p.is_file()}
        if files_a != files_b or not files_a:
            problems.append(f"sub-{subject}: different files: only in the array's "
                            f"{sorted(map(str, files_a - files_b))}, only in the serial "
                            f"run's {sorted(map(str, files_b - files_a))}")
            continue
        for rel in sorted(files_a):
            problem = compare_file(array_out / rel, serial_out / rel)
            if problem:
                problems.append(f"sub-{subject}: {problem}")
        if not (array_out / f"sub-{subject}.html").is_file():
            problems.append(f"sub-{subject}.html (report) missing")
    return problems


@dataclass
class ArrayRun:
    out: Path
    array_job: str
    group_job: str
    seconds: float


@pytest.fixture(scope="module")
def array_run(slurm, dataset, tmp_path_factory) -> ArrayRun:
    """The array and the group job submitted with submit.sh, once they are done."""
    out = tmp_path_factory.mktemp("array") / "derivatives"
    started = time.monotonic()
    array_job, group_job = submit(slurm, dataset, out)
    wait(slurm, array_job, group_job)
    return ArrayRun(out, array_job, group_job, time.monotonic() - started)


def test_array_then_group(slurm, dataset, array_run, tmp_path):
    out, array_job, group_job = array_run.out, array_run.array_job, array_run.group_job
    tasks = task_states(slurm, array_job)
    assert sorted(tasks) == [1, 2, 3], f"array tasks: {sorted(tasks)}"
    for task, job in tasks.items():
        log = task_log(out, array_job, task)
        text = log.read_text() if log.is_file() else "(no log)"
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (
            f"task {task}: {job['JobState']} {job['ExitCode']}\n{text[-2000:]}")
        # Its own log, naming its own participant (task N: row N of participants.tsv).
        assert f": sub-{SUBJECTS[task - 1]} on " in text, text[-2000:]
        assert f"{CPUS_PER_TASK} thread(s)" in text
        assert re.search(rf"sub-{SUBJECTS[task - 1]} exit 0, wall \d+ s", text), text[-2000:]
        # Never more CPUs than given: the app's CPU time within the task's wall time.
        wall, cpu = map(int, re.search(r"wall (\d+) s, CPU (\d+) s", text).groups())
        assert cpu <= CPUS_PER_TASK * wall * 1.1 + 3, f"task {task}: CPU {cpu} s in {wall} s"
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == sorted([task_log(out, array_job, t).name for t in (1, 2, 3)]
                          + [f"synaptech-group_{group_job}.log"]), logs

    group = slurm.job(group_job)[0]
    group_log = (out / "logs" / f"synaptech-group_{group_job}.log").read_text()
    assert group["JobState"] == "COMPLETED", f"group: {group['JobState']}\n{group_log[-3000:]}"
    assert (out / "group" / "desc-translation_scores.tsv").is_file()
    # The group job started only after the last task ended.
    last_task_end = max(job["EndTime"] for job in tasks.values())
    assert group["StartTime"] >= last_task_end, (group["StartTime"], last_task_end)

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["BIDSVersion"] and description["Name"]
    assert description["GeneratedBy"][0]["Name"] == "synaptech-bids"
    assert description["SourceDatasets"][0]["URL"] == dataset.resolve().as_uri()
    assert not list(out.glob(".dataset_description.json.*")), "temporary files left"

    # Threads as they took effect in each task's process: SLURM_CPUS_PER_TASK.
    for log in sorted(out.rglob("*desc-preproc_log.json")):
        threads = json.loads(log.read_text())["Provenance"]["Threads"]
        assert threads and set(threads.values()) == {CPUS_PER_TASK}, (log.name, threads)

    # The same subjects, one after the other in one process, with the same threads.
    serial = tmp_path / "serial"
    result = run(BIN / "synaptech-bids", dataset, serial, "participant",
                 "--participant-label", *SUBJECTS, "--omp-nthreads", CPUS_PER_TASK,
                 "--config", dataset.parent / "config.toml", env=job_env(slurm))
    assert result.returncode == 0, result.stderr[-3000:]
    problems = compare_subjects(out, serial, SUBJECTS)
    assert not problems, "\n".join(problems)
    print(f"array of {len(SUBJECTS)} + group: {array_run.seconds:.0f} s")


def test_failing_subject_cancels_group(slurm, dataset, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(dataset, bids)
    shutil.copy(dataset.parent / "config.toml", tmp_path / "config.toml")
    (meg,) = (bids / "sub-02").rglob("*_meg.fif")
    meg.write_bytes(b"not a FIF file" * 8)  # unreadable: the app must refuse it
    out = tmp_path / "derivatives"
    array_job, group_job = submit(slurm, bids, out)
    wait(slurm, array_job, group_job)

    tasks = task_states(slurm, array_job)
    for task, job in tasks.items():
        text = task_log(out, array_job, task).read_text()
        if task == 2:
            assert job["JobState"] == "FAILED" and job["ExitCode"] != "0:0", job["JobState"]
            errors = [line for line in text.splitlines()
                      if line.startswith("synaptech-bids: error:")]
            assert errors and "sub-02" in errors[-1], text[-2000:]
            status = int(job["ExitCode"].split(":")[0])
            assert f"sub-02 exit {status}," in text
        else:
            assert job["JobState"] == "COMPLETED", f"task {task}: {text[-2000:]}"
            assert "synaptech-bids: error" not in text, text[-2000:]

    group = slurm.job(group_job)[0]
    assert group["JobState"] == "CANCELLED", (group["JobState"], group.get("Reason"))
    assert not (out / "logs" / f"synaptech-group_{group_job}.log").exists()
    assert not (out / "group").exists()

    result = run(BIN / "synaptech-bids", bids, out, "group", "--config",
                 tmp_path / "config.toml", env=job_env(slurm))
    assert result.returncode == 66, (result.returncode, result.stderr[-2000:])
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("synaptech-bids: error:") and "sub-02" in message, message
    assert "sub-01" not in message and "sub-03" not in message, message


def test_multinode_training_script_on_one_node(slurm, dataset, array_run, tmp_path):
    """train_multinode.sbatch: srun, torchrun, the c10d rendezvous, the group level.

    One node here, two CPU processes (gloo) instead of GPUs; the GPU
    request of the script's #SBATCH lines is lifted (--gres=none). The
    translators that do not train by gradient descent (physics, ridge) must
    score as in the single-process group job.
    """
    out = tmp_path / "derivatives"
    out.mkdir()
    shutil.copy(array_run.out / "dataset_description.json", out)
    for subject in SUBJECTS:
        shutil.copytree(array_run.out / f"sub-{subject}", out / f"sub-{subject}")
    env = job_env(slurm)
    # The script's own port (per job, below the ephemeral range): a port
    # picked free here could be taken by srun's sockets before torchrun binds.
    env.update(SYNAPTECH_NPROC_PER_NODE="2")
    result = run("sbatch", "--parsable", "--nodes=1", "--gres=none", "--cpus-per-task=2",
                 "--mem=6G", "--time=30", f"--output={tmp_path}/%x_%j.log",
                 SLURM_DIR / "train_multinode.sbatch", dataset, out,
                 "--config", dataset.parent / "config.toml", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split(";")[0]
    wait(slurm, job_id)
    job = slurm.job(job_id)[0]
    log = (tmp_path / f"synaptech-train_{job_id}.log").read_text()
    # The first error lines, where a failure starts, then the log's end.
    errors = "\n".join(line for line in log.splitlines() if "rror" in line)[:2000]
    assert job["JobState"] == "COMPLETED", f"{job['JobState']}\n{errors}\n{log[-3000:]}"
    port = 20000 + int(job_id) % 10000
    assert f"1 node(s) x 2 process(es), rendezvous {slurm.node}:{port}," in log, log[-3000:]

    import pandas as pd

    scores = [pd.read_csv(d / "group" / "desc-translation_scores.tsv", sep="\t")
              for d in (array_run.out, out)]
    for table in scores:
        table.drop(table.index[table["model"] == "synaptechnet"], inplace=True)
    assert len(scores[0]) and scores[0].shape == scores[1].shape
    pd.testing.assert_frame_equal(scores[0].reset_index(drop=True),
                                  scores[1].reset_index(drop=True), rtol=1e-5)
