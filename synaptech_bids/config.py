"""Every option of the pipeline in one documented place.

The command line sets the run-time options (which subjects, how many jobs,
which device); everything that changes *what is computed* lives in
:class:`Config`, can be written to a TOML or JSON file and passed with
``--config``, and is recorded in the outputs so that runs made with
different settings are never silently mixed at group level.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


#: Names of the registered translators (``synaptech_bids.translators.TRANSLATORS``,
#: which imports torch; a test keeps the two equal).
TRANSLATOR_NAMES = ("physics", "ridge", "synaptechnet", "hybrid", "sourcespace", "adaptive",
                    "spectral")
#: Translators that need each subject's lead fields; all but ``physics`` need
#: a cortical source space (``forward_dir``) to predict anything.
LEAD_FIELD_TRANSLATORS = ("physics", "sourcespace", "adaptive", "spectral")


@dataclass(frozen=True)
class Config:
    """What the pipeline computes. Defaults follow the paper where it is specific.

    Attributes
    ----------
    l_freq, h_freq : float
        Band-pass edges in Hz (the paper: 0.1–100 Hz).
    resample_sfreq : float
        Sampling rate after preprocessing, in Hz.
    maxwell_filter : bool
        Signal-space separation of MEG data not already Maxwell-filtered
        (removes the room's field, which dominates raw magnetometers).
    notch : bool
        Notch-filter the power-line frequency (from the sidecar) and its
        harmonics below the Nyquist frequency.
    eeg_reference : str
        EEG reference; only ``"average"`` is supported (stated in every output).
    ica : bool
        Run ICA to remove EOG/ECG components (kept as a separate
        "ICA-cleaned" EEG version).
    ica_n_components : float
        Number (>=1) of ICA components per modality, or a share (<1) of
        variance. A fixed number keeps ICA fast and stable on full-rank data,
        where a 99% variance share means hundreds of noise components.
    ica_icalabel : str
        When ICLabel (mne-icalabel) labels the EEG components: ``"auto"``
        (default) where the recording lacks EOG or ECG channels, which
        otherwise find the artefacts; ``"always"``; ``"never"``. Components
        it calls eye blink or heart beat (probability >= 0.8) are removed.
    epochs_tmin, epochs_tmax : float
        Epoch window around each event, in seconds (the paper: a 2-s window).
    baseline : tuple of float
        Baseline interval in seconds.
    reject_eeg_uv, reject_mag_ft, reject_grad_ft_cm : float
        Peak-to-peak rejection thresholds (µV, fT, fT/cm), used when
        ``reject`` is ``"ptp"``.
    auto_bad_channels : bool
        Also find bad channels automatically (default: only those of
        ``channels.tsv``): flat and noisy MEG sensors with MNE's
        ``find_bad_channels_maxwell`` (marked bad), flat, noisy and
        uncorrelated EEG electrodes with a robust amplitude and correlation
        test (interpolated, like the ``channels.tsv`` ones).
    reject : str
        Epoch rejection: ``"ptp"``, the fixed peak-to-peak thresholds above
        (default), or ``"autoreject"``, per-run, per-channel-type thresholds
        estimated by autoreject's ``get_rejection_threshold`` (cross-validated;
        MNE-BIDS-Pipeline's ``"autoreject_global"``; needs the ``autoreject``
        package).
    pair_max_distance_cm : float
        EEG electrodes within this distance of a magnetometer form its pairs
        (the paper's 2–4 cm neighbourhood).
    save_continuous : bool
        Also write each run's cleaned continuous recording (``desc-clean_meg.fif``
        and ``desc-ica_meg.fif``, at ``resample_sfreq``; about 170 MB per
        7.5-min run and version), which ``group_windows = "sliding"`` reads.
    allow_standard_montage : str or None
        Name of a standard montage to use when a run has no digitised EEG
        positions. ``None`` makes a missing digitisation an error.
    mi_lags_ms : tuple of float
        Lag range for mutual information (ms); positive means MEG lags EEG.
    n_surrogates : int
        Surrogates for the max-statistic significance test.
    translators : tuple of str
        Translators trained and scored at group level (registered names:
        ``physics``, ``ridge``, ``synaptechnet``, ``hybrid``, ``sourcespace``,
        ``adaptive``, ``spectral``).
    group_eeg : str
        Which EEG the translators read: ``"ica"`` (ICA-cleaned, default) or
        ``"clean"`` (filtered only, blinks kept). The MEG target is
        EOG/ECG-cleaned in both.
    group_eeg_channels : str
        ``"all"`` EEG channels common to the subjects (default), or
        ``"pruned"``: the paper's pruned pair set, i.e. the electrodes in the
        pruned pairs (distance threshold and significant MI) of a fold's
        *training* subjects, never of the held-out one.
    group_windows : str
        What the translators are trained and scored on: ``"epochs"`` (the
        cleaned epochs around the events, the paper's 2-s windows; default)
        or ``"sliding"`` (windows slid over the cleaned continuous recording,
        bad segments skipped; needs ``save_continuous`` at participant level).
    window_length_s, window_step_s : float
        Length and step of the sliding windows, in seconds.
    n_folds : int
        Folds of the leave-subjects-out evaluation (GroupKFold by subject);
        with this many subjects or fewer, leave-one-subject-out.
    ridge_lags_ms : tuple of float
        Time lags of the ridge translator's EEG features (ms).
    synaptechnet_width : float
        Width factor of Synaptech-Net (1.0: the paper's 128/256/512 channels).
    synaptechnet_cwt_freqs : int
        0 feeds Synaptech-Net the signal itself; N > 0 feeds it the paper's
        complex-Morlet (cmor1.5-1.0) transform at N log-spaced frequencies
        from 1 to 100 Hz (capped below Nyquist), computed on the fly.
    synaptechnet_normalization : str
        ``"zscore"`` per channel (default) or the paper's ``"minmax_log1p"``;
        fitted on training subjects only.
    synaptechnet_norm : str
        Normalisation layer of Synaptech-Net: the paper's ``"instance"``
        (default), ``"batch"`` or ``"none"``.
    synaptechnet_input_skip : bool
        Hand Synaptech-Net's input to its output layer beside the decoder
        (not in the paper). Why: instance normalisation makes every feature
        map blind to its amplitude in the window, so the paper's network
        cannot scale its output with the EEG's; the skip gives the output
        layer the (normalised) EEG itself, i.e. a spatial linear path.
    max_epochs, batch_size, learning_rate, patience : int, int, float, int
        Training of Synaptech-Net (Adam, MSE, early stopping on a validation
        split of training subjects).
    synaptechnet_ensemble : int
        Synaptech-Nets trained per fold with seeds ``seed, seed + 1, ...``
        (each with its own validation subjects); their predictions are
        averaged (default 1, the paper's single network). Why: with few
        training subjects one network's held-out error is mostly its
        variance, which averaging reduces; training time grows in proportion.
    weight_decay : float
        Adam's L2 penalty on Synaptech-Net's weights (0: off, the paper's).
    forward_dir : str or None
        Folder holding each subject's MNE forward solution
        (``sub-<label>_*fwd.fif``, searched in sub-folders), e.g.
        MNE-BIDS-Pipeline's derivatives, computed from FreeSurfer surfaces,
        a BEM and the co-registration. ``physics``, ``sourcespace`` and
        ``adaptive`` then use these lead fields, dipoles fixed along the
        cortical normals. ``None`` (default): the app's own sphere model
        and volume grid, which need no MRI but have no normals.
    spectral_band_sources : bool
        ``spectral``: give each cortical patch kept by the broadband sparse
        fit a variance of its own per frequency band (default ``False``: one
        weight per band for all of them). Why: patches whose EEG
        topographies overlap but whose spectra differ are then told apart;
        the best translator of the transfer benchmark
        (docs/translatability.md), several times slower, and it needs a
        few minutes of data per subject.
    """

    # preprocessing
    l_freq: float = 0.1
    h_freq: float = 100.0
    resample_sfreq: float = 250.0
    notch: bool = True
    maxwell_filter: bool = True
    eeg_reference: str = "average"
    ica: bool = True
    ica_n_components: float = 30
    ica_icalabel: str = "auto"
    epochs_tmin: float = -0.5
    epochs_tmax: float = 1.5
    baseline: tuple[float, float] = (-0.5, 0.0)
    reject_eeg_uv: float = 250.0
    reject_mag_ft: float = 4000.0
    reject_grad_ft_cm: float = 4000.0
    auto_bad_channels: bool = False
    reject: str = "ptp"
    save_continuous: bool = False
    # co-registration and pairing
    allow_standard_montage: str | None = None
    pair_max_distance_cm: float = 4.0
    # information
    mi_lags_ms: tuple[float, float] = (-50.0, 50.0)
    n_surrogates: int = 200
    # group level
    translators: tuple[str, ...] = ("physics", "ridge", "synaptechnet")
    group_eeg: str = "ica"
    group_eeg_channels: str = "all"
    group_windows: str = "epochs"
    window_length_s: float = 2.0
    window_step_s: float = 1.0
    n_folds: int = 5
    ridge_lags_ms: tuple[float, ...] = (-20.0, -8.0, 0.0, 8.0, 20.0)
    synaptechnet_width: float = 0.25
    synaptechnet_cwt_freqs: int = 0
    synaptechnet_normalization: str = "zscore"
    synaptechnet_norm: str = "instance"
    synaptechnet_input_skip: bool = False
    max_epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 1e-3
    patience: int = 5
    synaptechnet_ensemble: int = 1
    weight_decay: float = 0.0
    forward_dir: str | None = None
    spectral_band_sources: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            # a TOML string "false" would otherwise count as true, and a
            # string "3" would fail later with a traceback instead of a message
            if option.type == "bool" and not isinstance(value, bool):
                raise ConfigError(f"{option.name} must be true or false")
            if option.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{option.name} must be an integer")
            if option.type == "float" and (isinstance(value, bool)
                                           or not isinstance(value, int | float)):
                raise ConfigError(f"{option.name} must be a number")
        if not 0 <= self.l_freq < self.h_freq:
            raise ConfigError(
                f"need 0 <= l_freq < h_freq, got l_freq={self.l_freq}, "
                f"h_freq={self.h_freq}"
            )
        if self.resample_sfreq <= 2 * self.h_freq:
            raise ConfigError(
                f"resample_sfreq={self.resample_sfreq} Hz must exceed twice "
                f"h_freq={self.h_freq} Hz (Nyquist)"
            )
        if self.eeg_reference != "average":
            raise ConfigError("eeg_reference: only 'average' is supported")
        if not self.epochs_tmin < 0 < self.epochs_tmax:
            raise ConfigError("epochs must span the event: tmin < 0 < tmax")
        if self.ica_icalabel not in ("auto", "always", "never"):
            raise ConfigError(
                f"ica_icalabel must be 'auto', 'always' or 'never', got {self.ica_icalabel!r}")
        if self.reject not in ("ptp", "autoreject"):
            raise ConfigError(f"reject must be 'ptp' or 'autoreject', got {self.reject!r}")
        if self.group_eeg not in ("ica", "clean"):
            raise ConfigError("group_eeg must be 'ica' or 'clean'")
        if self.group_eeg_channels not in ("all", "pruned"):
            raise ConfigError("group_eeg_channels must be 'all' or 'pruned'")
        if self.group_windows not in ("epochs", "sliding"):
            raise ConfigError("group_windows must be 'epochs' or 'sliding'")
        if not (self.window_step_s > 0 and self.window_length_s > 0):
            raise ConfigError("window_length_s and window_step_s must be positive")
        if self.n_surrogates < 1:
            raise ConfigError("n_surrogates must be positive")
        unknown = sorted(set(self.translators) - set(TRANSLATOR_NAMES))
        if unknown or not self.translators:
            raise ConfigError(f"translators: unknown {unknown}; choose from "
                              f"{list(TRANSLATOR_NAMES)}")
        if self.synaptechnet_cwt_freqs < 0:
            raise ConfigError("synaptechnet_cwt_freqs must be 0 (off) or positive")
        if self.synaptechnet_normalization not in ("zscore", "minmax_log1p"):
            raise ConfigError("synaptechnet_normalization must be 'zscore' or 'minmax_log1p'")
        if self.synaptechnet_norm not in ("instance", "batch", "none"):
            raise ConfigError("synaptechnet_norm must be 'instance', 'batch' or 'none'")
        for name in ("max_epochs", "batch_size", "patience", "synaptechnet_ensemble"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate must be positive")
        if not self.weight_decay >= 0:
            raise ConfigError("weight_decay must be 0 (off) or positive")
        if self.forward_dir is not None and not (isinstance(self.forward_dir, str)
                                                 and self.forward_dir.strip()):
            raise ConfigError("forward_dir must be a folder's path")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain JSON-serialisable values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def participant_dict(self) -> dict[str, Any]:
        """The options that shape participant-level outputs (not group-only ones).

        Participant derivatives are cached and compared by these alone, so
        changing a translator setting never re-runs or refuses them.
        """
        return {k: v for k, v in self.to_dict().items() if k not in GROUP_ONLY_FIELDS}

    def digest(self) -> str:
        """Return a short content hash: equal configs give equal digests."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Options read by the group level only.
GROUP_ONLY_FIELDS = frozenset({
    "translators", "group_eeg", "group_eeg_channels", "group_windows", "window_length_s",
    "window_step_s", "n_folds", "ridge_lags_ms",
    "synaptechnet_width", "synaptechnet_cwt_freqs", "synaptechnet_normalization",
    "synaptechnet_norm", "synaptechnet_input_skip", "synaptechnet_ensemble",
    "max_epochs", "batch_size", "learning_rate", "patience", "weight_decay",
    "forward_dir", "spectral_band_sources",
})


def load_config(path: str | Path | None) -> Config:
    """Read a TOML or JSON configuration file; ``None`` gives the defaults.

    Unknown keys are an error (a typo must not silently fall back to a
    default that changes the science).
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            values = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of options")
    known = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option(s) in {path}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    for name in ("baseline", "mi_lags_ms", "translators", "ridge_lags_ms"):
        if name in values:
            values[name] = tuple(values[name])
    try:
        return Config(**values)
    except TypeError as err:
        raise ConfigError(f"config file {path}: {err}") from err
