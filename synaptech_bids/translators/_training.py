"""A small, resumable, deterministic torch training loop.

What it guarantees
------------------
* Determinism on CPU for a seed: the model is built and trained inside
  :func:`seeded` (a forked global RNG, so the caller's RNG is untouched,
  plus ``torch.use_deterministic_algorithms``), and the mini-batch order
  comes from a dedicated, seeded ``torch.Generator``.
* Exact resumption: a checkpoint (safetensors + JSON, no pickle) holds the
  model weights, the Adam moments and step counts, the global torch RNG
  state (dropout), the sampler generator state and the current epoch's
  permutation with the position in it, the AMP scaler, the running loss,
  the loss history and the early-stopping state (best loss, epoch, weights,
  patience counter). Resuming replays nothing and skips nothing, so the
  final weights are bit-identical to an uninterrupted run on the same
  machine and thread count.
* Early stopping on validation windows that the caller draws from whole
  *training* subjects; this module never sees held-out data.

Under ``torchrun`` (a process group set up by :mod:`synaptech_bids.distributed`)
the same loop trains with ``DistributedDataParallel`` (with more than one
rank; ``torchrun --nproc_per_node=1`` trains exactly as a plain run):

* every rank draws the same seeded permutation and takes the rank-strided
  share of each *global* batch (``batch_size`` stays the global batch, as a
  ``DistributedSampler`` over that permutation would give), and each rank's
  loss is weighted so that the averaged gradient is the gradient of the
  global batch: a run on N processes follows a one-process run with the
  same ``batch_size`` up to floating-point summation order;
* dropout draws from a per-rank stream (rank 0 keeps the plain run's);
* training and validation losses are summed over ranks, so the early
  stopping decision is the same on every rank;
* only rank 0 writes the checkpoint (with every rank's RNG state); on
  resume rank 0 reads it and broadcasts its bytes, so other nodes need not
  see rank 0's disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save
from torch import nn

from .. import distributed
from . import io as _io

logger = logging.getLogger(__name__)

#: Called after each epoch with that epoch's history row; returning True
#: stops training there (the checkpoint is already written), as a job
#: reaching its wall-time limit would.
StopHook = Callable[[dict[str, Any]], bool]

#: ``make_batch(indices, split)`` -> (x, y) tensors on the training device,
#: already normalised; ``split`` is "train" or "val".
MakeBatch = Callable[[np.ndarray, str], tuple[torch.Tensor, torch.Tensor]]

CHECKPOINT_NAME = "checkpoint"


@dataclass
class TrainConfig:
    """Optimisation settings (see :class:`SynaptechNetTranslator`)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10
    min_delta: float = 0.0
    seed: int = 0
    amp: bool = True
    restore_best: bool = True
    checkpoint_every_batches: int = 0


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    completed: bool = False
    stopped_early: bool = False


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; validates the others.

    Under torchrun on GPUs, a bare ``cuda`` is this process's own GPU
    (``LOCAL_RANK``, made current by :func:`synaptech_bids.distributed.session`).
    """
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None and distributed.active():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch and switch on deterministic algorithms, restoring both after.

    ``fork_rng`` saves and restores the global RNG so that fitting a model
    does not change the random stream of the caller.
    """
    cuda_devices = [device] if device.type == "cuda" else []
    if device.type == "cuda":
        # cuBLAS needs this to be deterministic; only effective if set before
        # the first cuBLAS call of the process.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn


# ----------------------------------------------------------- state <-> files
def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for pid, extra in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:  # JSON turned the tuple into a list
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _state_to_numpy(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in sd.items()}


def _numpy_to_state(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith(prefix)}


# -------------------------------------------------------------------- loop
def _evaluate(
    model: nn.Module, make_batch: MakeBatch, n: int, bs: int, device: torch.device, amp_dtype: Any
) -> float:
    """Mean squared error over the ``n`` validation windows (eval mode).

    Under DDP each rank scores every ``world_size``-th window and the sums
    are added up over ranks, so every rank returns the same number.
    """
    rank, world = distributed.rank(), distributed.world_size()
    mine = np.arange(rank, n, world)
    model.eval()
    sse, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(mine), bs):
            x, y = make_batch(mine[start : start + bs], "val")
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
            sse += float(nn.functional.mse_loss(out.float(), y, reduction="sum"))
            count += y.numel()
    model.train()
    if world > 1:
        sse, count = distributed.all_reduce_sum([sse, count])
    return sse / max(count, 1)


def _rank_seed(seed: int, rank: int) -> int:
    # A stream per rank for dropout; rank 0 keeps the plain run's stream.
    return (int(seed) * 1_000_003 + 7919 * rank) % (2**63)


def _pack(tensors: dict[str, np.ndarray], meta: dict) -> bytes:
    header = json.dumps(meta).encode()
    return len(header).to_bytes(8, "little") + header + _st_save(tensors)


def _unpack(blob: bytes) -> tuple[dict[str, np.ndarray], dict]:
    n = int.from_bytes(blob[:8], "little")
    return _st_load(blob[8 + n :]), json.loads(blob[8 : 8 + n])


