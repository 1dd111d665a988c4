"""Group training under torchrun (DDP, gloo on the CPU), against a single process.

Each test starts real ``torchrun`` launchers running ``tests/ddp_worker.py``:

* two processes on one machine (``--standalone``) train to the same losses
  as one process with the same global batch, and their ranks stay identical;
* two "nodes" on localhost (``--nnodes=2``, a c10d rendezvous) give the
  same weights, bit for bit, as two processes on one node;
* a DDP run stopped after two epochs and started again resumes from rank 0's
  checkpoint and ends bit-identical to the uninterrupted run; rank 1 never
  writes a checkpoint;
* the group level (the real command line) scores held-out subjects as a
  single process does, and rank 0 alone writes each output, once.

Who wrote what is recorded by a Python audit hook in every process (see the
worker), not inferred from the files left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
TIMEOUT = 600


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _check(proc: subprocess.CompletedProcess) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return output


def _plain(*args: object, **env: str) -> str:
    cmd = [sys.executable, str(WORKER), *map(str, args)]
    return _check(subprocess.run(cmd, env=_env(**env), capture_output=True, text=True,
                                 timeout=TIMEOUT))


def _torchrun(*args: object, nproc: int = 2, **env: str) -> str:
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", str(WORKER),
           *map(str, args)]
    return _check(subprocess.run(cmd, env=_env(**env), capture_output=True, text=True,
                                 timeout=TIMEOUT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _result(out: Path, rank: int) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(out / f"rank-{rank}.npz") as weights:
        return json.loads((out / f"rank-{rank}.json").read_text()), dict(weights)


def _audit(directory: Path, rank: int) -> list[tuple[str, str]]:
    path = directory / f"audit-rank-{rank}.tsv"
    assert path.is_file(), f"rank {rank} did not run under the audit hook"
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()]


def test_environment_and_plain_session(monkeypatch):
    from synaptech_bids import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with distributed.session("cpu") as info:  # no launcher: nothing is started
        assert not info.launched and info.world_size == 1
        assert not distributed.active() and distributed.is_main()
        assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
        assert distributed.broadcast_bytes(b"abc") == b"abc"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.env() == distributed.DistEnv(3, 4, 1, 2, True)
    assert distributed.threads_per_process(8) == 4
    assert distributed.threads_per_process(1) == 1
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="inconsistent"):
        distributed.env()


def test_participant_level_refuses_torchrun(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from synaptech_bids.cli import app
    from synaptech_bids.errors import ExitCode

    bids = _fake_bids(tmp_path / "bids", ["01"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = CliRunner().invoke(app, [str(bids), str(tmp_path / "out"), "participant",
                                      "--skip-bids-validator"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "torchrun" in result.output


def test_torchrun_fit_matches_single_process_and_ranks_agree(tmp_path):
    """Two processes with the same global batch follow one process's losses."""
    _plain("fit", tmp_path / "one")
    _torchrun("fit", tmp_path / "two")
    single, single_w = _result(tmp_path / "one", 0)
    rank0, rank0_w = _result(tmp_path / "two", 0)
    rank1, _ = _result(tmp_path / "two", 1)
    assert single["world_size"] == 1 and rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights_sha256"] == rank1["weights_sha256"]  # ranks stay identical
    assert rank0["history"] == rank1["history"]  # the same early-stopping inputs
    # Same batches, gradient of the same global batch: equal up to summation order.
    for a, b in zip(single["history"], rank0["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]
    for key, value in single_w.items():
        np.testing.assert_allclose(rank0_w[key], value, atol=5e-3, err_msg=key)


def test_two_nodes_on_localhost_and_resume_under_ddp(tmp_path):
    """A c10d rendezvous over two launchers; a DDP checkpoint resumes exactly."""
    port = _free_port()
    reference = tmp_path / "nodes"
    common = ["fit", reference, "--dropout", "0.2", "--max-epochs", "4",
              "--checkpoint-dir", tmp_path / "ckpt-nodes"]
    nodes = [
        subprocess.Popen(
            [str(TORCHRUN), "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1",
             "--rdzv_backend=c10d", f"--rdzv_endpoint=localhost:{port}", "--rdzv_id=test",
             str(WORKER), *map(str, common)],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in (0, 1)
    ]
    for node in nodes:
        output, _ = node.communicate(timeout=TIMEOUT)
        assert node.returncode == 0, output[-6000:]
    whole0, _ = _result(reference, 0)
    whole1, _ = _result(reference, 1)
    assert whole0["world_size"] == 2 and whole0["completed"]
    assert whole0["weights_sha256"] == whole1["weights_sha256"]

    # The same training on one node, stopped after epoch 2, then started again.
    ckpt = tmp_path / "ckpt"
    audit = {"AUDIT_ROOT": str(ckpt), "AUDIT_DIR": str(tmp_path / "audit")}
    args = ["--dropout", "0.2", "--max-epochs", "4", "--checkpoint-dir", ckpt]
    _torchrun("fit", tmp_path / "part", *args, "--stop-after", "2", **audit)
    part, _ = _result(tmp_path / "part", 0)
    assert not part["completed"] and len(part["history"]) == 2
    assert (ckpt / "checkpoint.safetensors").is_file()
    rank1_writes = _audit(tmp_path / "audit", 1)
    rank0_writes = _audit(tmp_path / "audit", 0)
    assert rank1_writes == [], rank1_writes  # rank 1 never touches the checkpoint
    assert any(event == "os.rename" for event, _ in rank0_writes)

    output = _torchrun("fit", tmp_path / "resumed", *args)
    resumed0, _ = _result(tmp_path / "resumed", 0)
    resumed1, _ = _result(tmp_path / "resumed", 1)
    assert "resumed from" in output
    assert resumed0["completed"] and len(resumed0["history"]) == 4
    # Every rank's dropout stream, the optimiser and the sampler carried over:
    # bit-identical to the uninterrupted run (which ran on two "nodes").
    assert resumed0["weights_sha256"] == resumed1["weights_sha256"] == whole0["weights_sha256"]
    assert resumed0["history"] == whole0["history"]


def _fake_bids(root: Path, subjects: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "fake", "BIDSVersion": "1.9.0"}))
    (root / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{s}\n" for s in subjects))
    for s in subjects:
        (root / f"sub-{s}" / "ses-meg" / "meg").mkdir(parents=True)
    return root


def test_group_level_under_torchrun(tmp_path):
    """Held-out R² as in one process (within 0.02); rank 0 alone writes, once each."""
    bids = _fake_bids(tmp_path / "bids", ["01", "02", "03", "04"])
    config = tmp_path / "config.toml"
    config.write_text(
        'translators = ["ridge", "synaptechnet"]\nn_folds = 2\nridge_lags_ms = [0.0, 10.0]\n'
        "synaptechnet_width = 0.0625\nmax_epochs = 6\nbatch_size = 8\nlearning_rate = 0.01\n"
        "patience = 10\n"
    )
    # one thread per process: on a shared, busy machine two spinning OpenMP
    # threads per process made the plain run 30x slower than the DDP one
    options = ["group", "--config", config, "--skip-bids-validator", "-v", "--omp-nthreads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    _plain("group", bids, one, *options,
           AUDIT_ROOT=str(one), AUDIT_DIR=str(tmp_path / "audit-one"))
    log = _torchrun("group", bids, two, *options,
                    AUDIT_ROOT=str(two), AUDIT_DIR=str(tmp_path / "audit-two"))
    assert "rank 1 wrote nothing" in log

    def per_subject(out: Path) -> pd.Series:
        scores = pd.read_csv(out / "group" / "desc-translation_scores.tsv", sep="\t")
        return scores.groupby(["model", "subject"])["r2"].mean()

    r2_one, r2_two = per_subject(one), per_subject(two)
    assert r2_one.index.equals(r2_two.index)
    assert (r2_one - r2_two).abs().max() <= 0.02, pd.concat([r2_one, r2_two], axis=1)
    # deterministic linear model: the same number; the network learnt something
    np.testing.assert_allclose(r2_one["ridge"], r2_two["ridge"], rtol=1e-6)
    assert r2_two["synaptechnet"].mean() > 0.1

    def outputs(out: Path) -> set[str]:
        return {str(p.relative_to(out)) for p in out.rglob("*")
                if p.is_file() and p.relative_to(out).parts[0] != "work"}

    assert outputs(two) == outputs(one)
    assert not [name for name in outputs(two) if ".part" in name]  # no temporary leftovers
    # Rank 1: no rename, no file outside its own scratch folder in the work directory
    # (it may create the folders leading there).
    for event, path in _audit(tmp_path / "audit-two", 1):
        relative = Path(path).relative_to(two).parts
        if not relative:  # OUTPUT_DIR itself: mkdir(exist_ok) and the writability probe
            continue
        assert event != "os.rename" and relative[0] == "work", (event, path)
        assert event == "os.mkdir" or "rank-1" in relative, (event, path)
    # Rank 0: each output renamed into place exactly once.
    renamed = Counter(
        str(Path(path).relative_to(two)) for event, path in _audit(tmp_path / "audit-two", 0)
        if event == "os.rename" and Path(path).relative_to(two).parts[0] != "work"
    )
    assert set(renamed) == outputs(two)
    assert max(renamed.values()) == 1, renamed
