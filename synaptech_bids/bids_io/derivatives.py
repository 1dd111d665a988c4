"""The derivatives dataset: where it may live, its description, its provenance."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import AppError, ExitCode
from .atomic import write_json

PIPELINE_NAME = "synaptech-bids"
#: Set in the container image (see Dockerfile), so that provenance names it.
CONTAINER_ENV = "SYNAPTECH_CONTAINER_IMAGE"


def check_output_dir(bids_root: Path, output_dir: Path) -> Path:
    """Check that ``output_dir`` may be written, and create it.

    An output directory inside the input dataset would make the derivatives
    part of the raw data; BIDS allows it only as ``BIDS_DIR/derivatives/NAME``.

    Returns
    -------
    output_dir : Path
        The resolved output directory, which now exists.

    Raises
    ------
    AppError
        64 for an output inside the input dataset, 73 when it cannot be
        created or written.
    """
    bids_root = Path(bids_root).resolve()
    output_dir = Path(output_dir).resolve()
    if output_dir == bids_root or bids_root in output_dir.parents:
        relative = output_dir.relative_to(bids_root).parts
        if not (len(relative) == 2 and relative[0] == "derivatives"):
            raise AppError(
                f"OUTPUT_DIR {output_dir} is inside BIDS_DIR; use a folder outside "
                f"it or {bids_root / 'derivatives' / PIPELINE_NAME}",
                ExitCode.USAGE,
            )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        # Creating a file is the only reliable test: access() is wrong on
        # read-only mounts and for root, and ACLs may say otherwise.
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise AppError(
            f"cannot write to OUTPUT_DIR {output_dir}: {reason}",
            ExitCode.CANNOT_CREATE_OUTPUT,
        ) from err
    return output_dir


def container_image() -> str | None:
    """Return the container image this process runs in, if any."""
    return os.environ.get(CONTAINER_ENV) or None


def generated_by() -> dict[str, Any]:
    """Return this pipeline's ``GeneratedBy`` entry for BIDS-Derivatives."""
    entry: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": "https://github.com/synaptech/synaptech-bids",
    }
    image = container_image()
    if image:
        entry["Container"] = {"Type": "docker", "Tag": image}
    return entry


def write_dataset_description(
    output_dir: Path, source_description: dict, bids_root: Path
) -> Path:
    """Write the derivatives' ``dataset_description.json`` atomically.

    Every participant job calls this; each writes the same content and
    replaces the file in one rename, so concurrent jobs never leave it
    corrupt.
    """
    source: dict[str, Any] = {"URL": Path(bids_root).resolve().as_uri()}
    if source_description.get("DatasetDOI"):
        source["DOI"] = source_description["DatasetDOI"]
    if source_description.get("DatasetVersion"):
        source["Version"] = source_description["DatasetVersion"]
    description = {
        "Name": f"{PIPELINE_NAME} derivatives of "
        f"{source_description.get('Name', Path(bids_root).name)}",
        "BIDSVersion": source_description.get("BIDSVersion", "1.9.0"),
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by()],
        "SourceDatasets": [source],
    }
    return write_json(Path(output_dir) / "dataset_description.json", description)


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """Return what produced an output: versions, command line, machine, time."""
    import mne
    import mne_bids
    import numpy as np
    import scipy

    versions = {
        PIPELINE_NAME: __version__,
        "python": platform.python_version(),
        "mne": mne.__version__,
        "mne-bids": mne_bids.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # torch is only needed at group level
        pass
    return {
        "GeneratedBy": generated_by(),
        "Versions": versions,
        "Threads": threads_in_use(),
        "CommandLine": command if command is not None else sys.argv,
        "Platform": platform.platform(),
        "DateTime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def threads_in_use() -> dict[str, int]:
    """Return the size of each thread pool the process computes with now.

    BLAS and OpenMP pools as ``threadpoolctl`` finds them (the largest per
    library kind), and torch's intra-op threads when torch is loaded: what
    ``--omp-nthreads`` (or ``SLURM_CPUS_PER_TASK``) allowed, as it took effect.
    """
    from threadpoolctl import threadpool_info

    threads: dict[str, int] = {}
    for pool in threadpool_info():
        kind = pool.get("internal_api") or pool.get("user_api") or "unknown"
        threads[kind] = max(threads.get(kind, 0), int(pool.get("num_threads", 0)))
    if "torch" in sys.modules:
        threads["torch"] = int(sys.modules["torch"].get_num_threads())
    return threads
