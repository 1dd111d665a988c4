"""Synaptech-Net: the paper's U-Net encoder, Bi-LSTM bridge and decoder.

Reading of the paper (section 3.1), and where this code departs from it
------------------------------------------------------------------------
The paper lists "2D convolution 3x3", "max pooling 2x2" and channel widths
``[74 -> 128 -> 256 -> 512]``. Widths that start at the number of
electrodes only make sense if **EEG channels are the input feature maps**,
so the two axes of the 2-D convolution are (frequency, time):

* with the complex-Morlet CWT input (``cwt_freqs`` set), a window becomes
  ``(n_eeg * n_parts, n_freqs, n_times)`` and every convolution, pooling
  and transposed convolution is a true 2-D 3x3 / 2x2 / 4x4 operation over
  (log-frequency, time);
* on raw signals the frequency axis has length 1 and the same layers use
  kernels of height 1 (a 2-D 3x3 kernel on a height-1 image would only
  waste weights), i.e. Conv1d k=3 over time with channels as feature maps.

Encoder (``len(channels)`` blocks; the paper says "four blocks" but lists
three transitions, so the default is three, ``channels=(128, 256, 512)``)::

    Conv(3x3, stride 1) -> norm -> LeakyReLU(0.2) -> [skip] -> MaxPool(2x2) -> Dropout

Bridge: 2-layer bidirectional LSTM over time (features = channels x pooled
frequencies), dropout 0.2 between the layers and after, a linear
projection back to the encoder width, and a residual connection around it.

Decoder (one block per encoder block, no dropout, as the paper says)::

    ConvTranspose(4x4, stride 2) -> norm -> ReLU -> concat(encoder skip)

widths contract ``512 -> 256 -> 128 -> 128``, then a final convolution
spanning the whole frequency axis (1x1 on raw input) maps to ``n_meg``
outputs (102 magnetometers by default in the paper).

Any ``n_eeg``, ``n_meg`` and window length work: time (and frequency, when
pooled) is zero-padded to a multiple of ``2 ** depth`` inside ``forward``
and the output is cropped back.

Caveat worth knowing: instance normalisation (the paper's choice, default
here) removes each window's overall amplitude from every feature map, so
the network must infer output amplitude from waveform shape alone: its
output is the same for a window and for that window three times as strong.
``norm="batch"`` or ``norm="none"`` keep it; ``input_skip=True`` (not in the
paper) hands the input itself to the output layer beside the decoder's
maps, a spatial linear path that instance norm cannot blind. Measured on 6
simulated subjects (``bench_translators.py``, leave-one-out, width 0.125):
held-out R² 0.015 without it and 0.027 with it at 15 epochs, 0.022 and
0.032 at 40, where ridge reaches 0.036 (docs/index.md).

Shapes
------
:class:`SynaptechNet` ``forward``: ``(batch, n_eeg, n_times)`` ->
``(batch, n_meg, n_times)``. Without the built-in CWT a 4-D input
``(batch, n_in, n_freqs, n_times)`` (features computed elsewhere,
``n_in`` input maps) is accepted too when the model was built with that
``n_freqs``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _training
from . import io as _io
from .base import NotFittedError, Translator, check_eeg, check_pair


# ---------------------------------------------------------------- CWT front
class MorletCWT(nn.Module):
    """Complex-Morlet continuous wavelet transform, in the frequency domain.

    The wavelet is pywt's ``cmor{B}-{C}`` (default ``cmor1.5-1.0``, as in the
    paper): at frequency ``f`` its Fourier transform is the Gaussian
    ``exp(-pi^2 B C^2 (nu / f - 1)^2)``. It is normalised to unit gain at
    ``f`` (rather than pywt's ``1/sqrt(scale)``) so that every frequency row
    has the amplitude of the band it passes; the real part is the band-pass
    filtered signal, the imaginary part its Hilbert transform.

    Parameters
    ----------
    sfreq : float
        Sampling frequency (Hz).
    freqs : sequence of float
        Centre frequencies (Hz), below Nyquist.
    output : {"real", "complex", "abs"}
        ``"complex"`` stacks real and imaginary parts (2 maps per channel).
    bandwidth, center : float
        ``B`` and ``C`` of ``cmorB-C``.

    Shapes
    ------
    ``(batch, n_ch, n_times)`` -> ``(batch, n_ch * n_parts, n_freqs, n_times)``
    with maps ordered ``[part][channel]``.
    """

    def __init__(
        self,
        sfreq: float,
        freqs: Sequence[float],
        output: str = "real",
        bandwidth: float = 1.5,
        center: float = 1.0,
    ) -> None:
        super().__init__()
        if output not in ("real", "complex", "abs"):
            raise ValueError(f"output must be 'real', 'complex' or 'abs', got {output!r}")
        freqs = [float(f) for f in freqs]
        if not freqs or min(freqs) <= 0 or max(freqs) >= sfreq / 2:
            raise ValueError(f"cwt frequencies must lie in (0, {sfreq / 2}) Hz, got {freqs}")
        self.sfreq, self.freqs, self.output = float(sfreq), freqs, output
        self.bandwidth, self.center = float(bandwidth), float(center)
        self.n_parts = 2 if output == "complex" else 1

    def _response(self, n_fft: int, device: torch.device) -> torch.Tensor:
        nu = torch.fft.fftfreq(n_fft, d=1.0 / self.sfreq, device=device, dtype=torch.float64)
        f = torch.tensor(self.freqs, device=device, dtype=torch.float64)[:, None]
        h = torch.exp(-(math.pi**2) * self.bandwidth * self.center**2 * (nu / f - 1) ** 2)
        # analytic signal: keep positive frequencies only, doubled
        h = torch.where(nu > 0, 2 * h, torch.zeros_like(h))
        return h.to(torch.complex64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_t = x.shape[-1]
        # Zero-pad to at least twice the length so the product in frequency
        # is a linear (not circular) convolution at the window edges.
        n_fft = 1 << (2 * n_t - 1).bit_length()
        spec = torch.fft.fft(x.float(), n=n_fft, dim=-1)  # (B, C, n_fft)
        h = self._response(n_fft, x.device)  # (F, n_fft)
        z = torch.fft.ifft(spec[:, :, None, :] * h, dim=-1)[..., :n_t]  # (B, C, F, T)
        if self.output == "real":
            return z.real
        if self.output == "abs":
            return z.abs()
        return torch.cat([z.real, z.imag], dim=1)


# ----------------------------------------------------------------- network
class _InstanceNorm(nn.InstanceNorm2d):
    """Affine instance normalisation computed as a group norm, one group per channel.

    The two are the same operation (statistics over each map of each
    window, one affine pair per channel), with the same parameters, so
    saved models load unchanged; PyTorch's CPU group norm is one fused
    kernel, ~5x faster than its instance norm, which repeats the affine
    parameters per window and calls batch norm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return _InstanceNorm(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {kind!r}")


class SynaptechNet(nn.Module):
    """U-Net encoder, Bi-LSTM bridge, U-Net decoder (see module docstring).

    Parameters
    ----------
    n_eeg : int
        EEG channels (input maps before the CWT).
    n_meg : int
        MEG outputs.
    channels : sequence of int
        Encoder widths; the depth is ``len(channels)``.
    lstm_hidden : int
        Hidden size of each LSTM direction.
    dropout : float
        Encoder post-pooling dropout and bridge dropout (between LSTM layers
        and after the LSTM); the decoder has none.
    norm : {"instance", "batch", "none"}
    cwt : MorletCWT, optional
        Built-in time-frequency front end.
    n_freqs : int
        Height of a 4-D input when ``cwt`` is None (1 for raw signals).
    input_skip : bool
        Also hand the network's (padded) input to the head, beside the last
        decoder block's maps. Not in the paper: see :class:`SynaptechNetTranslator`.

    Shapes
    ------
    ``forward``: ``(B, n_eeg, T)`` (or ``(B, n_in, n_freqs, T)``) ->
    ``(B, n_meg, T)``.
    """

    def __init__(
        self,
        n_eeg: int,
        n_meg: int,
        channels: Sequence[int] = (128, 256, 512),
        lstm_hidden: int = 512,
        dropout: float = 0.2,
        norm: str = "instance",
        cwt: MorletCWT | None = None,
        n_freqs: int = 1,
        input_skip: bool = False,
    ) -> None:
        super().__init__()
        self.input_skip = bool(input_skip)
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.n_eeg, self.n_meg = int(n_eeg), int(n_meg)
        self.cwt = cwt
        self.n_freqs = len(cwt.freqs) if cwt is not None else int(n_freqs)
        n_in = self.n_eeg * (cwt.n_parts if cwt is not None else 1)
        self.depth = len(channels)
        two_d = self.n_freqs > 1
        self.f_pad = int(math.ceil(self.n_freqs / 2**self.depth) * 2**self.depth) if two_d else 1
        k_conv = (3, 3) if two_d else (1, 3)
        pad_conv = (1, 1) if two_d else (0, 1)
        pool = (2, 2) if two_d else (1, 2)
        k_up, s_up, p_up = ((4, 4), (2, 2), (1, 1)) if two_d else ((1, 4), (1, 2), (0, 1))

        self.enc = nn.ModuleList()
        prev = n_in
        for c in channels:
            self.enc.append(
                nn.Sequential(
                    nn.Conv2d(prev, c, k_conv, stride=1, padding=pad_conv),
                    _norm(norm, c),
                    nn.LeakyReLU(0.2),
                )
            )
            prev = c
        self.pool = nn.MaxPool2d(pool)
        self.enc_drop = nn.Dropout(dropout)

        f_bottom = self.f_pad // (2**self.depth) if two_d else 1
        feat = channels[-1] * f_bottom
        self.lstm = nn.LSTM(
            feat, lstm_hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=dropout
        )
        self.bridge_proj = nn.Linear(2 * lstm_hidden, feat)
        self.bridge_drop = nn.Dropout(dropout)

        self.dec = nn.ModuleList()
        in_ch = channels[-1]
        for k in reversed(range(self.depth)):
            out_ch = channels[k - 1] if k > 0 else channels[0]
            self.dec.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_ch, out_ch, k_up, stride=s_up, padding=p_up),
                    _norm(norm, out_ch),
                    nn.ReLU(),
                )
            )
            in_ch = out_ch + channels[k]  # after concatenating the skip
        if self.input_skip:
            in_ch += n_in
        # spans the full (padded) frequency axis: one output row per MEG channel
        self.head = nn.Conv2d(in_ch, self.n_meg, (self.f_pad, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cwt is not None:
            if x.dim() != 3:
                raise ValueError(f"expected (batch, n_eeg, n_times), got {tuple(x.shape)}")
            x = self.cwt(x)
        elif x.dim() == 3:
            x = x.unsqueeze(2)
        if x.dim() != 4 or x.shape[2] != self.n_freqs:
            raise ValueError(f"input shape {tuple(x.shape)} does not match n_freqs={self.n_freqs}")
        n_t = x.shape[-1]
        mult = 2**self.depth
        t_pad = int(math.ceil(n_t / mult) * mult)
        # zero-pad (time right, frequency top) so every pooling halves exactly
        x = nn.functional.pad(x, (0, t_pad - n_t, 0, self.f_pad - x.shape[2]))
        inputs = x

        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = self.enc_drop(self._pool(x))

        b, c, f, t = x.shape
        seq = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        out, _ = self.lstm(seq)
        out = self.bridge_drop(self.bridge_proj(out))
        x = x + out.reshape(b, t, c, f).permute(0, 2, 3, 1)  # residual around the bridge

        for block, skip in zip(self.dec, reversed(skips), strict=True):
            x = torch.cat([block(x), skip], dim=1)
        if self.input_skip:
            x = torch.cat([x, inputs], dim=1)
        return self._head(x)[..., :n_t]

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] == 1:
            # Height-1 maps (raw input): the 1-D kernel computes the same
            # maxima and is ~15x faster on CPU than the 2-D one, which also
            # builds an index tensor.
            return nn.functional.max_pool1d(x.squeeze(2), 2).unsqueeze(2)
        return self.pool(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, f_pad, T)`` -> ``(B, n_meg, T)``."""
        if self.f_pad == 1:
            # On raw input the head is a 1x1 convolution, i.e. one matrix
            # product per window: as such it runs ~4x faster on CPU than
            # oneDNN's 1x1 convolution (same weights, same result).
            b = x.shape[0]
            weight = self.head.weight[:, :, 0, 0].expand(b, -1, -1)
            return torch.baddbmm(self.head.bias[None, :, None], weight, x[:, :, 0])
        return self.head(x).squeeze(2)


# ------------------------------------------------------------ normalisation
class ChannelScaler:
    """Per-channel affine normalisation ``z = (x - shift) / scale`` (+ log1p).

    ``method="zscore"``: shift = mean, scale = SD.
    ``method="minmax"``: shift = min, scale = max - min (paper, stage 1).
    ``log1p=True`` then applies ``log1p`` (paper, stage 2, on MEG);
    values below the training minimum are clamped just above -1 so the
    logarithm stays finite on unseen data.

    Statistics are accumulated window by window in float64, so fitting does
    not copy the data set.
    """

    def __init__(self, method: str = "zscore", log1p: bool = False) -> None:
        if method not in ("zscore", "minmax", "none"):
            raise ValueError(f"unknown normalisation {method!r}")
        self.method, self.log1p = method, bool(log1p)
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def fit(self, x: np.ndarray, idx: np.ndarray, chunk: int = 256) -> ChannelScaler:
        """Fit on windows ``x[idx]``; ``x`` of shape (n_windows, n_ch, n_times)."""
        n_ch = x.shape[1]
        if self.method == "none":
            self.shift, self.scale = np.zeros(n_ch), np.ones(n_ch)
            return self
        if self.method == "minmax":
            lo, hi = np.full(n_ch, np.inf), np.full(n_ch, -np.inf)
            for s in range(0, len(idx), chunk):
                blk = x[idx[s : s + chunk]]
                lo = np.minimum(lo, blk.min(axis=(0, 2)))
                hi = np.maximum(hi, blk.max(axis=(0, 2)))
            self.shift, self.scale = lo, hi - lo
        else:
            n, mean, m2 = 0, np.zeros(n_ch), np.zeros(n_ch)
            for s in range(0, len(idx), chunk):
                blk = np.asarray(x[idx[s : s + chunk]], np.float64)
                nb = blk.shape[0] * blk.shape[2]
                mb = blk.mean(axis=(0, 2))
                m2b = ((blk - mb[None, :, None]) ** 2).sum(axis=(0, 2))
                delta = mb - mean
                tot = n + nb
                mean = mean + delta * nb / tot
                m2 = m2 + m2b + delta**2 * n * nb / tot
                n = tot
            self.shift, self.scale = mean, np.sqrt(m2 / max(n, 1))
        # a flat channel would divide by zero; leave it unscaled instead
        self.scale = np.where(self.scale > 0, self.scale, 1.0)
        return self

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shift is None or self.scale is None:
            raise NotFittedError("ChannelScaler is not fitted")
        shift = torch.as_tensor(self.shift, dtype=like.dtype, device=like.device)[None, :, None]
        scale = torch.as_tensor(self.scale, dtype=like.dtype, device=like.device)[None, :, None]
        return shift, scale

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        shift, scale = self._params(x)
        z = (x - shift) / scale
        return torch.log1p(z.clamp_min(-1 + 1e-6)) if self.log1p else z

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        shift, scale = self._params(z)
        if self.log1p:
            z = torch.expm1(z)
        return z * scale + shift

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        assert self.shift is not None and self.scale is not None
        return {f"{prefix}.shift": self.shift, f"{prefix}.scale": self.scale}

    def load(self, tensors: dict[str, np.ndarray], prefix: str) -> None:
        self.shift = np.asarray(tensors[f"{prefix}.shift"], np.float64)
        self.scale = np.asarray(tensors[f"{prefix}.scale"], np.float64)


# --------------------------------------------------------------- translator
class SynaptechNetTranslator(Translator):
    """Synaptech-Net trained with MSE and Adam, early-stopped on training subjects.

    Parameters
    ----------
    width : float
        Scales encoder widths and LSTM size: 1.0 is the paper's
        ``(128, 256, 512)`` / 512; 0.125 a tiny model for tests and CPUs.
    channels : sequence of int, optional
        Explicit encoder widths (before ``width`` scaling); sets the depth.
    lstm_hidden : int
        LSTM hidden size per direction before ``width`` scaling.
    dropout : float
        Encoder / bridge dropout (paper: 0.2).
    norm : {"instance", "batch", "none"}
        Normalisation layer (paper: instance).
    normalization : {"zscore", "minmax_log1p", "none"}
        Data normalisation, fitted per channel on the inner-training subjects
        only. ``"minmax_log1p"`` is the paper's two-stage scheme (min-max on
        both, then log1p on MEG); predictions are mapped back to MEG units.
    cwt_freqs : sequence of float, optional
        Centre frequencies (Hz) of a complex-Morlet (cmor1.5-1.0) CWT input;
        requires ``sfreq``. None feeds the raw (normalised) signal.
    cwt_output : {"real", "complex", "abs"}
    sfreq : float, optional
        Sampling frequency of the windows (only needed for the CWT).
    lr, weight_decay : float
        Adam settings.
    batch_size, max_epochs, patience : int
        Mini-batch size, epoch limit, early-stopping patience (epochs).
        Under ``torchrun`` ``batch_size`` is the global batch, shared among
        the ranks, so N processes optimise as one process does.
    min_delta : float
        Minimum validation-loss improvement that resets the patience.
    val_fraction : float
        Fraction of training *subjects* (by ``groups``) held out for early
        stopping (at least one when there are two or more subjects; none
        without ``groups``).
    seed : int
        Controls initialisation, dropout, batch order and validation subjects.
    device : {"auto", "cpu", "cuda"}
    amp : bool
        Mixed precision, used on CUDA only (bfloat16 where supported).
    checkpoint_every_batches : int
        Extra mid-epoch checkpoints (0: at the end of each epoch only).
    restore_best : bool
        Return the weights of the best validation epoch.
    calibrate_output : bool
        After training, scale each MEG output by the least-squares gain
        (clipped at 0) that best fits the validation subjects' MEG, in
        normalised units. Why: on subjects it never saw, a network's
        prediction carries only part of what it learned on its training
        subjects, and MSE is lowest when the output shrinks towards the
        training mean by that share. The gain is learnt from training-side
        subjects only (the same ones early stopping reads), as ridge picks
        its penalty by cross-validation over training subjects; a gain near
        0 says the network's output did not carry over to them. Needs a
        validation split (gains stay 1 without one).
    calibration : {"pooled", "channel"}
        ``"pooled"`` (default): one gain for all MEG channels, the least
        squares over all of them; ``"channel"``: one per channel. Why pooled:
        with few validation subjects a per-channel gain is mostly chance
        correlation, and clipping it at 0 keeps the positive chances only,
        so where nothing carries over per-channel gains are biased upwards
        and the output hurts; a pooled gain averages that chance over ~100
        channels.
    input_skip : bool
        Concatenate the network's (normalised) input to the last decoder
        block's maps before the output layer (default False, the paper's
        network). Why: instance normalisation makes every feature map blind
        to its own amplitude in a window, so the paper's network predicts
        the same MEG for a window and for that window three times as
        strong, and cannot weigh EEG channels against each other by
        amplitude; the skip gives the output layer a spatial linear path.
        Measured on a shared linear map with window power varying as
        rhythms do (20 EEG, 30 MEG, 4 training subjects of 60 windows,
        width 0.125): held-out R² 0.17 without the skip, 0.36 with it,
        ridge 0.51.
    n_ensemble : int
        Networks trained (default 1, the paper's single network); the
        prediction is their mean. Member ``k`` is trained as a network with
        ``seed + k`` would be: its own initialisation, dropout, batch order
        and validation subjects (hence its own early stopping, normalisation
        statistics and output gain, all from training subjects). Why: with a
        few hundred training windows of noisy MEG, one network's held-out
        error is dominated by its variance (which chance initialisation and
        validation subject it got); averaging members removes part of it.
        Measured on 6 simulated subjects (``bench_translators.py --subjects
        6 --width 0.125 --input-skip``, leave-one-out, 40 epochs): held-out
        R² 0.032 with one network, 0.039 with 3 and weight decay 1e-3; ridge
        0.036. Not on a second dataset (``--seed 1``): see docs/index.md.

    Attributes
    ----------
    history_ : list of dict
        One row per epoch: ``epoch, train_loss, val_loss, lr, time_s``
        (losses in normalised units), ready to write as TSV.
    best_epoch_ : int
    val_subjects_, train_subjects_ : list of str
    completed_ : bool
        False when ``fit`` was interrupted by ``stop_hook``.
    output_gain_ : ndarray, shape (n_meg,)
        The calibration gains (ones when ``calibrate_output`` is False).
    members_ : list of SynaptechNetTranslator
        Ensemble members 1 to ``n_ensemble - 1`` (member 0 is this object:
        ``model_``, ``best_epoch_``, ``val_subjects_`` etc. are its).
        ``history_`` holds every member's epochs, with a ``member`` column
        when ``n_ensemble > 1``.
    """

    name = "synaptechnet"

    def __init__(
        self,
        width: float = 1.0,
        channels: Sequence[int] = (128, 256, 512),
        lstm_hidden: int = 512,
        dropout: float = 0.2,
        norm: str = "instance",
        normalization: str = "zscore",
        cwt_freqs: Sequence[float] | None = None,
        cwt_output: str = "real",
        sfreq: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 100,
        patience: int = 10,
        min_delta: float = 0.0,
        val_fraction: float = 0.2,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        checkpoint_every_batches: int = 0,
        restore_best: bool = True,
        calibrate_output: bool = True,
        calibration: str = "pooled",
        input_skip: bool = False,
        n_ensemble: int = 1,
    ) -> None:
        self.input_skip = bool(input_skip)
        self.n_ensemble = int(n_ensemble)
        if self.n_ensemble < 1:
            raise ValueError(f"n_ensemble must be at least 1, got {n_ensemble!r}")
        self.width = float(width)
        self.channels = tuple(int(c) for c in channels)
        self.lstm_hidden = int(lstm_hidden)
        self.dropout = float(dropout)
        self.norm = str(norm)
        if normalization not in ("zscore", "minmax_log1p", "none"):
            raise ValueError(f"unknown normalization {normalization!r}")
        self.normalization = normalization
        self.cwt_freqs = None if cwt_freqs is None else tuple(float(f) for f in cwt_freqs)
        self.cwt_output = cwt_output
        self.sfreq = None if sfreq is None else float(sfreq)
        if self.cwt_freqs is not None and self.sfreq is None:
            raise ValueError("cwt_freqs needs sfreq")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.batch_size, self.max_epochs = int(batch_size), int(max_epochs)
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.device, self.amp = str(device), bool(amp)
        self.checkpoint_every_batches = int(checkpoint_every_batches)
        self.restore_best = bool(restore_best)
        self.calibrate_output = bool(calibrate_output)
        if calibration not in ("pooled", "channel"):
            raise ValueError(f"calibration must be 'pooled' or 'channel', got {calibration!r}")
        self.calibration = calibration

    # ----------------------------------------------------------- building
    def _scaled(self) -> tuple[list[int], int]:
        chans = [max(1, round(c * self.width)) for c in self.channels]
        return chans, max(1, round(self.lstm_hidden * self.width))

    def build_model(self, n_eeg: int, n_meg: int) -> SynaptechNet:
        """The network these settings describe, freshly initialised."""
        chans, hidden = self._scaled()
        cwt = None
        if self.cwt_freqs is not None:
            assert self.sfreq is not None
            cwt = MorletCWT(self.sfreq, self.cwt_freqs, output=self.cwt_output)
        return SynaptechNet(n_eeg, n_meg, chans, hidden, self.dropout, self.norm, cwt=cwt,
                            input_skip=self.input_skip)

    def _scalers(self) -> tuple[ChannelScaler, ChannelScaler]:
        if self.normalization == "minmax_log1p":
            return ChannelScaler("minmax"), ChannelScaler("minmax", log1p=True)
        return ChannelScaler(self.normalization), ChannelScaler(self.normalization)

    def _split_subjects(self, groups: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner train / validation windows, whole training subjects apart."""
        if groups is None or self.val_fraction <= 0:
            if groups is None and self.val_fraction > 0:
                warnings.warn(
                    "SynaptechNetTranslator: no groups, so no subject-wise validation "
                    "split; training runs max_epochs without early stopping",
                    stacklevel=3,
                )
            return np.arange(n), np.arange(0)
        labels = np.asarray(groups).astype(str)
        subjects = np.array(sorted(set(labels.tolist())))
        if len(subjects) < 2:
            warnings.warn(
                "SynaptechNetTranslator: one subject only; no early stopping",
                stacklevel=3,
            )
            return np.arange(n), np.arange(0)
        n_val = min(len(subjects) - 1, max(1, round(self.val_fraction * len(subjects))))
        rng = np.random.default_rng(self.seed)
        val_subj = set(rng.choice(subjects, size=n_val, replace=False).tolist())
        is_val = np.isin(labels, list(val_subj))
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        eeg: np.ndarray,
        meg: np.ndarray,
        groups: np.ndarray | None = None,
        geometry: Any = None,
        checkpoint_dir: str | None = None,
        stop_hook: _training.StopHook | None = None,
        log: Any = None,
    ) -> SynaptechNetTranslator:
        """Train on the given training windows only.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        meg : ndarray, shape (n_windows, n_meg, n_times)
        groups : ndarray, shape (n_windows,), optional
            Subject labels; a ``val_fraction`` of these subjects is held out
            of the gradient steps for early stopping.
        geometry : ignored
        checkpoint_dir : path-like, optional
            Checkpoint directory; an existing checkpoint of the same data
            and settings is resumed (bit-identical result on CPU). Under
            ``torchrun`` only rank 0 writes it, and on resume rank 0 reads it
            and sends it to the other ranks (they need not share its disk).
        stop_hook : callable, optional
            ``stop_hook(history_row) -> bool`` after each epoch; True stops
            (as a wall-time limit would). ``completed_`` is then False and
            calling ``fit`` again with the same ``checkpoint_dir`` resumes.
        log : callable, optional
            Receives progress lines.

        Returns
        -------
        self
        """
        eeg, meg, groups = check_pair(eeg, meg, groups)
        fingerprint = ""
        if checkpoint_dir is not None:
            fingerprint = self._data_fingerprint(eeg, meg, groups)
        self._fit_one(eeg, meg, groups, fingerprint, checkpoint_dir, stop_hook, log)
        self.members_: list[SynaptechNetTranslator] = []
        if self.n_ensemble == 1:
            return self
        histories = [{**row, "member": 0} for row in self.history_]
        for k in range(1, self.n_ensemble):
            if not self.completed_:
                break
            if log is not None:
                log(f"ensemble member {k + 1} of {self.n_ensemble} (seed {self.seed + k})")
            member = self._member(k)
            member_dir = None
            if checkpoint_dir is not None:
                member_dir = os.path.join(checkpoint_dir, f"member-{k}")
            member._fit_one(eeg, meg, groups, f"{fingerprint}:member-{k}" if fingerprint else "",
                            member_dir, stop_hook, log)
            self.members_.append(member)
            histories += [{**row, "member": k} for row in member.history_]
            self.completed_ = member.completed_
        self.history_ = histories
        return self

    def _member(self, k: int) -> SynaptechNetTranslator:
        """Ensemble member ``k``, unfitted: this network's settings with ``seed + k``.

        A plain network even inside the hybrid (its members fit the same
        residual as member 0).
        """
        params = {name: getattr(self, name) for name in SynaptechNetTranslator._param_names()}
        member = SynaptechNetTranslator(**{**params, "seed": self.seed + k, "n_ensemble": 1})
        member.members_ = []
        return member

    def _fit_one(self, eeg: np.ndarray, meg: np.ndarray, groups: np.ndarray | None,
                 fingerprint: str, checkpoint_dir: str | None,
                 stop_hook: _training.StopHook | None, log: Any) -> None:
        """Train one network (this object's ``seed``) on checked arrays."""
        n_w, n_eeg, _ = eeg.shape
        n_meg = meg.shape[1]
        device = _training.resolve_device(self.device)
        tr_idx, va_idx = self._split_subjects(groups, n_w)
        labels = None if groups is None else np.asarray(groups).astype(str)
        self.train_subjects_ = [] if labels is None else sorted(set(labels[tr_idx].tolist()))
        self.val_subjects_ = [] if labels is None else sorted(set(labels[va_idx].tolist()))

        # normalisation statistics from the inner-training subjects only
        self.eeg_scaler_, self.meg_scaler_ = self._scalers()
        self.eeg_scaler_.fit(eeg, tr_idx)
        self.meg_scaler_.fit(meg, tr_idx)

        def make_batch(idx: np.ndarray, split: str) -> tuple[torch.Tensor, torch.Tensor]:
            rows = (tr_idx if split == "train" else va_idx)[idx]
            x = torch.as_tensor(eeg[rows], dtype=torch.float32).to(device, non_blocking=True)
            y = torch.as_tensor(meg[rows], dtype=torch.float32).to(device, non_blocking=True)
            return self.eeg_scaler_.transform(x), self.meg_scaler_.transform(y)

        cfg = _training.TrainConfig(
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            patience=self.patience,
            min_delta=self.min_delta,
            seed=self.seed,
            amp=self.amp,
            restore_best=self.restore_best,
            checkpoint_every_batches=self.checkpoint_every_batches,
        )
        with _training.seeded(self.seed, device):
            model = self.build_model(n_eeg, n_meg).to(device)
            result = _training.train(
                model,
                make_batch,
                len(tr_idx),
                len(va_idx),
                cfg,
                device,
                checkpoint_dir=checkpoint_dir,
                stop_hook=stop_hook,
                fingerprint=fingerprint,
                log=log,
            )
        self.model_ = model.cpu().eval()
        self.n_eeg_, self.n_meg_ = n_eeg, n_meg
        self.output_gain_ = np.ones(n_meg)
        if self.calibrate_output and len(va_idx) and result.completed:
            self.output_gain_ = self._calibration_gain(eeg, meg, va_idx)
            if log is not None:
                log(f"output calibration on {', '.join(self.val_subjects_)}: median gain "
                    f"{np.median(self.output_gain_):.2f}")
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.completed_ = result.completed
        self.stopped_early_ = result.stopped_early
        self._fitted = True

    def _data_fingerprint(self, eeg: np.ndarray, meg: np.ndarray, groups: Any) -> str:
        """Identifies training data and settings; a checkpoint of others is refused."""
        params = {k: v for k, v in self.get_params().items() if k != "device"}
        return _io.array_fingerprint(
            eeg, meg, groups, np.frombuffer(repr(sorted(params.items())).encode(), np.uint8)
        )

    def _normalised_prediction(
        self, eeg: np.ndarray, batch_size: int, windows: np.ndarray | None = None
    ) -> Any:
        """Yield (window indices, network output in normalised MEG units), batch by batch.

        ``windows`` picks the windows of ``eeg`` to run (default: all); only
        one batch of them is read at a time, so a memory map stays on disk.
        """
        windows = np.arange(len(eeg)) if windows is None else np.asarray(windows)
        device = _training.resolve_device(self.device)
        model = self.model_.to(device).eval()
        try:
            with torch.no_grad():
                for s in range(0, len(windows), batch_size):
                    rows = windows[s : s + batch_size]
                    # torch.tensor copies: the windows may be a read-only memory map
                    x = torch.tensor(eeg[rows], dtype=torch.float32).to(device)
                    yield rows, model(self.eeg_scaler_.transform(x))
        finally:
            self.model_ = model.cpu()

    def _calibration_gain(
        self, eeg: np.ndarray, meg: np.ndarray, windows: np.ndarray
    ) -> np.ndarray:
        """Least-squares gain (per channel, or pooled) of the output on these windows, >= 0."""
        num, den = np.zeros(self.n_meg_), np.zeros(self.n_meg_)
        for rows, pred in self._normalised_prediction(eeg, self.batch_size, windows):
            target = torch.as_tensor(meg[rows], dtype=torch.float32, device=pred.device)
            target = self.meg_scaler_.transform(target)
            num += (pred * target).sum(dim=(0, 2)).double().cpu().numpy()
            den += (pred * pred).sum(dim=(0, 2)).double().cpu().numpy()
        if self.calibration == "pooled":
            num, den = np.full_like(num, num.sum()), np.full_like(den, den.sum())
        return np.clip(num / np.maximum(den, np.finfo(float).tiny), 0.0, None)

    # ------------------------------------------------------------- predict
    def predict(
        self, eeg: np.ndarray, geometry: Any = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Translate EEG windows (any length) into MEG, in MEG units.

        Parameters
        ----------
        eeg : ndarray, shape (n_windows, n_eeg, n_times)
        geometry : ignored
        batch_size : int, optional
            Windows per forward pass (default: the training batch size, at
            least 64). In evaluation mode each window's output depends on
            that window alone, so this changes only speed and memory; the
            LSTM's matrix products run ~20% faster per window at 64 than at
            16 on a CPU.

        Returns
        -------
        meg : ndarray, shape (n_windows, n_meg, n_times), ``eeg``'s dtype
        """
        if not self.is_fitted:
            raise NotFittedError("SynaptechNetTranslator is not fitted")
        eeg = check_eeg(eeg)
        if eeg.shape[1] != self.n_eeg_:
            raise ValueError(f"model expects {self.n_eeg_} EEG channels, got {eeg.shape[1]}")
        bs = int(batch_size or max(self.batch_size, 64))
        out = self._predict_one(eeg, bs)
        for member in self.members_:
            out += member._predict_one(eeg, bs)
        out /= 1 + len(self.members_)
        return out

    def _predict_one(self, eeg: np.ndarray, batch_size: int) -> np.ndarray:
        """This network's calibrated prediction, in MEG units."""
        out = np.empty((eeg.shape[0], self.n_meg_, eeg.shape[2]), dtype=eeg.dtype)
        for rows, pred in self._normalised_prediction(eeg, batch_size):
            gain = torch.as_tensor(self.output_gain_, dtype=pred.dtype, device=pred.device)
            out[rows] = self.meg_scaler_.inverse(pred * gain[None, :, None]).cpu().numpy()
        return out

    # --------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = {
            f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()
        }
        tensors.update(self.eeg_scaler_.state("norm.eeg"))
        tensors.update(self.meg_scaler_.state("norm.meg"))
        tensors["calibration.gain"] = np.asarray(self.output_gain_, np.float64)
        fitted = {
            "n_eeg": self.n_eeg_,
            "n_meg": self.n_meg_,
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "completed": self.completed_,
            "stopped_early": self.stopped_early_,
            "train_subjects": self.train_subjects_,
            "val_subjects": self.val_subjects_,
        }
        # member 0 keeps the single network's names, so one network is saved
        # exactly as before ensembles existed
        fitted["members"] = []
        for k, member in enumerate(self.members_, start=1):
            member_tensors, member_fitted = member._get_state()
            tensors.update({f"member{k}.{name}": v for name, v in member_tensors.items()})
            fitted["members"].append(member_fitted)
        return tensors, fitted

    def _set_state(self, tensors: dict[str, np.ndarray], fitted: dict[str, Any]) -> None:
        self.n_eeg_, self.n_meg_ = int(fitted["n_eeg"]), int(fitted["n_meg"])
        # building initialises weights from the global RNG; fork it so that
        # loading a model does not change the caller's random stream
        with torch.random.fork_rng(devices=[]):
            model = self.build_model(self.n_eeg_, self.n_meg_)
        model.load_state_dict(
            {
                k[6:]: torch.from_numpy(v.copy())
                for k, v in tensors.items()
                if k.startswith("model.")
            }
        )
        self.model_ = model.eval()
        self.eeg_scaler_, self.meg_scaler_ = self._scalers()
        self.eeg_scaler_.load(tensors, "norm.eeg")
        self.meg_scaler_.load(tensors, "norm.meg")
        # models saved before output calibration existed have no gains
        self.output_gain_ = np.asarray(
            tensors.get("calibration.gain", np.ones(self.n_meg_)), np.float64)
        self.history_ = list(fitted.get("history", []))
        self.best_epoch_ = int(fitted.get("best_epoch", 0))
        self.completed_ = bool(fitted.get("completed", True))
        self.stopped_early_ = bool(fitted.get("stopped_early", False))
        self.train_subjects_ = list(fitted.get("train_subjects", []))
        self.val_subjects_ = list(fitted.get("val_subjects", []))
        self.members_ = []
        for k, member_fitted in enumerate(fitted.get("members", []), start=1):
            member = self._member(k)
            prefix = f"member{k}."
            member._set_state(
                {name[len(prefix):]: v for name, v in tensors.items() if name.startswith(prefix)},
                member_fitted)
            member._fitted = True
            self.members_.append(member)
