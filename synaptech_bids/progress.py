"""Progress for long work: visible on a terminal, quiet in batch logs.

On a terminal each step prints one line to stderr as it starts and ends with
its duration. Without a terminal (a SLURM log, a container's captured
output) the same lines go to the logger at INFO level, shown with ``-v``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

logger = logging.getLogger("synaptech_bids.progress")


def _say(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)
    else:
        logger.info(message)


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    """Announce a step, then report how long it took."""
    _say(f"{label} ...")
    start = time.perf_counter()
    yield
    _say(f"{label} done in {time.perf_counter() - start:.1f} s")
