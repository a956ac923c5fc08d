"""x-vector speaker encoder (Snyder et al. 2018), as SpeechBrain's ``spkrec-xvect-voxceleb``: the 512-d speaker
embeddings SpeechT5 conditions TTS and VC on.

A CNN family (its trunk is a stack of dilated 1-D convolutions, not a transformer sequence), composed by injection
and read top to bottom:

* front-end :class:`XVectorFbank` (no trained weights): SpeechBrain's ``Fbank`` (16 kHz, 25 ms Hamming windows
  every 10 ms, ``n_fft`` 400, centred with zero padding, power spectrum, 24 triangular mel filters from 0 to
  8000 Hz, ``10 log10`` with a floor of 1e-10 and an 80 dB range below each utterance's peak), then per-utterance
  mean normalisation (SpeechBrain's ``InputNormalization(norm_type="sentence", std_norm=False)``: the published
  model subtracts the mean and does not divide by the standard deviation);
* encoder :class:`TDNNEncoder`: five blocks of Conv1d -> LeakyReLU -> BatchNorm, channels 512 x 4 + 1500, kernels
  5, 3, 3, 1, 1, dilations 1, 2, 3, 1, 1, each convolution "same"-padded by reflection;
* embedding head :class:`XVectorEmbedding`: statistics pooling (mean and unbiased standard deviation over time,
  plus 1e-5) and ``Linear(2 x 1500 -> 512)``: the raw x-vector;
* classifier head :class:`XVectorClassifier` (training): SpeechBrain's ``Xvector.Classifier`` -- LeakyReLU,
  BatchNorm, one block of Linear(512 -> 512) -> LeakyReLU -> BatchNorm, Linear(512 -> speakers); logits (its
  log-softmax is left to the loss: cross-entropy on logits is SpeechBrain's NLL on log-softmax).

**Where the L2 normalisation happens.** :meth:`XVectorModel.embed` returns
``torch.nn.functional.normalize(xvector, dim=-1)`` of the raw x-vector: exactly what SpeechT5's data preparation
(``prep_*_spkemb.py``) and transformers' examples do after ``EncoderClassifier.encode_batch`` (whose default
``normalize=False`` leaves SpeechBrain's global embedding mean, ``mean_var_norm_emb``, unused). SpeechT5's speech
decoder pre-net normalises once more before concatenating. ``embed(..., center=True)`` subtracts that global mean
first, as ``encode_batch(normalize=True)`` does.

**Padding.** By default (``batching="exact"``) every row of a padded batch is embedded as if it were alone: the
spectral peak, the mean normalisation and the pooling read the row's own frames (``1 + samples // 160``) and every
convolution reflects at the row's own end, so the result equals SpeechBrain's ``encode_batch`` on that waveform
alone. SpeechBrain's own batched call is not batch-invariant (its convolutions reflect at the padded tensor's end,
its peak is over all frames and its frame counts come from rounded relative lengths); ``batching="speechbrain"``
reproduces it. Two deliberate differences: SpeechBrain adds uniform noise in [1e-5, 9e-5] to the pooled mean even
at inference (mmseq adds none), and an utterance of one frame gets standard deviation 1e-5 instead of NaN. In
training, batch normalisation takes its statistics over valid frames only.

Variants: ``xvector_base`` (the published sizes: 4.2M encoder + embedding parameters, a 7205-speaker classifier for
VoxCeleb 1 + 2) and ``xvector_tiny`` (tests and the synthetic-corpus recipe; still 512-d embeddings, the width
SpeechT5 takes). :func:`speechbrain_key_map` maps SpeechBrain's ``embedding_model.ckpt`` / ``classifier.ckpt`` keys
(:mod:`mmseq.interop.speechbrain` reads them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.registry import register_model

FEATURE_NORMS = ("mean", "mean_var", "none")
BATCHING = ("exact", "speechbrain")
LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default, which SpeechBrain's x-vector uses
STD_EPS = 1e-5  # SpeechBrain's StatisticsPooling adds this to the standard deviation


def valid_mask(lengths: Tensor, total: int) -> Tensor:
    """``[B, total]`` True at each row's first ``lengths`` steps."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


