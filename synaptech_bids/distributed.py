"""Several processes under ``torchrun``: the environment, the process group, rank 0.

``torchrun`` (PyTorch's launcher, also under ``srun`` on a cluster) starts one
process per GPU or CPU worker and tells each who it is through ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address. The group level
enters :func:`session`, which joins the process group (NCCL on GPUs, gloo on
CPUs) and leaves it at the end. Inside it every rank runs the same
evaluation, Synaptech-Net trains with ``DistributedDataParallel`` (see
:mod:`synaptech_bids.translators._training`), and only rank 0
(:func:`is_main`) writes outputs, checkpoints and reports.

Without ``WORLD_SIZE`` in the environment nothing here imports
``torch.distributed`` or starts anything: a plain run is exactly what it was.

Collectives (:func:`all_reduce_sum`, :func:`broadcast_bytes`,
:func:`all_gather_bytes`) move numbers and bytes, never pickles, so that a
checkpoint that rank 0 read is handed to the other ranks as the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds a rank waits in a collective for the others (``SYNAPTECH_DIST_TIMEOUT_S``).
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class DistEnv:
    """Who this process is, from the launcher's environment variables.

    Attributes
    ----------
    rank : int
        Global rank (``RANK``), 0 on a plain run.
    world_size : int
        Number of processes (``WORLD_SIZE``), 1 on a plain run.
    local_rank : int
        Rank on this node (``LOCAL_RANK``): the GPU this process uses.
    local_world_size : int
        Processes on this node (``LOCAL_WORLD_SIZE``): they share its CPUs.
    launched : bool
        Whether a launcher set ``WORLD_SIZE`` (even to 1).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launched: bool = False


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        return default


def env() -> DistEnv:
    """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``.

    Returns
    -------
    DistEnv
        ``launched=False`` (and a world of one) when ``WORLD_SIZE`` is unset.

    Raises
    ------
    ValueError
        When the variables contradict each other (a rank outside the world).
    """
    if not os.environ.get("WORLD_SIZE"):
        return DistEnv()
    world = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local_world = _int_env("LOCAL_WORLD_SIZE", world)
    local = _int_env("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or not 0 <= local < max(local_world, 1):
        raise ValueError(
            f"inconsistent launcher environment: RANK={rank} WORLD_SIZE={world} "
            f"LOCAL_RANK={local} LOCAL_WORLD_SIZE={local_world}"
        )
    return DistEnv(rank, world, local, max(local_world, 1), True)


def _dist() -> Any:
    """``torch.distributed`` when a process group is up, else None."""
    import sys

    if "torch" not in sys.modules:  # never import torch for a plain run's sake
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def active() -> bool:
    """Whether this process is in an initialised process group."""
    return _dist() is not None


def rank() -> int:
    """Global rank (0 without a process group)."""
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def is_main() -> bool:
    """True on the one process that writes outputs (rank 0, or a plain run)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing to wait for on a plain run)."""
    dist = _dist()
    if dist is not None:
        dist.barrier()


def threads_per_process(n_threads: int) -> int:
    """Share ``n_threads`` CPU threads among the processes of this node.

    Two torchrun workers on a 2-core job get one thread each instead of
    two each (oversubscription slows both down).
    """
    return max(1, n_threads // env().local_world_size)


def _backend(device: str) -> str:
    import torch

    if device == "cpu":
        return "gloo"
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "nccl"
    return "gloo"


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[DistEnv]:
    """Join the process group for the duration of the block, when launched.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``cuda`` (or ``auto`` with a GPU) uses NCCL and pins each process to
        GPU ``LOCAL_RANK``; otherwise gloo on the CPU.

    Yields
    ------
    DistEnv
        A world of one, with nothing started, when ``WORLD_SIZE`` is unset.
    """
    info = env()
    if not info.launched:
        yield info
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():  # an outer session (or the caller) owns it
        yield info
        return
    backend = _backend(device)
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    timeout = datetime.timedelta(seconds=_int_env("SYNAPTECH_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    dist.init_process_group(backend=backend, timeout=timeout)
    logger.info("rank %d of %d (local %d), %s backend", info.rank, info.world_size,
                info.local_rank, backend)
    try:
        yield info
        # Nobody leaves before rank 0 has written everything: a scheduler
        # reading the exit of any rank as "done" then finds complete outputs.
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------- collectives
def _comm_device() -> Any:
    import torch

    dist = _dist()
    if dist is not None and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum ``values`` over all ranks (float64); the same result on every rank."""
    dist = _dist()
    if dist is None:
        return [float(v) for v in values]
    import torch

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """Rank ``src``'s ``data`` on every rank (other ranks pass anything, e.g. None)."""
    dist = _dist()
    if dist is None:
        return data or b""
    import numpy as np
    import torch

    dev = _comm_device()
    mine = data or b""
    size = torch.tensor([len(mine)], dtype=torch.int64, device=dev)
    dist.broadcast(size, src)
    n = int(size.item())
    if dist.get_rank() == src:
        buf = torch.from_numpy(np.frombuffer(mine, np.uint8).copy()).to(dev)
    else:
        buf = torch.empty(n, dtype=torch.uint8, device=dev)
    if n:
        dist.broadcast(buf, src)
    return buf.cpu().numpy().tobytes()


def all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's ``data``, in rank order, on every rank."""
    dist = _dist()
    if dist is None:
        return [data]
    import numpy as np
    import torch

    dev = _comm_device()
    world = dist.get_world_size()
    size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(max(longest, 1), dtype=torch.uint8, device=dev)
    buf[: len(data)] = torch.from_numpy(np.frombuffer(data, np.uint8).copy()).to(dev)
    out = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(out, buf)
    return [o[: int(s.item())].cpu().numpy().tobytes() for o, s in zip(out, sizes, strict=True)]
