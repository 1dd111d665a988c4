"""Atomic writes: a file is either absent, the old one, or complete.

Many participant jobs share one derivatives folder (a SLURM array writes
``dataset_description.json`` from every task at once), and a job can be
killed mid-write. Every output is therefore written to a temporary file in
the same directory and renamed over its target: ``os.replace`` is atomic on
POSIX file systems, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    Parameters
    ----------
    target : path-like
        The final file.
    suffix : str | None
        Suffix of the temporary file, for writers that check extensions
        (MNE insists on names such as ``-epo.fif``); defaults to the
        target's own suffixes.

    Notes
    -----
    On an exception the temporary file is removed and ``target`` is left as
    it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".part{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give outputs the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (keys in insertion order), atomically."""
    return write_text(target, json.dumps(data, indent=2, default=json_default) + "\n")


def write_tsv(target: str | Path, table: pd.DataFrame) -> Path:
    """Write a table as BIDS TSV (tab-separated, ``n/a`` for missing), atomically."""
    with atomic_path(target) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.8g")
    return Path(target)


def json_default(value: Any) -> Any:  # also used by translators.io
    """Serialise numpy scalars and arrays, and paths."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
