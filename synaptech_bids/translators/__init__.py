"""EEG-to-MEG translators behind one interface (see :mod:`.base`).

Every translator takes arrays ``eeg (n_windows, n_eeg, n_times)`` and
``meg (n_windows, n_meg, n_times)``, knows nothing of BIDS, and saves to
safetensors + JSON. Pick one by name::

    from synaptech_bids.translators import get_translator, Translator
    model = get_translator("ridge", lags=(0,)).fit(eeg_train, meg_train, groups)
    model.save("out/desc-ridge_model")
    same = Translator.load("out/desc-ridge_model")  # class read from the JSON
"""

from __future__ import annotations

from typing import Any

from .adaptive import AdaptiveTranslator
from .base import NotFittedError, Translator, r2_per_channel
from .hybrid import HybridTranslator
from .physics import PhysicsTranslator, lead_fields_from_info, wiener_map
from .ridge import RidgeTranslator
from .sourcespace import SourceSpaceTranslator
from .spectral import SpectralTranslator
from .synaptechnet import SynaptechNet, SynaptechNetTranslator

#: name -> class; ``Translator.load`` resolves saved models through this
#: table only, so a JSON file cannot make it import arbitrary code.
TRANSLATORS: dict[str, type[Translator]] = {
    cls.name: cls
    for cls in (
        PhysicsTranslator,
        RidgeTranslator,
        SynaptechNetTranslator,
        SourceSpaceTranslator,
        AdaptiveTranslator,
        SpectralTranslator,
        HybridTranslator,
    )
}


def get_translator(name: str, **params: Any) -> Translator:
    """Instantiate the translator registered as ``name`` with ``params``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    try:
        cls = TRANSLATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown translator {name!r}; choose from {sorted(TRANSLATORS)}"
        ) from None
    return cls(**params)


def load_translator(path: str) -> Translator:
    """Load any saved translator (alias of :meth:`Translator.load`)."""
    return Translator.load(path)


__all__ = [
    "TRANSLATORS",
    "AdaptiveTranslator",
    "HybridTranslator",
    "NotFittedError",
    "PhysicsTranslator",
    "RidgeTranslator",
    "SourceSpaceTranslator",
    "SpectralTranslator",
    "SynaptechNet",
    "SynaptechNetTranslator",
    "Translator",
    "get_translator",
    "lead_fields_from_info",
    "load_translator",
    "r2_per_channel",
    "wiener_map",
]
