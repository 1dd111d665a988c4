"""The SLURM job scripts of scripts/slurm/, run by bash with stand-in commands.

No scheduler here: ``sbatch``, ``srun``, ``scontrol``, ``synaptech-bids``,
``singularity`` and ``podman`` are small scripts on PATH that record their
arguments, so these tests check what the job scripts would run (which
participant a task takes, the threads, the container command lines, the
dependency of the group job). ``tests/scheduler/test_slurm.py`` runs the
same scripts on a real SLURM.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "scripts" / "slurm"

# Records its name and arguments as one JSON line in $CALLS; as sbatch,
# answers a job id (--parsable); as scontrol, lists the allocation's nodes.
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "sbatch":
    n = sum(1 for _ in open(os.environ["CALLS"]))
    print(f"{100 + n};cluster")
elif name == "scontrol":
    print("node-a\\nnode-b")
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
"""


@pytest.fixture
def bench(tmp_path):
    """A dataset folder, an output folder and the stand-in commands on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun", "scontrol", "synaptech-bids", "singularity", "podman",
                 "apptainer"):
        (bin_dir / name).write_text(STAND_IN)
        (bin_dir / name).chmod(0o755)
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text(
        "age\tparticipant_id\tsex\r\n30\tsub-01\tF\r\n31\tsub-07\tM\r\n\r\n32\tsub-12\tF\r\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SYNAPTECH_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", CALLS=str(tmp_path / "calls"))
    return {"bids": bids, "out": tmp_path / "out", "env": env,
            "calls": tmp_path / "calls"}


def run_script(bench, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SLURM / script), *map(str, args)],
                          env={**bench["env"], **env}, capture_output=True, text=True,
                          timeout=60)


def calls(bench) -> list[list[str]]:
    path = bench["calls"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(("task", "label"), [("1", "01"), ("2", "07"), ("3", "12")])
def test_task_runs_its_participant_with_its_cpus(bench, task, label):
    result = run_script(bench, "participant_array.sbatch", bench["bids"], bench["out"],
                        "--config", "c.toml", SLURM_ARRAY_TASK_ID=task,
                        SLURM_CPUS_PER_TASK="3")
    assert result.returncode == 0, result.stderr
    assert calls(bench) == [["synaptech-bids", str(bench["bids"]), str(bench["out"]),
                             "participant", "--participant-label", label,
                             "--omp-nthreads", "3", "--config", "c.toml"]]
    assert f"sub-{label} on " in result.stdout and "3 thread(s)" in result.stdout
    assert f"sub-{label} exit 0, wall" in result.stdout


def test_task_fails_with_the_apps_status(bench):
    result = run_script(bench, "participant_array.sbatch", bench["bids"], bench["out"],
                        SLURM_ARRAY_TASK_ID="1", STAND_IN_EXIT="65")
    assert result.returncode == 65
    assert "sub-01 exit 65," in result.stdout


def test_task_without_participant_row_fails(bench):
    result = run_script(bench, "participant_array.sbatch", bench["bids"], bench["out"],
                        SLURM_ARRAY_TASK_ID="4")
    assert result.returncode == 64
    assert "no participant on data row 4" in result.stderr
    assert calls(bench) == []


def test_outside_an_array_the_script_refuses(bench):
    result = run_script(bench, "participant_array.sbatch", bench["bids"], bench["out"])
    assert result.returncode != 0 and "not an array task" in result.stderr


def test_singularity_and_podman_command_lines(bench):
    bids, out = str(bench["bids"]), str(bench["out"])
    run_script(bench, "participant_array.sbatch", bids, out, SLURM_ARRAY_TASK_ID="2",
               SLURM_CPUS_PER_TASK="2", SYNAPTECH_CONTAINER="singularity",
               SYNAPTECH_IMAGE="/img/app.sif", SYNAPTECH_BIND="/cfg")
    run_script(bench, "participant_array.sbatch", bids, out, SLURM_ARRAY_TASK_ID="2",
               SLURM_CPUS_PER_TASK="2", SYNAPTECH_CONTAINER="podman")
    app = [bids, out, "participant", "--participant-label", "07", "--omp-nthreads", "2"]
    singularity, podman = calls(bench)
    assert bench["out"].is_dir(), "a container mounts OUTPUT_DIR: it must exist first"
    assert singularity == ["singularity", "run", "--cleanenv", "-B", f"{bids}:{bids}:ro",
                           "-B", f"{out}:{out}", "-B", "/cfg:/cfg", "/img/app.sif", *app]
    user = (["--user", "0:0"] if os.geteuid() == 0 else ["--userns=keep-id"])
    assert podman == ["podman", "run", "--rm", "--read-only", "--tmpfs", "/tmp",
                      "--network", "none", *user, "-v", f"{bids}:{bids}:ro",
                      "-v", f"{out}:{out}", "synaptech/bids:latest", *app]


def test_unknown_container_is_refused(bench):
    result = run_script(bench, "participant_array.sbatch", bench["bids"], bench["out"],
                        SLURM_ARRAY_TASK_ID="1", SYNAPTECH_CONTAINER="docker")
    assert result.returncode == 64 and "SYNAPTECH_CONTAINER=docker" in result.stderr


def test_group_script_runs_the_group_level(bench):
    result = run_script(bench, "group.sbatch", bench["bids"], bench["out"], "-v",
                        SLURM_CPUS_PER_TASK="8")
    assert result.returncode == 0, result.stderr
    assert calls(bench) == [["synaptech-bids", str(bench["bids"]), str(bench["out"]),
                             "group", "--omp-nthreads", "8", "-v"]]


def test_job_scripts_share_one_run_app():
    def function(script: str) -> str:
        text = (SLURM / script).read_text()
        return text[text.index("run_app() {"):text.index("\n}\n", text.index("run_app() {"))]

    assert function("participant_array.sbatch") == function("group.sbatch")


def test_submit_makes_the_group_job_depend_on_the_array(bench):
    result = run_script(bench, "submit.sh", "--participant-opts", "--mem=3G --time=30",
                        "--group-opts", "--gres=gpu:1", "--max-parallel", "2",
                        bench["bids"], bench["out"], "--config", "c.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ARRAY_JOB=101", "GROUP_JOB=102"]
    array, group = calls(bench)
    logs = bench["out"] / "logs"
    assert logs.is_dir()
    bids, out = str(bench["bids"]), str(bench["out"])
    assert array == ["sbatch", "--parsable", "--array=1-3%2",
                     f"--output={logs}/%x_%A_%a.log", "--mem=3G", "--time=30",
                     str(SLURM / "participant_array.sbatch"), bids, out, "--config", "c.toml"]
    assert group == ["sbatch", "--parsable", "--dependency=afterok:101",
                     "--kill-on-invalid-dep=yes", f"--output={logs}/%x_%j.log",
                     "--gres=gpu:1", str(SLURM / "group.sbatch"), bids, out,
                     "--config", "c.toml"]


def test_submit_refuses_without_participants(bench, tmp_path):
    (bench["bids"] / "participants.tsv").write_text("participant_id\n")
    result = run_script(bench, "submit.sh", bench["bids"], bench["out"])
    assert result.returncode == 64 and "lists no participant" in result.stderr
    assert calls(bench) == []


def test_multinode_training_rendezvous_on_the_first_node(bench):
    result = run_script(bench, "train_multinode.sbatch", bench["bids"], bench["out"],
                        "--seed", "1", SLURM_JOB_NODELIST="node-[a-b]", SLURM_NNODES="2",
                        SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32",
                        SLURM_JOB_ID="77")
    assert result.returncode == 0, result.stderr
    scontrol, srun = calls(bench)
    assert scontrol == ["scontrol", "show", "hostnames", "node-[a-b]"]
    assert srun == ["srun", "--kill-on-bad-exit=1", "torchrun", "--nnodes=2",
                    "--nproc_per_node=4", "--rdzv_id=77", "--rdzv_backend=c10d",
                    "--rdzv_endpoint=node-a:20077", "--no-python", "synaptech-bids",
                    str(bench["bids"]), str(bench["out"]), "group", "--omp-nthreads", "8",
                    "--seed", "1"]