def reflect_indices(lengths: Tensor, total: int, pad: int) -> Tensor:
    """Source index of every position of a row reflect-padded by ``pad`` at both of its own ends.

    Position ``p`` of the padded row (``p`` in ``[0, total + 2 pad)``) reads ``p - pad`` folded back into
    ``[0, length)`` the way ``F.pad(mode="reflect")`` reflects (the edge sample is not repeated), repeatedly for
    rows shorter than the padding. Positions past ``length + 2 pad`` read something unspecified (no valid output
    uses them).

    Args:
        lengths: valid steps per row ``[B]`` (>= 1).
        total: the padded length T of the rows.
        pad: steps added on each side.

    Returns:
        ``[B, total + 2 pad]`` long indices into ``[0, total)``.
    """
    positions = torch.arange(-pad, total + pad, device=lengths.device)[None, :]
    last = (lengths - 1).clamp(min=0)[:, None]
    period = (2 * last).clamp(min=1)
    folded = torch.remainder(positions, period)
    index = torch.where(folded > last, period - folded, folded)
    return torch.where(last == 0, torch.zeros_like(index), index)


def reflect_pad(x: Tensor, lengths: Tensor, pad: int) -> Tensor:
    """``x [B, C, T]`` reflect-padded by ``pad`` steps at each row's own start and end -> ``[B, C, T + 2 pad]``."""
    if pad == 0:
        return x
    index = reflect_indices(lengths, x.shape[-1], pad)
    return torch.gather(x, 2, index[:, None, :].expand(-1, x.shape[1], -1))


def masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, lengths: Tensor | None) -> Tensor:
    """``norm`` on ``x [B, C, T]``; in training, with batch statistics over valid steps only (padding would bias
    them). Padded steps of the result are 0 then. In eval mode (running statistics) it is ``norm(x)``."""
    if not norm.training or lengths is None or bool((lengths >= x.shape[-1]).all()):
        return norm(x)
    mask = valid_mask(lengths, x.shape[-1])
    steps = x.transpose(1, 2)  # [B, T, C]
    out = steps.new_zeros(steps.shape)
    out[mask] = norm(steps[mask])  # [N, C]: statistics over the N valid steps
    return out.transpose(1, 2)


# --- front-end ---------------------------------------------------------------------------------------------------

def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """SpeechBrain's triangular mel filters ``[n_fft // 2 + 1, n_mels]`` (its ``Filterbank`` with
    ``filter_shape="triangular"``, computed with the same float32 operations).

    Centres are equally spaced on the mel scale ``2595 log10(1 + f / 700)`` between ``f_min`` and ``f_max``; each
    filter rises from the previous centre and falls to the next with the slope of its left band.
    """
    to_mel = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
    mel = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = (hz[1:] - hz[:-1])[:-1]
    centre = hz[1:-1]
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slope = (freqs[None, :] - centre[:, None]) / band[:, None]  # [n_mels, n_stft]
    return torch.clamp(torch.minimum(slope + 1.0, -slope + 1.0), min=0.0).transpose(0, 1).contiguous()


