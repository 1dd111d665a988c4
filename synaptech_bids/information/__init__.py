"""Information estimators between EEG and MEG, free of BIDS (arrays in, out).

Lag convention: a positive lag means MEG lags EEG
(``mi[i, j, l] = I(eeg_i(t); meg_j(t + lags[l]))``). MI and TE are in bits.

- :mod:`.gcmi`: Gaussian-copula MI for all pairs and lags at once
  (:func:`gcmi_lagged`, :func:`best_lag`), and :func:`mutual_information`,
  which dispatches to an estimator by name ("gcmi", "ksg", "binned").
- :mod:`.ksg`: Kraskov k-nearest-neighbour MI (model-free).
- :mod:`.binned`: equiprobable-bin plug-in MI (Miller-Madow).
- :mod:`.surrogates`: circular-shift surrogates with max-statistic FWER
  correction over all pairs and lags (:func:`surrogate_max_test`).
- :mod:`.transfer_entropy`: Gaussian(-copula) TE in both directions for
  channel pairs, with the same surrogate test.
- :mod:`.distance`: MI-versus-distance curves and decay fits.
"""

from .binned import binned_mi
from .distance import DEFAULT_BINS_CM, fit_decay, mi_distance_curve
from .gcmi import (
    best_lag,
    copnorm,
    gaussian_mi_bias,
    gcmi_lagged,
    gcmi_mi,
    mutual_information,
    resolve_lags,
)
from .ksg import ksg_mi
from .surrogates import draw_shifts, max_stat_p_values, surrogate_max_test
from .transfer_entropy import (
    te_surrogate_test,
    transfer_entropy,
    transfer_entropy_pairs,
)

__all__ = [
    "DEFAULT_BINS_CM",
    "best_lag",
    "binned_mi",
    "copnorm",
    "draw_shifts",
    "fit_decay",
    "gaussian_mi_bias",
    "gcmi_lagged",
    "gcmi_mi",
    "ksg_mi",
    "max_stat_p_values",
    "mi_distance_curve",
    "mutual_information",
    "resolve_lags",
    "surrogate_max_test",
    "te_surrogate_test",
    "transfer_entropy",
    "transfer_entropy_pairs",
]
