"""Physics simulator of simultaneous EEG + MEG datasets in BIDS (ds000117-like).

>>> from synaptech_bids.simulate import simulate_dataset, load_truth
>>> root = simulate_dataset("/tmp/sim", n_subjects=2, n_runs=1, duration=30.0)
>>> truth = load_truth(root, "01", 1)

Modules: :mod:`.geometry` (sensors, digitisation, head position),
:mod:`.sources` (cortex, patches, networks, signals), :mod:`.recording`
(events, forward model, artefacts, noise, chunked synthesis), :mod:`.writer`
(BIDS files and ground truth), :mod:`.cli` (``synaptech-bids-simulate``),
:mod:`.calibration` (statistics against a real covariance, and the noise
ceiling :func:`source_variance_share`).
See ``docs/simulator.md``.
"""

from .calibration import source_variance_share
from .writer import SESSION, TASK, load_truth, simulate_dataset

__all__ = ["simulate_dataset", "load_truth", "source_variance_share", "TASK", "SESSION"]
