"""Pickle-free persistence: tensors in safetensors, everything else in JSON.

A saved object is a pair of files sharing one stem::

    <stem>.safetensors   named arrays (weights, statistics, optimiser moments)
    <stem>.json          metadata: format, class, configuration, fitted scalars

Nothing here executes code from the files it reads (no pickle, no
``torch.load``), so a model downloaded from elsewhere cannot run anything on
load. Writes are atomic (temporary file, then ``os.replace``) so that a job
killed while checkpointing leaves the previous checkpoint intact, which is
what makes resuming after a SLURM pre-emption safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from ..bids_io.atomic import atomic_path, json_default, write_text

#: Version of the on-disk layout; bump when the JSON schema changes.
FORMAT_VERSION = 1

_SUFFIXES = (".safetensors", ".json")


def split_stem(path: str | os.PathLike) -> Path:
    """Return the common stem of a ``.safetensors`` / ``.json`` pair.

    Parameters
    ----------
    path : str or path-like
        Either the stem itself or either of the two file names.

    Returns
    -------
    stem : Path
        ``path`` without a trailing ``.safetensors`` or ``.json``.
    """
    p = Path(path)
    if p.suffix in _SUFFIXES:
        return p.with_suffix("")
    return p


def _to_numpy(value: Any) -> np.ndarray:
    # torch tensors are converted lazily so that this module does not import
    # torch (the linear translators do not need it).
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError("object arrays cannot be stored in safetensors")
    return np.ascontiguousarray(arr)


def save_tensors_json(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> tuple[Path, Path]:
    """Write ``tensors`` to ``<stem>.safetensors`` and ``meta`` to ``<stem>.json``.

    Parameters
    ----------
    path : str or path-like
        Stem, or a name ending in ``.safetensors`` / ``.json``.
    tensors : mapping of str to array-like
        Arrays (numpy or torch) of any shape; stored bit-exactly.
    meta : mapping
        JSON-serialisable metadata (numpy scalars and arrays are converted).

    Returns
    -------
    st_path, json_path : Path
        The two files written.

    Notes
    -----
    The JSON records the SHA-256 of the safetensors file, checked on load,
    so that a mismatched pair (one file replaced, the other not) is refused
    instead of silently producing a different model.
    """
    stem = split_stem(path)
    st_path = stem.with_name(stem.name + ".safetensors")
    json_path = stem.with_name(stem.name + ".json")
    arrays = {str(k): _to_numpy(v) for k, v in tensors.items()}
    # safetensors.numpy only writes to a path; write beside the target and
    # rename, so that a reader never sees a half-written file.
    with atomic_path(st_path) as tmp:
        save_file(arrays, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    full_meta = dict(meta)
    full_meta["format_version"] = FORMAT_VERSION
    full_meta["tensors_file"] = st_path.name
    full_meta["tensors_sha256"] = digest
    write_text(json_path, json.dumps(full_meta, indent=2, sort_keys=True,
                                     default=json_default) + "\n")
    return st_path, json_path


def load_tensors_json(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a pair written by :func:`save_tensors_json`.

    Parameters
    ----------
    path : str or path-like
        Stem, or either of the two file names.

    Returns
    -------
    tensors : dict of str to ndarray
        The stored arrays.
    meta : dict
        The JSON metadata.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If the format is newer than this code or the checksum does not match.
    """
    stem = split_stem(path)
    st_path = stem.with_name(stem.name + ".safetensors")
    json_path = stem.with_name(stem.name + ".json")
    with open(json_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    version = int(meta.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{json_path} has format version {version}; this code reads up to "
            f"{FORMAT_VERSION}. Upgrade synaptech-bids."
        )
    with open(st_path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    expected = meta.get("tensors_sha256")
    if expected is not None and expected != digest:
        raise ValueError(f"{st_path} does not match the checksum recorded in {json_path}")
    tensors = load_file(str(st_path))
    return tensors, meta


def exists(path: str | os.PathLike) -> bool:
    """Whether both files of the pair at ``path`` exist."""
    stem = split_stem(path)
    return (
        stem.with_name(stem.name + ".safetensors").is_file()
        and stem.with_name(stem.name + ".json").is_file()
    )


def array_fingerprint(*arrays: np.ndarray | None) -> str:
    """SHA-256 over shapes, dtypes and bytes of ``arrays``.

    Used to refuse resuming a checkpoint with different training data.
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.asarray(a)
        if a.dtype == object:
            a = a.astype(str)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
