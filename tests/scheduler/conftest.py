"""A real single-node SLURM for the scheduler tests, and their collection rule.

The tests in this folder submit jobs to SLURM (minutes); like
``tests/container``, they are collected only when this folder, or a file in
it, is named on the command line (``make test-scheduler``: ``pytest
tests/scheduler``), never by the unit suite.

The ``slurm`` fixture writes a ``slurm.conf`` into a temporary folder that
names this host (``hostname -s``) as controller and only node, with the CPUs
of ``nproc`` and most of its memory, then starts ``munged`` (its own key and
socket), ``slurmctld`` and ``slurmd`` in the foreground as children of the
test process (root is needed: ``docker/prepare_slurm.sh`` installs Debian's
``slurm-wlm`` and ``munge``), waits until ``sinfo`` shows the node idle, and
stops them by process id at the end. It fails, never skips, when SLURM
cannot start, with the daemons' last log lines as the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SBIN = ("/usr/sbin", "/sbin")


def pytest_ignore_collect(collection_path, config):
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if any(path == HERE or HERE in path.parents for path in named):
        return None
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


@dataclass
class SlurmCluster:
    """A running single-node SLURM: its configuration and its daemons."""

    root: Path
    conf: Path
    node: str
    cpus: int
    jobcomp: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM's client commands (``SLURM_CONF`` set)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), *SBIN])
        return env

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a SLURM client command; its output as text."""
        return subprocess.run(args, env=kwargs.pop("env", self.env), capture_output=True,
                              text=True, check=check, timeout=60, **kwargs)

    def logs(self) -> str:
        """The last lines of every daemon's log, for failure messages."""
        parts = []
        for name in ("munged", "slurmctld", "slurmd"):
            path = self.root / "log" / f"{name}.log"
            text = path.read_text(errors="replace") if path.is_file() else "(no log)"
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(parts)

    def job(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job`` as one dict per job (array tasks are separate jobs)."""
        out = self.run("scontrol", "--oneliner", "show", "job", job_id).stdout
        return [dict(item.split("=", 1) for item in line.split() if "=" in item)
                for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Stop the daemons, by their process ids, newest first."""
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _which(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))
    if path is None:
        pytest.fail(f"{name} not found: run `bash docker/prepare_slurm.sh` (as root) "
                    "to install Debian's slurm-wlm and munge")
    return path


def write_config(root: Path) -> SlurmCluster:
    """Write munge's key and a single-node ``slurm.conf`` under ``root``."""
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cpus = os.cpu_count() or 1
    for sub in ("log", "state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    jobcomp = root / "log" / "jobcomp.txt"
    conf = root / "slurm.conf"
    conf.write_text(f"""\
# A single-node test cluster (tests/scheduler/conftest.py).
ClusterName=synaptech-test
SlurmctldHost={node}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / 'munge' / 'munge.socket'}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
# No accounting database: finished jobs stay in `scontrol show job` for an
# hour, and every job's end (state, exit code) is appended to this file.
JobCompType=jobcomp/filetxt
JobCompLoc={jobcomp}
MinJobAge=3600
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={node} CPUs={cpus} RealMemory={int(_memory_mb() * 0.8)} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return SlurmCluster(root=root, conf=conf, node=node, cpus=cpus, jobcomp=jobcomp)


def start(cluster: SlurmCluster, timeout: float = 60.0) -> None:
    """Start munged, slurmctld and slurmd; return when the node is idle."""
    if os.geteuid() != 0:
        pytest.fail("the scheduler tests start munged, slurmctld and slurmd: run them as root")
    root, log = cluster.root, cluster.root / "log"
    commands = {
        "munged": [_which("munged"), "--foreground", "--force",
                   f"--key-file={root / 'munge' / 'munge.key'}",
                   f"--socket={root / 'munge' / 'munge.socket'}",
                   f"--pid-file={root / 'munge' / 'munged.pid'}",
                   f"--seed-file={root / 'munge' / 'munged.seed'}",
                   f"--log-file={log / 'munged.log'}"],
        # -i: ignore state from an earlier cluster (there is none; the folder is new)
        "slurmctld": [_which("slurmctld"), "-D", "-i", "-f", str(cluster.conf)],
        "slurmd": [_which("slurmd"), "-D", "-f", str(cluster.conf)],
    }
    for name, command in commands.items():
        with open(log / f"{name}.out", "w") as out:
            cluster.processes[name] = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=cluster.env,
                start_new_session=True)
        if name == "munged":
            _wait_for(lambda: (root / "munge" / "munge.socket").exists(), 20, cluster,
                      "munged did not create its socket")
    state = ""

    def node_idle() -> bool:
        nonlocal state
        result = cluster.run("sinfo", "--noheader", "--Node", "--format=%T", check=False)
        state = (result.stdout + result.stderr).strip()
        return result.returncode == 0 and state.rstrip("*") == "idle"

    _wait_for(node_idle, timeout, cluster, "the node did not become idle",
              lambda: f"sinfo says {state!r}")


def _wait_for(condition, timeout: float, cluster: SlurmCluster, what: str,
              detail=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = {n: p.returncode for n, p in cluster.processes.items() if p.poll() is not None}
        if dead:
            cluster.stop()
            pytest.fail(f"SLURM could not start: {dead} exited\n{cluster.logs()}")
        if condition():
            return
        time.sleep(0.5)
    cluster.stop()
    pytest.fail(f"SLURM could not start: {what} within {timeout:.0f} s {detail()}\n"
                f"{cluster.logs()}")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A running single-node SLURM; its daemons are stopped at the end."""
    # A short path: munge's socket path must fit in a Unix socket address.
    root = Path(tmp_path_factory.mktemp("slurm"))
    cluster = write_config(root)
    started = time.monotonic()
    start(cluster)
    print(f"SLURM up in {time.monotonic() - started:.1f} s (node {cluster.node}, "
          f"{cluster.cpus} CPUs, config {cluster.conf})")
    try:
        yield cluster
    finally:
        cluster.stop()
