"""Names of derivative files, built with :class:`mne_bids.BIDSPath`.

Derivative suffixes such as ``epo`` are not in the raw-data schema, so paths
are built with ``check=False``, as MNE-BIDS-Pipeline does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from mne_bids import BIDSPath


def derivative_path(
    source: BIDSPath, output_dir: Path, *, desc: str, suffix: str, extension: str,
    run: str | None | bool = True, **entities: str,
) -> BIDSPath:
    """Return the derivative of ``source`` under ``output_dir``.

    Parameters
    ----------
    source : BIDSPath
        A raw run (its subject, session, task and run are kept).
    output_dir : Path
        The derivatives root.
    desc, suffix, extension : str
        The ``desc-`` label, the suffix (``epo``, ``channels``, ``log``, ...)
        and the extension (with its dot).
    run : bool | str | None
        ``True`` keeps the source's run; ``None`` drops it (a per-subject file).
    **entities
        Other entities to set (e.g. ``space``).
    """
    path = source.copy().update(
        root=output_dir,
        suffix=suffix,
        extension=extension,
        description=desc,
        split=None,
        check=False,
        **entities,
    )
    if run is not True:
        path.update(run=run)
    return path


def subject_path(output_dir: Path, subject: str, session: str | None, *,
                 desc: str, suffix: str, extension: str, task: str | None = None,
                 datatype: str = "meg") -> BIDSPath:
    """A per-subject derivative (no run entity)."""
    return BIDSPath(
        root=output_dir, subject=subject, session=session, task=task,
        datatype=datatype, description=desc, suffix=suffix, extension=extension,
        check=False,
    )


def content_hash(files: Iterable[Path], extra: str = "") -> str:
    """SHA-256 of the files' contents (in order) and of ``extra`` (e.g. a config).

    A step whose recorded hash equals this one is up to date and is skipped.
    """
    digest = hashlib.sha256(extra.encode())
    for path in files:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()
