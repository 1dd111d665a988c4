"""synaptech-bids: information shared by simultaneous EEG and MEG, as a BIDS-App."""

from ._version import __version__

__all__ = ["__version__"]
