"""The one interface every EEG-to-MEG translator implements.

Data convention (all translators, all methods)
-----------------------------------------------
``eeg``
    array of shape ``(n_windows, n_eeg, n_times)``, float32 or float64.
``meg``
    array of shape ``(n_windows, n_meg, n_times)``, same ``n_windows`` and
    ``n_times`` as ``eeg``.
``groups``
    optional array of shape ``(n_windows,)``: the subject label of each
    *training* window. Translators that tune hyper-parameters do so by
    cross-validation over these labels (whole subjects held out), never by
    splitting windows of one subject between train and validation.
``geometry``
    optional, translator-specific description of the head(s) the windows
    come from; see the translator's documentation (the physics translator
    reads per-subject lead fields from it, the others ignore it).

Why ``fit`` only sees training arrays
-------------------------------------
``fit`` receives the training windows and nothing else: no test EEG, no test
MEG, no "validation data" argument. Anything a translator tunes
(normalisation statistics, ridge penalty, early stopping) is therefore
computed from training subjects by construction, and held-out MEG cannot
leak into a model through this API. ``predict`` takes EEG only.

Persistence
-----------
``save(path)`` writes ``<stem>.safetensors`` (arrays) and ``<stem>.json``
(class, configuration, fitted scalars, package version). ``Translator.load``
reads the JSON, looks the class up in the registry by its ``name`` (never by
importing a module named in the file) and rebuilds it. No pickle anywhere.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._version import __version__
from . import io as _io


class NotFittedError(RuntimeError):
    """Raised when ``predict`` or ``save`` is called before ``fit``."""


class Translator(abc.ABC):
    """Abstract EEG-to-MEG translator.

    Subclasses set :attr:`name` (the registry key), keep their constructor
    parameters as attributes of the same name (listed by
    :meth:`get_params`), and implement :meth:`fit`, :meth:`predict`,
    :meth:`_get_state` and :meth:`_set_state`.
    """

    #: Registry key, also written to the JSON so that ``load`` finds the class.
    name: ClassVar[str] = "base"

    # ------------------------------------------------------------------ API
    @abc.abstractmethod
    def fit(
        self,
        eeg: np.ndarray,
        meg: np.ndarray,
        groups: np.ndarray | None = None,
        geometry: Any = None,
    ) -> Translator:
        """Learn the map from training windows.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
            Training EEG.
        meg : ndarray, shape (n_windows, n_meg, n_times)
            Simultaneous training MEG.
        groups : ndarray, shape (n_windows,), optional
            Subject label of each window, for subject-wise inner validation.
        geometry : object, optional
            Translator-specific head geometry (see the subclass).

        Returns
        -------
        self : Translator
        """

    @abc.abstractmethod
    def predict(self, eeg: np.ndarray, geometry: Any = None) -> np.ndarray:
        """Translate EEG windows into MEG.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        geometry : object, optional
            Translator-specific head geometry of the windows' subject(s).

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times)
        """

    @abc.abstractmethod
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted state as (arrays, JSON-serialisable scalars)."""

    @abc.abstractmethod
    def _set_state(self, tensors: dict[str, np.ndarray], fitted: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned."""

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`predict` can be called."""
        return bool(getattr(self, "_fitted", False))

    # -------------------------------------------------------------- params
    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-ready (tuples and arrays become lists)."""
        out = {}
        for k in self._param_names():
            v = getattr(self, k)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[k] = v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Save to ``<stem>.safetensors`` + ``<stem>.json``.

        Parameters
        ----------
        path : str or path-like
            Stem, or a file name ending in ``.safetensors`` or ``.json``.

        Returns
        -------
        st_path, json_path : Path
        """
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} must be fitted before save")
        tensors, fitted = self._get_state()
        meta = {
            "translator": self.name,
            "class": type(self).__name__,
            "package": "synaptech-bids",
            "package_version": __version__,
            "params": self.get_params(),
            "fitted": fitted,
        }
        return _io.save_tensors_json(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Translator:
        """Rebuild a translator saved with :meth:`save`.

        The class is chosen from the ``translator`` field of the JSON via the
        registry, so ``Translator.load(p)`` works for any saved model, and
        ``RidgeTranslator.load(p)`` additionally checks the type.
        """
        from . import TRANSLATORS  # local import: the registry imports us

        tensors, meta = _io.load_tensors_json(path)
        key = meta.get("translator")
        if key not in TRANSLATORS:
            raise ValueError(f"unknown translator {key!r} in {path}; known: {sorted(TRANSLATORS)}")
        klass = TRANSLATORS[key]
        if not issubclass(klass, cls):
            raise TypeError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        obj = klass(**meta.get("params", {}))
        obj._set_state(tensors, meta.get("fitted", {}))
        obj._fitted = True
        return obj


# ---------------------------------------------------------------- helpers
def check_eeg(eeg: Any, name: str = "eeg") -> np.ndarray:
    """Validate a ``(n_windows, n_channels, n_times)`` float array.

    Raises ``ValueError`` with a one-line reason (the CLI turns it into
    exit code 65) instead of failing deep inside linear algebra.
    """
    arr = np.asarray(eeg)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must have shape (n_windows, n_channels, n_times), got {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_pair(
    eeg: Any, meg: Any, groups: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate a training pair and optional ``groups``; return arrays."""
    eeg = check_eeg(eeg, "eeg")
    meg = check_eeg(meg, "meg")
    if eeg.shape[0] != meg.shape[0] or eeg.shape[2] != meg.shape[2]:
        raise ValueError(f"eeg {eeg.shape} and meg {meg.shape} must share n_windows and n_times")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (eeg.shape[0],):
            raise ValueError(
                f"groups must have shape (n_windows,) = ({eeg.shape[0]},), got {groups.shape}"
            )
    return eeg, meg, groups


def r2_per_channel(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each channel over windows and time.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_windows, n_channels, n_times)

    Returns
    -------
    r2 : ndarray, shape (n_channels,)
    """
    yt = np.moveaxis(np.asarray(y_true, float), 1, 0).reshape(y_true.shape[1], -1)
    yp = np.moveaxis(np.asarray(y_pred, float), 1, 0).reshape(y_pred.shape[1], -1)
    sse = ((yt - yp) ** 2).sum(axis=1)
    sst = ((yt - yt.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    # A constant channel has no variance to explain: R² is undefined (NaN).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)
