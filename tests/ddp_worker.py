"""A process started by ``tests/test_distributed.py``, alone or under ``torchrun``.

Two modes:

``fit OUT [--max-epochs N] [--stop-after N] [--checkpoint-dir DIR]``
    Trains a tiny Synaptech-Net on fixed random data and writes, per rank,
    ``OUT/rank-<r>.npz`` (its final weights) and ``OUT/rank-<r>.json`` (their
    digest, the history, whether it completed).
``group BIDS OUT [cli options]``
    Runs the real command line, ``synaptech-bids BIDS OUT group``, with the
    participant derivatives replaced by a small simulated world (reading real
    ones takes minutes of preprocessing; the group level is what is tested).

Both record, per rank, every file this process creates, opens for writing,
renames or removes under ``AUDIT_ROOT`` (Python audit hooks see every
``open``, ``os.rename``/``os.replace``, ``os.mkdir``, ``os.remove``), in
``AUDIT_DIR/audit-rank-<r>.tsv``, so the test can tell who wrote what.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

N_EEG, N_MEG, N_TIMES, SFREQ = 10, 6, 48, 200.0


def _install_audit(root: Path, log_path: Path) -> None:
    root = root.resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")  # opened before the hook: not audited  # noqa: SIM115
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path: object) -> str | None:
        if isinstance(path, int | bytes) or path is None:
            return None
        try:
            p = Path(os.fspath(path)).resolve()
        except (TypeError, ValueError, OSError):
            return None
        return str(p) if p == root or root in p.parents else None

    def hook(event: str, args: tuple) -> None:
        try:
            if event == "open":
                path, mode, flags = args
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    mode is None and isinstance(flags, int) and flags & write_flags
                )
                where = inside(path) if writing else None
            elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
                where = inside(args[1] if event == "os.rename" else args[0])
            else:
                return
            if where is not None:
                log.write(f"{event}\t{where}\n")
                log.flush()
        except Exception:  # an audit hook must never break the code it watches
            pass

    sys.addaudithook(hook)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def fit_data(seed: int = 0, n_subjects: int = 4, n_windows: int = 10):
    """EEG -> MEG through a fixed spatial map plus noise, ``n_subjects`` subjects."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((N_MEG, N_EEG)) / np.sqrt(N_EEG)
    eeg = rng.standard_normal((n_subjects * n_windows, N_EEG, N_TIMES)).astype(np.float32)
    meg = np.einsum("me,wet->wmt", mix, eeg)
    meg = (meg + 0.3 * rng.standard_normal(meg.shape)).astype(np.float32)
    groups = np.repeat([f"s{i}" for i in range(n_subjects)], n_windows)
    return eeg, meg, groups


def _fit(argv: list[str]) -> None:
    import argparse

    import torch

    from synaptech_bids import distributed
    from synaptech_bids.translators import SynaptechNetTranslator

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--stop-after", type=int, default=0)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    eeg, meg, groups = fit_data()
    hook = (lambda row: row["epoch"] >= args.stop_after) if args.stop_after else None
    with distributed.session("cpu") as info:
        net = SynaptechNetTranslator(
            channels=(8, 16), lstm_hidden=8, batch_size=args.batch_size,
            max_epochs=args.max_epochs, patience=50, seed=3, device="cpu",
            dropout=args.dropout, checkpoint_every_batches=2,
        ).fit(eeg, meg, groups, checkpoint_dir=args.checkpoint_dir, stop_hook=hook,
              log=lambda line: print(f"[rank {info.rank}] {line}", flush=True))
    weights = {k: v.numpy() for k, v in net.model_.state_dict().items()}
    digest = hashlib.sha256()
    for key, value in weights.items():
        digest.update(key.encode() + value.tobytes())
    result = {
        "rank": info.rank, "world_size": info.world_size,
        "weights_sha256": digest.hexdigest(), "completed": net.completed_,
        "history": [{k: v for k, v in r.items() if k != "time_s"} for r in net.history_],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"rank-{info.rank}.npz", **weights)
    (args.out / f"rank-{info.rank}.json").write_text(json.dumps(result))


def _group(argv: list[str]) -> None:
    from types import SimpleNamespace

    from synaptech_bids import cli
    from synaptech_bids.group import run

    rng = np.random.default_rng(7)
    subjects = ["01", "02", "03", "04"]
    mix = rng.standard_normal((N_MEG, N_EEG)) / np.sqrt(N_EEG)
    arrays = {}
    for s in subjects:
        own = mix + 0.2 * rng.standard_normal(mix.shape)  # heads differ a little
        eeg = rng.standard_normal((12, N_EEG, N_TIMES)).astype(np.float32)
        meg = np.einsum("me,wet->wmt", own, eeg) + 0.3 * rng.standard_normal((12, N_MEG, N_TIMES))
        arrays[s] = (eeg, meg.astype(np.float32), np.array(["face", "scrambled"] * 6))
    eeg_names = [f"EEG{i:03d}" for i in range(1, N_EEG + 1)]
    mag_names = [f"MEG{i:03d}1" for i in range(1, N_MEG + 1)]
    # head positions (magnetometers in head coordinates, m), a few mm apart
    positions = {s: 0.09 * rng.standard_normal((N_MEG, 3)) for s in subjects}
    run.gather = lambda output_dir, wanted, *_: [
        SimpleNamespace(subject=s, info={"sfreq": SFREQ}, files=s, logs=[]) for s in wanted
    ]
    run.common_channels = lambda derivatives: (eeg_names, mag_names, {})
    # whichever reader run.py uses (in memory, or memory-mapped via a scratch folder)
    run.cache_subject = lambda deriv, eeg_n, mag_n, *scratch: arrays[deriv.subject]
    run.read_run_infos = lambda files: []  # no recordings, hence no SSP projectors
    try:  # the head-transfer table reads epochs files' infos
        from synaptech_bids.group import transfer

        transfer.read_run_infos = lambda files: files
        transfer.magnetometer_positions_head = lambda infos, names: positions[infos]
    except ImportError:
        pass
    cli.main(argv)


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    audit_root = os.environ.get("AUDIT_ROOT")
    if audit_root:
        log = Path(os.environ["AUDIT_DIR"]) / f"audit-rank-{_rank()}.tsv"
        _install_audit(Path(audit_root), log)
    if mode == "fit":
        _fit(rest)
    elif mode == "group":
        _group(rest)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
