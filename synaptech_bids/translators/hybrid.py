"""Hybrid translator: the ridge map plus Synaptech-Net trained on what it misses.

Why
---
On subjects it never saw, the paper's network has to learn the linear part
of the EEG-to-MEG map that ridge regression gets in closed form, and on
little data it learns it worse (issue 5). Here the network learns only the
*residual* of a ridge map::

    meg_hat = ridge(eeg) + g * net(eeg)

* ``ridge``: :class:`.ridge.RidgeTranslator` on all training subjects, its
  penalty chosen by subject-wise cross-validation;
* ``net``: :class:`.synaptechnet.SynaptechNetTranslator` (the paper's
  architecture, unchanged) trained on ``meg - ridge_cv(eeg)``, where
  ``ridge_cv`` are *cross-fitted* predictions: each training subject's
  windows are predicted by a ridge map fitted without that subject, so the
  network learns what ridge misses on a subject it did not train on, not
  its smaller in-sample residual;
* ``g``: the network's output calibration (least squares on the
  validation subjects, clipped at 0; pooled over MEG channels by default).
  A residual that does not carry over to new subjects gets ``g`` near 0,
  and the hybrid falls back to ridge; a gain well above 0 says the
  network's time and non-linearity add something a linear map cannot.

Everything the two parts fit reads training subjects only, as each part
alone does; at prediction time the hybrid reads the EEG only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import synaptechnet as _net
from .base import NotFittedError, check_pair
from .ridge import RidgeTranslator


class HybridTranslator(_net.SynaptechNetTranslator):
    """Ridge map plus Synaptech-Net on its cross-fitted residual.

    Parameters
    ----------
    ridge_lags : sequence of int
        Lags (samples) of the ridge part (see :mod:`.ridge`).
    **params
        Any parameter of :class:`.synaptechnet.SynaptechNetTranslator`, for
        the network part, with its defaults.

    Attributes
    ----------
    ridge_ : RidgeTranslator
        The fitted linear part.
    output_gain_, history_, best_epoch_, ...
        Of the network part, as in :class:`.synaptechnet.SynaptechNetTranslator`.
    """

    name = "hybrid"

    def __init__(self, ridge_lags: Sequence[int] = (0,), **params: Any) -> None:
        super().__init__(**params)
        self.ridge_lags = tuple(int(v) for v in np.atleast_1d(ridge_lags))

    @classmethod
    def _param_names(cls) -> list[str]:
        # the network's parameters come through **params: list them all, so
        # that get_params, save and load round-trip every one
        return ["ridge_lags", *_net.SynaptechNetTranslator._param_names()]

    def fit(
        self,
        eeg: np.ndarray,
        meg: np.ndarray,
        groups: np.ndarray | None = None,
        geometry: Any = None,
        checkpoint_dir: str | None = None,
        stop_hook: Any = None,
        log: Any = None,
    ) -> HybridTranslator:
        """Fit ridge, then the network on ridge's cross-fitted residual.

        Parameters are those of
        :meth:`.synaptechnet.SynaptechNetTranslator.fit`; a checkpoint
        resumes the network part (the ridge part is refitted, in seconds).
        """
        eeg, meg, groups = check_pair(eeg, meg, groups)
        self.ridge_ = RidgeTranslator(lags=self.ridge_lags)
        # The residual has the MEG's size: keep it beside a memory-mapped MEG
        # (the group level's scratch directory) rather than in RAM.
        mapped = getattr(meg, "filename", None)
        scratch = None if mapped is None else Path(mapped).parent
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            if scratch is None:
                residual = np.empty(meg.shape, np.float32)
            else:
                residual = np.lib.format.open_memmap(
                    Path(tmp) / "residual.npy", "w+", np.float32, meg.shape
                )
            self.ridge_.fit_cross_fitted(eeg, meg, groups, out=residual)
            if log is not None:
                log(f"ridge part: alpha {float(np.median(self.ridge_.alpha_)):.3g}")
            chunk = 256
            for start in range(0, len(meg), chunk):
                block = slice(start, start + chunk)
                np.subtract(meg[block], residual[block], out=residual[block], dtype=np.float32)
            # Resuming checks the data by fingerprint: that of the input MEG,
            # which is exact, not of the residual, whose last bits depend on
            # the BLAS and its threads.
            self._fingerprint_meg = meg
            try:
                super().fit(eeg, residual, groups, geometry, checkpoint_dir, stop_hook, log)
            finally:
                del self._fingerprint_meg
                del residual
        return self

    def _data_fingerprint(self, eeg: np.ndarray, meg: np.ndarray, groups: Any) -> str:
        return super()._data_fingerprint(eeg, getattr(self, "_fingerprint_meg", meg), groups)

    def predict(
        self, eeg: np.ndarray, geometry: Any = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Ridge's prediction plus the calibrated network residual, in MEG units.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        geometry : ignored
        batch_size : int, optional
            Windows per forward pass of the network.

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times), ``eeg``'s dtype
        """
        if not self.is_fitted:
            raise NotFittedError("HybridTranslator is not fitted")
        out = super().predict(eeg, batch_size=batch_size)  # checks the EEG
        out += self.ridge_.predict(eeg)
        return out

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, fitted = super()._get_state()
        ridge_tensors, ridge_fitted = self.ridge_._get_state()
        tensors.update({f"ridge.{k}": v for k, v in ridge_tensors.items()})
        fitted["ridge"] = ridge_fitted
        return tensors, fitted

    def _set_state(self, tensors: dict[str, np.ndarray], fitted: dict[str, Any]) -> None:
        super()._set_state({k: v for k, v in tensors.items() if not k.startswith("ridge.")},
                           fitted)
        self.ridge_ = RidgeTranslator(lags=self.ridge_lags)
        self.ridge_._set_state(
            {k[6:]: v for k, v in tensors.items() if k.startswith("ridge.")},
            fitted.get("ridge", {}),
        )
        self.ridge_._fitted = True