class XVectorFbank(nn.Module):
    """Waveforms -> SpeechBrain ``Fbank`` log-mel frames, normalised per utterance (no trained weights).

    Args:
        sample_rate: input rate in Hz.
        n_fft: FFT size (SpeechBrain: 400).
        win_ms / hop_ms: window and hop in milliseconds (25 / 10).
        n_mels: mel filters (the published x-vector: 24).
        f_min / f_max: filter range in Hz (f_max None: ``sample_rate // 2``).
        top_db: dynamic range kept below each utterance's peak (SpeechBrain: 80 dB).
        feature_norm: ``"mean"`` (the published model: subtract each utterance's mean), ``"mean_var"`` (also divide
            by its standard deviation) or ``"none"``.

    Attributes:
        output_dim: ``n_mels``; downsample_rate: the hop in samples; modality: ``"waveform"``.
    """

    modality = "waveform"

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_mels: int = 24, f_min: float = 0.0, f_max: float | None = None, top_db: float = 80.0,
                 feature_norm: str = "mean"):
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise ConfigError(unknown_choice("x-vector feature_norm", feature_norm, FEATURE_NORMS))
        f_max = sample_rate // 2 if f_max is None else f_max
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ConfigError(f"x-vector filterbank needs 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, "
                              f"f_max={f_max}, sample_rate={sample_rate}")
        self.sample_rate, self.n_fft, self.n_mels, self.top_db = sample_rate, n_fft, n_mels, top_db
        self.win_length = int(round(sample_rate / 1000.0 * win_ms))
        self.hop_length = int(round(sample_rate / 1000.0 * hop_ms))
        if not 0 < self.win_length <= n_fft:
            raise ConfigError(f"x-vector window of {self.win_length} samples must lie in [1, n_fft={n_fft}]")
        self.feature_norm = feature_norm
        self.output_dim, self.downsample_rate = n_mels, self.hop_length
        # Recomputed, never saved.
        self.register_buffer("window", torch.hamming_window(self.win_length), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max), persistent=False)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of each row: ``1 + samples // hop`` (a centred STFT)."""
        return 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")

    def log_mel(self, wav: Tensor, peak_lengths: Tensor) -> Tensor:
        """``[B, S]`` -> log-mel ``[B, 1 + S // hop, n_mels]`` in dB, each row clipped to ``top_db`` below its peak
        over its first ``peak_lengths`` frames."""
        spec = torch.stft(wav.float(), self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="constant", normalized=False, onesided=True, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1).transpose(1, 2)  # [B, T, n_fft // 2 + 1]
        db = 10.0 * torch.log10(torch.clamp(power @ self.filters, min=1e-10))
        valid = valid_mask(peak_lengths, db.shape[1])[..., None]
        peak = db.masked_fill(~valid, float("-inf")).amax(dim=(1, 2)) - self.top_db
        return torch.maximum(db, peak[:, None, None])

    def normalize(self, feats: Tensor, stat_lengths: Tensor) -> Tensor:
        """Per-utterance normalisation with statistics over each row's first ``stat_lengths`` frames."""
        if self.feature_norm == "none":
            return feats
        mask = valid_mask(stat_lengths, feats.shape[1])[..., None].to(feats.dtype)
        count = mask.sum(1, keepdim=True)
        mean = (feats * mask).sum(1, keepdim=True) / count
        if self.feature_norm == "mean":
            return feats - mean
        std = (((feats - mean) * mask).square().sum(1, keepdim=True) / count).sqrt()
        return (feats - mean) / std.clamp(min=1e-10)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each row as if alone.

        Args:
            wav: waveforms ``[B, S]`` (or ``[S]``); samples past a row's length are ignored.
            lengths: valid samples per row ``[B]``; None: all ``S``.

        Returns:
            ``(frames [B, 1 + S // hop, n_mels], frame_lengths [B])``; frames past a row's length are 0.
        """
        wav, lengths = check_waveforms(wav, lengths)
        wav = wav.masked_fill(~valid_mask(lengths, wav.shape[1]), 0.0)  # the row's own zero padding
        frame_lengths = self.frame_lengths(lengths)
        feats = self.normalize(self.log_mel(wav, frame_lengths), frame_lengths)
        return feats.masked_fill(~valid_mask(frame_lengths, feats.shape[1])[..., None], 0.0), frame_lengths


def check_waveforms(wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """``[S]`` or ``[B, S]`` floating waveforms and ``lengths [B]`` in ``[1, S]`` (None: all S)."""
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or not wav.is_floating_point():
        raise InputError(f"the x-vector model takes floating waveforms [B, samples], got {wav.dtype} of shape "
                         f"{tuple(wav.shape)}")
    if lengths is None:
        return wav, torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    lengths = torch.as_tensor(lengths, device=wav.device).long()
    if lengths.shape != (wav.shape[0],) or (wav.shape[0] and (int(lengths.min()) < 1
                                                                 or int(lengths.max()) > wav.shape[1])):
        raise InputError(f"waveform lengths must be [{wav.shape[0]}] values in [1, {wav.shape[1]}], got "
                         f"{lengths.tolist()}")
    return wav, lengths


# --- encoder -----------------------------------------------------------------------------------------------------

class TDNNBlock(nn.Module):
    """Conv1d (reflect "same" padding) -> LeakyReLU -> BatchNorm, on ``[B, C, T]``."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, dilation: int):
        super().__init__()
        self.pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, dilation=dilation)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, x: Tensor, lengths: Tensor, edge_lengths: Tensor) -> Tensor:
        """``x [B, C_in, T]`` -> ``[B, C_out, T]``; ``edge_lengths``: where each row's reflection happens."""
        hidden = F.leaky_relu(self.conv(reflect_pad(x, edge_lengths, self.pad)), LEAKY_SLOPE)
        return masked_batch_norm(self.norm, hidden, lengths)