def _read_checkpoint(ckpt: Path | None) -> tuple[dict[str, np.ndarray], dict] | None:
    """The checkpoint, read by rank 0 and broadcast as bytes (None if absent)."""
    if ckpt is None:
        return None
    if not distributed.active():
        return _io.load_tensors_json(ckpt) if _io.exists(ckpt) else None
    blob = None
    if distributed.is_main() and _io.exists(ckpt):
        blob = _pack(*_io.load_tensors_json(ckpt))
    blob = distributed.broadcast_bytes(blob)
    return _unpack(blob) if blob else None


def _byte_tensor(raw: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def _rng_state_bytes(device: torch.device) -> bytes:
    cpu = torch.get_rng_state().numpy().tobytes()
    cuda = torch.cuda.get_rng_state(device).numpy().tobytes() if device.type == "cuda" else b""
    return len(cpu).to_bytes(8, "little") + cpu + cuda


def train(
    model: nn.Module,
    make_batch: MakeBatch,
    n_train: int,
    n_val: int,
    cfg: TrainConfig,
    device: torch.device,
    checkpoint_dir: str | os.PathLike | None = None,
    stop_hook: StopHook | None = None,
    fingerprint: str = "",
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` with MSE and Adam, with early stopping and checkpoints.

    Parameters
    ----------
    model : nn.Module
        Already on ``device``; built inside :func:`seeded`.
    make_batch : callable
        ``make_batch(indices, split) -> (x, y)``; indices are positions in the
        training (``split="train"``) or validation subset.
    n_train, n_val : int
        Sizes of the two subsets (``n_val=0`` disables early stopping).
    cfg : TrainConfig
        ``batch_size`` is the global batch, over all ranks under torchrun.
    device : torch.device
    checkpoint_dir : path-like, optional
        Where ``checkpoint.safetensors`` / ``.json`` live. An existing
        checkpoint with the same ``fingerprint`` is resumed. Under torchrun
        only rank 0 reads and writes it.
    stop_hook : callable, optional
        See :data:`StopHook`.
    fingerprint : str
        Identifies data and configuration; a checkpoint with another
        fingerprint is refused rather than silently mixed in.
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    TrainResult
        ``completed`` is False when ``stop_hook`` interrupted the run.
    """
    if n_train < 1:
        raise ValueError("no training windows")
    use_cuda = device.type == "cuda"
    amp_dtype = None
    if cfg.amp and use_cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    bs = int(cfg.batch_size)
    n_batches = math.ceil(n_train / bs)
    dist_on = distributed.active()
    rank, world = distributed.rank(), distributed.world_size()
    is_main = rank == 0

    st: dict[str, Any] = {
        "epoch": 0,
        "batch": 0,
        "run_loss": 0.0,
        "run_n": 0,
        "history": [],
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "done": False,
        "stopped_early": False,
    }
    # this rank's share of the running loss, not yet summed over ranks
    local = {"loss": 0.0, "n": 0}
    perm: torch.Tensor | None = None
    best_state: dict[str, torch.Tensor] | None = None
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    def flush_loss() -> None:
        loss, n = local["loss"], local["n"]
        if world > 1:
            loss, n = distributed.all_reduce_sum([loss, n])
        st["run_loss"] += loss
        st["run_n"] += int(n)
        local["loss"], local["n"] = 0.0, 0

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        flush_loss()
        rng_states = distributed.all_gather_bytes(_rng_state_bytes(device)) if dist_on else []
        if not is_main:
            return
        tensors: dict[str, Any] = _state_to_numpy(model.state_dict(), "model.")
        if best_state is not None:
            tensors.update(_state_to_numpy(best_state, "best."))
        opt_t, opt_meta = _flatten_optimizer(opt)
        tensors.update({k: v.detach().cpu().numpy().copy() for k, v in opt_t.items()})
        tensors["rng.torch"] = torch.get_rng_state().numpy()
        tensors["rng.sampler"] = gen.get_state().numpy()
        if use_cuda:
            tensors["rng.cuda"] = torch.cuda.get_rng_state(device).numpy()
        for r, blob in enumerate(rng_states):
            tensors[f"rng.rank{r}"] = np.frombuffer(blob, np.uint8).copy()
        if perm is not None:
            tensors["sampler.perm"] = perm.numpy()
        meta = {
            "kind": "synaptech-bids training checkpoint",
            "fingerprint": fingerprint,
            "state": st,
            "optimizer": opt_meta,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "has_best": best_state is not None,
            "world_size": world,
        }
        _io.save_tensors_json(ckpt, tensors, meta)

    saved = _read_checkpoint(ckpt)
    if saved is not None:
        tensors, meta = saved
        if meta.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint {ckpt} was written for other data or settings; "
                "remove it or use another checkpoint directory"
            )
        tt = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
        model.load_state_dict(
            {k: v.to(device) for k, v in _numpy_to_state(tensors, "model.").items()}
        )
        if meta.get("has_best"):
            best_state = _numpy_to_state(tensors, "best.")
        _unflatten_optimizer(
            opt,
            {k: v.to(device) for k, v in tt.items() if k.startswith("optim.")},
            meta["optimizer"],
        )
        if meta.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tt["rng.torch"])
        gen.set_state(tt["rng.sampler"])
        if use_cuda and "rng.cuda" in tt:
            torch.cuda.set_rng_state(tt["rng.cuda"], device)
        if world > 1:
            own = tensors.get(f"rng.rank{rank}")
            if own is not None and int(meta.get("world_size", 1)) == world:
                raw = own.tobytes()
                n_cpu = int.from_bytes(raw[:8], "little")
                torch.set_rng_state(_byte_tensor(raw[8 : 8 + n_cpu]))
                if use_cuda and len(raw) > 8 + n_cpu:
                    torch.cuda.set_rng_state(_byte_tensor(raw[8 + n_cpu :]), device)
            elif rank > 0:
                # another world size: weights, optimiser and batch order carry
                # over exactly; dropout continues from a fresh per-rank stream
                torch.manual_seed(_rank_seed(cfg.seed, rank) + int(meta["state"]["epoch"]))
        perm = tt.get("sampler.perm")
        st.update(meta["state"])
        if log and is_main:
            log(f"resumed from {ckpt} at epoch {st['epoch']}, batch {st['batch']}")
    elif world > 1 and rank > 0:
        torch.manual_seed(_rank_seed(cfg.seed, rank))

    net: nn.Module = model
    if world > 1:  # alone in the world (torchrun x1) there is nothing to synchronise
        from torch.nn.parallel import DistributedDataParallel

        # The constructor broadcasts rank 0's weights: every rank starts equal.
        net = DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    has_buffers = world > 1 and any(True for _ in model.buffers())

    model.train()
    interrupted = False
    every = int(cfg.checkpoint_every_batches)
    while not st["done"]:
        t0 = time.perf_counter()
        if perm is None:
            perm = torch.randperm(n_train, generator=gen)
            st["batch"], st["run_loss"], st["run_n"] = 0, 0.0, 0
        while st["batch"] < n_batches:
            b = st["batch"]
            idx = perm[b * bs : (b + 1) * bs].numpy()
            n_global, weight = len(idx), 1.0
            if world > 1:
                # this rank's share of the global batch (DistributedSampler order)
                idx = idx[rank::world]
                if len(idx) == 0:  # a last batch smaller than the world
                    idx, weight = perm[b * bs : b * bs + 1].numpy(), 0.0
            x, y = make_batch(idx, "train")
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = net(x)
            if world > 1:
                # DDP averages gradients over ranks; weighting each rank's sum
                # by world / global size makes that the global batch's mean
                sse = nn.functional.mse_loss(out.float(), y, reduction="sum") * weight
                per_window = y[0].numel()
                loss = sse * (world / (n_global * per_window))
                local["loss"] += float(sse.detach()) / per_window
                local["n"] += int(len(idx) * weight)
            else:
                loss = nn.functional.mse_loss(out.float(), y)
                local["loss"] += float(loss.detach()) * len(idx)
                local["n"] += len(idx)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            st["batch"] = b + 1
            if every > 0 and st["batch"] % every == 0 and st["batch"] < n_batches:
                save_checkpoint()
        flush_loss()
        train_loss = st["run_loss"] / max(st["run_n"], 1)
        val_loss = math.nan
        if n_val > 0:
            if has_buffers:
                # batch-norm statistics drift apart per rank; score with rank 0's
                import torch.distributed as dist

                for buf in model.buffers():
                    dist.broadcast(buf, 0)
            val_loss = _evaluate(model, make_batch, n_val, bs, device, amp_dtype)
        st["epoch"] += 1
        row = {
            "epoch": st["epoch"],
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": opt.param_groups[0]["lr"],
            "time_s": round(time.perf_counter() - t0, 4),
        }
        st["history"].append(row)
        if n_val > 0:
            if val_loss < st["best_val_loss"] - cfg.min_delta:
                st["best_val_loss"], st["best_epoch"], st["bad_epochs"] = val_loss, st["epoch"], 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                st["bad_epochs"] += 1
                if st["bad_epochs"] >= cfg.patience:
                    st["done"], st["stopped_early"] = True, True
        if st["epoch"] >= cfg.max_epochs:
            st["done"] = True
        perm = None
        save_checkpoint()
        if log and is_main:
            log(
                f"epoch {row['epoch']}: train {train_loss:.5g} val {val_loss:.5g} "
                f"({row['time_s']:.2f} s)"
            )
        if not st["done"] and stop_hook is not None and stop_hook(dict(row)):
            interrupted = True
            break

    if not interrupted and cfg.restore_best and best_state is not None:
        model.load_state_dict({k: v.to(device) for k, v in best_state.items()})
    return TrainResult(
        history=[dict(r) for r in st["history"]],
        best_epoch=int(st["best_epoch"]),
        best_val_loss=float(st["best_val_loss"]),
        completed=not interrupted,
        stopped_early=bool(st["stopped_early"]),
    )
