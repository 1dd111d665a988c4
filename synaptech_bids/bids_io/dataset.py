"""The input BIDS dataset: check that it is one, list its participants.

Everything here runs before any work, so that a wrong path or label fails
in a second with one line, not an hour later in a cluster job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import AppError, ExitCode

#: Top-level folders the raw-data validator must not look into (BIDS says
#: they are free-form or hold other datasets).
_UNVALIDATED_DIRS = {"derivatives", "sourcedata", "code", "stimuli"}

#: Subjects that are not participants (ds000117 has ``sub-emptyroom``).
_NOT_PARTICIPANTS = {"emptyroom"}


def read_dataset_description(bids_root: Path) -> dict:
    """Return the dataset's ``dataset_description.json``.

    Raises
    ------
    AppError
        66 if ``bids_root`` is not a directory, 16 if it is not a BIDS
        dataset (no readable description with a ``BIDSVersion``).
    """
    bids_root = Path(bids_root)
    if not bids_root.is_dir():
        raise AppError(f"BIDS_DIR {bids_root} is not a directory", ExitCode.NO_INPUT)
    path = bids_root / "dataset_description.json"
    if not path.is_file():
        raise AppError(
            f"BIDS_DIR {bids_root} is not a BIDS dataset: "
            "it has no dataset_description.json",
            ExitCode.VALIDATION_FAILED,
        )
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AppError(
            f"{path} is not valid JSON: {err}", ExitCode.VALIDATION_FAILED
        ) from err
    if not isinstance(description, dict) or "BIDSVersion" not in description:
        raise AppError(
            f"{path} lacks the required field BIDSVersion",
            ExitCode.VALIDATION_FAILED,
        )
    return description


def validate_bids(bids_root: Path) -> None:
    """Check every file name of the raw dataset against the BIDS schema.

    This is the path-level check of the official ``bids-validator`` Python
    package: fast enough to run before every job, and it catches what breaks
    discovery (misnamed files, wrong folders). Use the full validator for
    publication; ``--skip-bids-validator`` turns this off.

    Raises
    ------
    AppError
        16 with the first offending files named.
    """
    from bids_validator import BIDSValidator

    bids_root = Path(bids_root)
    read_dataset_description(bids_root)
    validator = BIDSValidator()
    invalid = []
    for path in sorted(bids_root.rglob("*")):
        relative = path.relative_to(bids_root)
        if relative.parts[0] in _UNVALIDATED_DIRS or relative.parts[0].startswith("."):
            continue
        if path.is_dir():
            continue
        if not validator.is_bids("/" + relative.as_posix()):
            invalid.append(relative.as_posix())
    if invalid:
        shown = ", ".join(invalid[:3]) + (" ..." if len(invalid) > 3 else "")
        raise AppError(
            f"BIDS validation failed: {len(invalid)} file(s) not named as BIDS "
            f"requires ({shown}); fix them or pass --skip-bids-validator",
            ExitCode.VALIDATION_FAILED,
        )
    if not list_participants(bids_root):
        raise AppError(
            f"BIDS_DIR {bids_root} holds no sub-* folders",
            ExitCode.VALIDATION_FAILED,
        )


def list_participants(bids_root: Path) -> list[str]:
    """Return the dataset's participant labels (without ``sub-``), sorted.

    Labels come from the ``sub-*`` folders; ``participants.tsv`` is not
    trusted alone because it may list subjects whose data were withheld.
    Pseudo-subjects such as ``sub-emptyroom`` are not participants.
    """
    labels = [
        p.name[len("sub-") :]
        for p in Path(bids_root).glob("sub-*")
        if p.is_dir()
    ]
    return sorted(label for label in labels if label not in _NOT_PARTICIPANTS)


def normalise_labels(labels: Iterable[str] | None, prefix: str) -> list[str]:
    """Strip an optional BIDS prefix (``sub-``, ``ses-``) from labels."""
    out = []
    for label in labels or ():
        label = label.strip()
        if label.startswith(prefix):
            label = label[len(prefix) :]
        if label and label not in out:
            out.append(label)
    return out


def select_participants(bids_root: Path, requested: Sequence[str] | None) -> list[str]:
    """Return the participants to process: all, or those requested.

    Raises
    ------
    AppError
        18 naming every requested label that the dataset does not have, or
        when the dataset has no participants at all.
    """
    available = list_participants(bids_root)
    wanted = normalise_labels(requested, "sub-")
    if not wanted:
        if not available:
            raise AppError(
                f"no participants (sub-* folders) in {bids_root}",
                ExitCode.NOTHING_SELECTED,
            )
        return available
    missing = [label for label in wanted if label not in available]
    if missing:
        raise AppError(
            f"participant label(s) not found in {bids_root}: "
            f"{', '.join(missing)} (available: {', '.join(available) or 'none'})",
            ExitCode.NOTHING_SELECTED,
        )
    return wanted


def read_participants_tsv(bids_root: Path) -> pd.DataFrame | None:
    """Return ``participants.tsv`` as a table, or ``None`` when absent."""
    path = Path(bids_root) / "participants.tsv"
    if not path.is_file():
        return None
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