class TDNNEncoder(nn.Module):
    """The x-vector's frame-level layers: frames ``[B, T, F]`` -> hidden ``[B, T, C_last]``.

    Args:
        input_dim: frame width F.
        channels / kernels / dilations: one entry per block (odd kernels: "same" padding).

    Attributes:
        output_dim: ``channels[-1]``; downsample_rate: 1 (frames in, frames out).
    """

    def __init__(self, input_dim: int, channels: Sequence[int], kernels: Sequence[int], dilations: Sequence[int]):
        super().__init__()
        if not len(channels) == len(kernels) == len(dilations) or not channels:
            raise ConfigError(f"x-vector channels, kernels and dilations need one entry per block, got {len(channels)}"
                              f", {len(kernels)} and {len(dilations)}")
        if any(k % 2 == 0 or k < 1 for k in kernels) or any(d < 1 for d in dilations):
            raise ConfigError(f"x-vector kernels must be odd and dilations >= 1, got {list(kernels)}, {list(dilations)}")
        dims = [input_dim, *channels]
        self.blocks = nn.ModuleList(TDNNBlock(dims[i], dims[i + 1], k, d)
                                    for i, (k, d) in enumerate(zip(kernels, dilations)))
        self.input_dim, self.output_dim, self.downsample_rate = input_dim, dims[-1], 1

    def forward(self, frames: Tensor, lengths: Tensor | None = None,
                edge_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(hidden [B, T, C], lengths [B])``.

        Args:
            frames: ``[B, T, F]``.
            lengths: valid frames per row; None: all T.
            edge_lengths: where each row's convolutions reflect (default: ``lengths``, each row as if alone;
                ``T`` for every row reproduces SpeechBrain on a padded batch).
        """
        if frames.dim() != 3 or frames.shape[-1] != self.input_dim:
            raise InputError(f"the TDNN encoder takes frames [B, T, {self.input_dim}], got {tuple(frames.shape)}")
        if lengths is None:
            lengths = torch.full((frames.shape[0],), frames.shape[1], dtype=torch.long, device=frames.device)
        edges = lengths if edge_lengths is None else edge_lengths
        x = frames.transpose(1, 2)
        for block in self.blocks:
            x = block(x, lengths, edges)
        return x.transpose(1, 2), lengths


# --- heads -------------------------------------------------------------------------------------------------------

def statistics_pooling(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Mean and unbiased standard deviation (+1e-5) over each row's valid steps: ``[B, T, C]`` -> ``[B, 2C]``."""
    mask = valid_mask(lengths, hidden.shape[1])[..., None].to(hidden.dtype)
    count = mask.sum(1)
    mean = (hidden * mask).sum(1) / count
    var = ((hidden - mean[:, None]).square() * mask).sum(1) / (count - 1).clamp(min=1)
    return torch.cat([mean, var.sqrt() + STD_EPS], dim=-1)


class XVectorEmbedding(nn.Module):
    """Statistics pooling then ``Linear(2C -> E)``: hidden ``[B, T, C]`` -> raw x-vectors ``[B, E]``.

    The buffer ``mean [E]`` is SpeechBrain's global embedding mean (``mean_var_norm_emb``; zeros unless imported),
    subtracted only by ``XVectorModel.embed(..., center=True)``.
    """

    modality = "embedding"

    def __init__(self, input_dim: int, embedding_dim: int):
        super().__init__()
        self.linear = nn.Linear(2 * input_dim, embedding_dim)
        self.register_buffer("mean", torch.zeros(embedding_dim))
        self.output_dim = embedding_dim

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.linear(statistics_pooling(hidden, lengths))


class XVectorClassifier(nn.Module):
    """SpeechBrain's ``Xvector.Classifier``: raw x-vectors ``[B, E]`` -> speaker logits ``[B, num_classes]``.

    LeakyReLU, BatchNorm(E), then ``blocks`` x [Linear(-> hidden_dim), LeakyReLU, BatchNorm], then the output
    Linear (no log-softmax: the loss takes logits).
    """

    modality = "classes"

    def __init__(self, embedding_dim: int, num_classes: int, blocks: int = 1, hidden_dim: int = 512):
        super().__init__()
        self.norm = nn.BatchNorm1d(embedding_dim)
        dims = [embedding_dim] + [hidden_dim] * blocks
        self.blocks = nn.ModuleList(nn.ModuleDict({"linear": nn.Linear(dims[i], dims[i + 1]),
                                                   "norm": nn.BatchNorm1d(dims[i + 1])}) for i in range(blocks))
        self.output = nn.Linear(dims[-1], num_classes)
        self.num_classes = num_classes

    def forward(self, xvectors: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = self.norm(F.leaky_relu(xvectors, LEAKY_SLOPE))
        for block in self.blocks:
            x = block["norm"](F.leaky_relu(block["linear"](x), LEAKY_SLOPE))
        return self.output(x)


# --- the model ---------------------------------------------------------------------------------------------------

class XVectorModel(nn.Module):
    """front-end -> TDNN encoder -> statistics pooling + embedding [-> speaker classifier].

    ``model(wav, lengths)`` gives the classifier's logits (training; the raw x-vectors without a classifier);
    :meth:`embed` gives the L2-normalised x-vectors SpeechT5 takes.
    """

    def __init__(self, frontend: XVectorFbank, encoder: TDNNEncoder, embedding: XVectorEmbedding,
                 classifier: XVectorClassifier | None = None):
        super().__init__()
        if frontend.output_dim != encoder.input_dim:
            raise ValueError(f"front-end output_dim {frontend.output_dim} != encoder input {encoder.input_dim}")
        self.frontend, self.encoder, self.embedding, self.classifier = frontend, encoder, embedding, classifier

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def embedding_dim(self) -> int:
        return self.embedding.output_dim

    @property
    def downsample_rate(self) -> int:
        return self.frontend.downsample_rate

    @property
    def reads(self) -> str:
        return "waveform"

    @property
    def writes(self) -> str:
        return "embedding" if self.classifier is None else "classes"

    def xvectors(self, wav: Tensor, lengths: Tensor | None = None, batching: str = "exact") -> Tensor:
        """Raw (unnormalised) x-vectors ``[B, E]`` of waveforms ``[B, S]`` with ``lengths [B]`` samples.

        ``batching="exact"``: each row as if alone (SpeechBrain's ``encode_batch`` on that waveform alone);
        ``"speechbrain"``: SpeechBrain's ``encode_batch(wav, lengths / S)`` on the padded batch (see the module
        notes).
        """
        if batching not in BATCHING:
            raise ConfigError(unknown_choice("x-vector batching", batching, BATCHING))
        if batching == "exact":
            frames, frame_lengths = self.frontend(wav, lengths)
            hidden, frame_lengths = self.encoder(frames, frame_lengths)
            return self.embedding(hidden, frame_lengths)
        wav, lengths = check_waveforms(wav, lengths)
        total = self.frontend.frame_lengths(torch.tensor(wav.shape[1])).item()
        relative = lengths.float() / wav.shape[1]
        # SpeechBrain's frame counts from relative lengths: its padding mask (``make_padding_mask``) and its
        # statistics pooling (``round``) count differently.
        norm_lengths = (torch.arange(total, device=wav.device)[None, :] < (relative * total - 1e-6)[:, None]).sum(1)
        pool_lengths = torch.round(relative * total).long()
        everything = torch.full_like(lengths, total)
        feats = self.frontend.normalize(self.frontend.log_mel(wav, everything), norm_lengths)
        hidden, _ = self.encoder(feats, pool_lengths, edge_lengths=everything)
        return self.embedding(hidden, pool_lengths)

    def embed(self, wav: Tensor, lengths: Tensor | None = None, batching: str = "exact",
              center: bool = False) -> Tensor:
        """L2-normalised x-vectors ``[B, E]``: ``F.normalize(xvector, dim=-1)``, as SpeechT5 uses them.

        Args:
            wav: waveforms ``[B, S]`` at :attr:`sample_rate` (zero-padded); ``[S]`` for one.
            lengths: valid samples per row ``[B]``; None: all S.
            batching: ``"exact"`` or ``"speechbrain"`` (see :meth:`xvectors`).
            center: subtract the global embedding mean first (SpeechBrain's ``encode_batch(normalize=True)``).
        """
        x = self.xvectors(wav, lengths, batching)
        if center:
            x = x - self.embedding.mean
        return F.normalize(x, dim=-1)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Speaker logits ``[B, num_classes]`` (raw x-vectors ``[B, E]`` for a model without a classifier)."""
        x = self.xvectors(wav, lengths)
        return x if self.classifier is None else self.classifier(x)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Random waveforms of 0.2 s (one row in two shorter) and their lengths."""
        g = torch.Generator().manual_seed(0)
        n = self.sample_rate // 5
        lengths = torch.tensor([n - (i % 2) * n // 3 for i in range(batch_size)])
        wav = torch.randn(batch_size, n, generator=g) * 0.1
        return {"wav": wav.masked_fill(~valid_mask(lengths, n), 0.0), "lengths": lengths}


def xvector(n_mels: int, channels: Sequence[int], kernels: Sequence[int], dilations: Sequence[int],
            embedding_dim: int, num_classes: int, classifier_blocks: int, classifier_dim: int, feature_norm: str,
            sample_rate: int, n_fft: int, win_ms: float, hop_ms: float, f_min: float,
            f_max: float | None) -> XVectorModel:
    """Build an x-vector model (plain values; the registered variants hold the defaults). ``num_classes=0``: no
    classifier (an embedding-only model, e.g. SpeechBrain's without ``classifier.ckpt``)."""
    if num_classes < 0 or classifier_blocks < 0 or embedding_dim < 1:
        raise ConfigError(f"x-vector needs num_classes >= 0, classifier_blocks >= 0 and embedding_dim >= 1, got "
                          f"{num_classes}, {classifier_blocks}, {embedding_dim}")
    frontend = XVectorFbank(sample_rate, n_fft, win_ms, hop_ms, n_mels, f_min, f_max, feature_norm=feature_norm)
    encoder = TDNNEncoder(n_mels, tuple(channels), tuple(kernels), tuple(dilations))
    embedding = XVectorEmbedding(encoder.output_dim, embedding_dim)
    classifier = (XVectorClassifier(embedding_dim, num_classes, classifier_blocks, classifier_dim)
                  if num_classes else None)
    return XVectorModel(frontend, encoder, embedding, classifier)


@register_model
def xvector_base(n_mels: int = 24, channels: Sequence[int] = (512, 512, 512, 512, 1500),
                 kernels: Sequence[int] = (5, 3, 3, 1, 1), dilations: Sequence[int] = (1, 2, 3, 1, 1),
                 embedding_dim: int = 512, num_classes: int = 7205, classifier_blocks: int = 1,
                 classifier_dim: int = 512, feature_norm: str = "mean", sample_rate: int = 16000, n_fft: int = 400,
                 win_ms: float = 25.0, hop_ms: float = 10.0, f_min: float = 0.0,
                 f_max: float | None = None) -> XVectorModel:
    """SpeechBrain ``spkrec-xvect-voxceleb`` (``hyperparams.yaml``; VoxCeleb 1 + 2: 7205 speakers)."""
    return xvector(n_mels, channels, kernels, dilations, embedding_dim, num_classes, classifier_blocks,
                   classifier_dim, feature_norm, sample_rate, n_fft, win_ms, hop_ms, f_min, f_max)


@register_model
def xvector_tiny(n_mels: int = 24, channels: Sequence[int] = (64, 64, 64, 64, 128),
                 kernels: Sequence[int] = (5, 3, 3, 1, 1), dilations: Sequence[int] = (1, 2, 3, 1, 1),
                 embedding_dim: int = 512, num_classes: int = 4, classifier_blocks: int = 1,
                 classifier_dim: int = 64, feature_norm: str = "mean", sample_rate: int = 16000, n_fft: int = 400,
                 win_ms: float = 25.0, hop_ms: float = 10.0, f_min: float = 0.0,
                 f_max: float | None = None) -> XVectorModel:
    """A narrow x-vector for tests and the synthetic-corpus recipe (still 512-d embeddings, SpeechT5's width)."""
    return xvector(n_mels, channels, kernels, dilations, embedding_dim, num_classes, classifier_blocks,
                   classifier_dim, feature_norm, sample_rate, n_fft, win_ms, hop_ms, f_min, f_max)


# --- SpeechBrain key map -----------------------------------------------------------------------------------------

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def speechbrain_key_map(num_blocks: int, classifier_blocks: int | None) -> dict[str, str]:
    """mmseq name -> SpeechBrain name, prefixed ``embedding_model.`` or ``classifier.`` (the ``.ckpt`` they are in).

    SpeechBrain's ``Xvector.blocks`` holds, per TDNN block ``i``, ``Conv1d`` at ``3i``, the activation at ``3i + 1``
    and ``BatchNorm1d`` at ``3i + 2``, then ``StatisticsPooling`` and the ``Linear`` (at ``3n + 1``); its wrappers
    keep the torch modules as ``.conv``, ``.norm`` and ``.w``. ``classifier_blocks=None``: no classifier.
    """
    pairs: dict[str, str] = {}
    for i in range(num_blocks):
        pairs.update({f"encoder.blocks.{i}.conv.{p}": f"embedding_model.blocks.{3 * i}.conv.{p}"
                      for p in ("weight", "bias")})
        pairs.update({f"encoder.blocks.{i}.norm.{p}": f"embedding_model.blocks.{3 * i + 2}.norm.{p}" for p in _BN})
    pairs.update({f"embedding.linear.{p}": f"embedding_model.blocks.{3 * num_blocks + 1}.w.{p}"
                  for p in ("weight", "bias")})
    if classifier_blocks is not None:
        pairs.update({f"classifier.norm.{p}": f"classifier.norm.norm.{p}" for p in _BN})
        for i in range(classifier_blocks):
            pairs.update({f"classifier.blocks.{i}.linear.{p}": f"classifier.DNN.block_{i}.linear.w.{p}"
                          for p in ("weight", "bias")})
            pairs.update({f"classifier.blocks.{i}.norm.{p}": f"classifier.DNN.block_{i}.norm.norm.{p}" for p in _BN})
        pairs.update({f"classifier.output.{p}": f"classifier.out.w.{p}" for p in ("weight", "bias")})
    return pairs
