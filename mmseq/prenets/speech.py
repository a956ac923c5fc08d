"""Speech pre-nets of SpeechT5 (parameter names follow HF transformers, so checkpoints map by prefix only).

* :class:`SpeechEncoderPrenet` -- waveform -> wav2vec 2.0-style convolutional features (320x downsampling at
  the default strides), LayerNorm + projection, SpecAugment time masking with a learned mask embedding
  (training only), a convolutional relative position embedding and fairseq sinusoidal positions.
  Padding never changes a row's valid outputs: the first layer's per-channel normalisation uses valid steps
  only and padded frames are zeroed before the position convolution. (transformers normalises over the padded
  length, so its batched outputs for padded rows differ from its own unbatched ones.)
* :class:`SpeechDecoderPrenet` -- mel frames -> two ReLU layers with always-on dropout (Tacotron 2 style),
  projection, ESPnet scaled positions, and an optional speaker x-vector joined by a linear layer. The dropout
  can be switched off (``p = 0`` is the identity) and seeded with a ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import InputError
from mmseq.nn.conv import conv1d_time_major
from mmseq.nn.dropout import Dropout
from mmseq.nn.linear import Linear, project
from mmseq.nn.positional import (ConvPositionalEmbedding, ScaledPositionalEncoding, SinusoidalPositionalEmbedding,
                                 make_positions)


class ConvLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, group_norm: bool):
        super().__init__()
        if group_norm and in_dim != 1:
            raise ValueError("only a one-channel (waveform) layer takes the per-channel normalisation")
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        # The first layer normalises each channel over time (GroupNorm with one channel per group).
        self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True) if group_norm else None

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Time-major ``x [B, S, C_in]`` -> ``[B, T, C_out]``; ``lengths`` = valid output steps per row: the
        normalisation statistics use only those, so a padded row gets the values it would get alone.

        On the CPU the convolutions run as time-major matrix products (:mod:`mmseq.nn.conv`) and the first
        layer's normalisation is folded into per-row weights (:meth:`_normalised_from_waveform`); on other
        devices, where those would be Python loops of small kernels, both are plain torch operators
        (:meth:`reference`), which the CPU paths are tested against."""
        if x.device.type != "cpu":
            return self.reference(x, lengths)
        if self.layer_norm is not None:
            return F.gelu(self._normalised_from_waveform(x[:, :, 0], lengths))
        return F.gelu(conv1d_time_major(x, self.conv.weight, self.conv.bias, self.conv.stride[0]))

    def reference(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """:meth:`forward` with plain torch operators: ``F.conv1d`` channel-major, then for the first layer the
        per-channel normalisation with statistics over each row's valid steps."""
        y = F.conv1d(x.transpose(1, 2), self.conv.weight, self.conv.bias, stride=self.conv.stride[0])  # [B, C, T]
        norm = self.layer_norm
        if norm is not None:
            steps = y.shape[2]
            if lengths is None:
                lengths = torch.full((y.shape[0],), steps, dtype=torch.long, device=y.device)
            valid = (torch.arange(steps, device=y.device)[None, :] < lengths[:, None]).to(y.dtype)[:, None, :]
            count = valid.sum(2, keepdim=True)
            mean = (y * valid).sum(2, keepdim=True) / count
            var = ((y - mean).square() * valid).sum(2, keepdim=True) / count
            y = (y - mean) * torch.rsqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]
        return F.gelu(y).transpose(1, 2)

    def _normalised_from_waveform(self, wav: Tensor, lengths: Tensor | None) -> Tensor:
        """Convolution + per-channel normalisation of a one-channel input as one product per row.

        The convolution is linear in the input windows ``u`` (``k`` samples each), so a channel's mean over
        time is ``w . mean(u)`` and its variance ``w^T cov(u) w``, with ``cov(u)`` a ``k x k`` matrix. The
        normalisation folds into per-row weights ``w * scale`` and a shift, and the ``[T, C_out]`` output is
        written once, instead of computed and then read twice more for its statistics and normalisation.
        """
        norm, conv = self.layer_norm, self.conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        batch, samples = wav.shape
        steps = (samples - kernel) // stride + 1
        wav = wav.contiguous()
        windows = wav.as_strided((batch, steps, kernel), (samples, stride, 1), wav.storage_offset()).contiguous()
        weight = conv.weight[:, 0, :]  # [C_out, k]
        folded, shift = [], []
        for row in range(batch):
            valid = windows[row, : steps if lengths is None else int(lengths[row])]
            mean = valid.mean(0)
            centred = valid - mean
            cov = centred.t() @ centred / valid.shape[0]
            var = ((weight @ cov) * weight).sum(1)
            folded.append(weight * (norm.weight * torch.rsqrt(var + norm.eps))[:, None])
            shift.append(norm.bias - folded[-1] @ mean)  # a conv bias would cancel with the channel mean
        return torch.baddbmm(torch.stack(shift)[:, None, :], windows, torch.stack(folded).transpose(1, 2))


class FeatureEncoder(nn.Module):
    """Stack of strided 1-d convolutions over the raw waveform: ``[B, S]`` -> ``[B, C, T]``."""

    def __init__(self, dims: Sequence[int], kernels: Sequence[int], strides: Sequence[int], bias: bool = False):
        super().__init__()
        self.kernels, self.strides = list(kernels), list(strides)
        self.conv_layers = nn.ModuleList(
            ConvLayer(1 if i == 0 else dims[i - 1], dims[i], kernels[i], strides[i], bias, group_norm=i == 0)
            for i in range(len(dims))
        )

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for k, s in zip(self.kernels, self.strides):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return lengths

    @property
    def receptive_field(self) -> int:
        field = 1
        for k, s in reversed(list(zip(self.kernels, self.strides))):
            field = (field - 1) * s + k
        return field

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``wav [B, S]``; ``lengths [B]`` in samples (None: no padding) -> time-major ``[B, T, C]``.

        Every layer runs time-major as matrix products, which on CPUs is faster than the native convolution in
        both directions and needs no transpose before the projection (``mmseq.nn.conv``)."""
        x = wav[:, :, None]
        for layer, k, s in zip(self.conv_layers, self.kernels, self.strides):
            if lengths is not None:
                lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
            x = layer(x, lengths)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, in_dim: int, dim: int, eps: float, dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=eps)
        self.projection = Linear(in_dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.projection(self.layer_norm(x)))


def time_mask_spans(lengths: Tensor, max_length: int, mask_prob: float, span: int, min_spans: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """SpecAugment time mask ``[B, T]``: about ``mask_prob * length / span`` spans of ``span`` steps per row
    (at least ``min_spans``), starting uniformly inside the row's valid steps; spans may overlap."""
    mask = torch.zeros(len(lengths), max_length, dtype=torch.bool)
    for row, n in enumerate(lengths.tolist()):
        if n < span:
            continue
        expected = mask_prob * n / span + float(torch.rand((), generator=generator))
        count = max(min_spans, int(expected))
        count = min(count, n // span)
        starts = torch.randint(0, n - span + 1, (count,), generator=generator)
        for s in starts.tolist():
            mask[row, s : s + span] = True
    return mask


def check_waveforms(wav: Tensor, lengths: Tensor | None, receptive_field: int, what: str) -> Tensor:
    """Check ``wav [B, S]`` and return its ``lengths [B]`` (every row whole when None)."""
    if wav.dim() != 2 or not wav.is_floating_point():
        raise InputError(f"waveforms must be a float tensor [batch, samples], got {wav.dtype} {list(wav.shape)}")
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    short = int(lengths.min())
    if short < receptive_field:
        raise InputError(f"audio of {short} samples is shorter than the {what}'s receptive field "
                         f"({receptive_field} samples)")
    return lengths


def add_position_treatment(prenet: nn.Module, dim: int, pos_conv_kernel: int, pos_conv_groups: int,
                           mask_time_prob: float, mask_time_length: int, mask_time_min_masks: int,
                           max_positions: int, padding_idx: int) -> None:
    """Give a speech encoder pre-net what :func:`mask_and_position` reads: the learned mask embedding, the SpecAugment
    settings, the convolutional position embedding (kernel 0: none) and the sinusoidal positions."""
    prenet.masked_spec_embed = nn.Parameter(torch.empty(dim).uniform_())
    prenet.mask_time_prob, prenet.mask_time_length, prenet.mask_time_min_masks = (
        mask_time_prob, mask_time_length, mask_time_min_masks)
    prenet.pos_conv_embed = ConvPositionalEmbedding(dim, pos_conv_kernel, pos_conv_groups) if pos_conv_kernel else None
    prenet.padding_idx = padding_idx
    prenet.pos_sinusoidal_embed = SinusoidalPositionalEmbedding(dim, padding_idx, max_positions + padding_idx + 1)


def mask_and_position(prenet: nn.Module, x: Tensor, out_lengths: Tensor, time_mask: Tensor | None) -> Tensor:
    """What both speech encoder pre-nets do after their front-ends to ``x [B, T, D]``: zero the padded steps,
    replace masked steps by ``prenet.masked_spec_embed`` (SpecAugment spans drawn while training), then add the
    convolutional (when the pre-net has one) and sinusoidal positions."""
    padding = torch.arange(x.shape[1], device=x.device)[None, :] >= out_lengths[:, None]
    if bool(padding.any()):
        # Zero padded steps so the position convolution sees what it sees at the end of an unpadded row.
        x = x.masked_fill(padding[..., None], 0.0)
    if time_mask is None and prenet.training and prenet.mask_time_prob > 0:
        time_mask = time_mask_spans(out_lengths.cpu(), x.shape[1], prenet.mask_time_prob, prenet.mask_time_length,
                                    prenet.mask_time_min_masks).to(x.device)
    if time_mask is not None:
        x = torch.where(time_mask[..., None], prenet.masked_spec_embed.to(x.dtype), x)
    if prenet.pos_conv_embed is not None:
        x = x + prenet.pos_conv_embed(x)
    return x + prenet.pos_sinusoidal_embed(make_positions(padding, prenet.padding_idx)).to(x.dtype)


def waveform_dummy_inputs(prenet: nn.Module, batch_size: int) -> tuple[Tensor, Tensor]:
    """Waveforms long enough for SpecAugment spans (so every parameter is used in training mode)."""
    g = torch.Generator().manual_seed(0)
    n = prenet.receptive_field + prenet.downsample_rate * max(4, 2 * prenet.mask_time_length)
    lengths = torch.tensor([n - (i % 2) * n // 4 for i in range(batch_size)])
    wav = torch.randn(batch_size, n, generator=g) * 0.1
    wav[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    return wav, lengths


class SpeechEncoderPrenet(nn.Module):
    """Raw 16 kHz waveform ``[B, S]`` -> ``[B, T, D]`` at one step per ``downsample_rate`` samples.

    Args:
        dim: output width D.
        conv_dims / conv_kernels / conv_strides: the convolutional feature encoder.
        conv_bias: whether its convolutions have biases.
        pos_conv_kernel / pos_conv_groups: the convolutional position embedding.
        layer_norm_eps: eps of the feature LayerNorm.
        feature_dropout: dropout after the projection.
        mask_time_prob / mask_time_length / mask_time_min_masks: SpecAugment over time (training only).
        max_positions: initial size of the sinusoidal position table (grows on demand).
        padding_idx: position id of padding (SpeechT5: the text pad id, 1).
    """

    def __init__(self, dim: int = 768, conv_dims: Sequence[int] = (512,) * 7,
                 conv_kernels: Sequence[int] = (10, 3, 3, 3, 3, 2, 2), conv_strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
                 conv_bias: bool = False, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 layer_norm_eps: float = 1e-5, feature_dropout: float = 0.0, mask_time_prob: float = 0.05,
                 mask_time_length: int = 10, mask_time_min_masks: int = 2, max_positions: int = 4000,
                 padding_idx: int = 1):
        super().__init__()
        self.output_dim = dim
        self.modality = "waveform"
        self.downsample_rate = 1
        for s in conv_strides:
            self.downsample_rate *= s
        self.feature_encoder = FeatureEncoder(conv_dims, conv_kernels, conv_strides, conv_bias)
        self.feature_projection = FeatureProjection(conv_dims[-1], dim, layer_norm_eps, feature_dropout)
        add_position_treatment(self, dim, pos_conv_kernel, pos_conv_groups, mask_time_prob, mask_time_length,
                               mask_time_min_masks, max_positions, padding_idx)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return self.feature_encoder.output_lengths(lengths)

    @property
    def receptive_field(self) -> int:
        """Fewest input samples that give one output step."""
        return self.feature_encoder.receptive_field

    def forward(self, wav: Tensor, lengths: Tensor | None = None,
                time_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``wav [B, S]`` float, ``lengths [B]`` in samples -> ``([B, T, D], lengths [B])``.

        Args:
            time_mask: optional ``[B, T]`` bool steps to replace by the mask embedding (otherwise drawn while
                training when ``mask_time_prob > 0``).
        """
        lengths = check_waveforms(wav, lengths, self.receptive_field, "encoder")
        x = self.feature_projection(self.feature_encoder(wav, lengths))
        out_lengths = self.output_lengths(lengths).clamp(max=x.shape[1])
        return mask_and_position(self, x, out_lengths, time_mask), out_lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        return waveform_dummy_inputs(self, batch_size)


def _speaker_layer(x: Tensor, weight: Tensor, term: Tensor) -> Tensor:
    """``x [B, T, D] @ weight.T + term[:, None]``; one row streams the weight once (``addmv``)."""
    b, t, d = x.shape
    if b * t == 1:
        return project(x.view(1, d), weight, term.view(-1)).view(1, 1, -1)
    return torch.baddbmm(term[:, None, :], x, weight.t().expand(b, -1, -1))


class SpeechDecoderPrenet(nn.Module):
    """Mel frames ``[B, T, n_mels]`` (+ speaker x-vectors ``[B, S]``) -> ``[B, T, D]``.

    The Tacotron-style dropout stays on at inference, with one mask shared by the batch rows (as SpeechT5
    does). ``dropout = 0`` makes it the identity; ``generator`` makes its masks reproducible.

    Args:
        num_mel_bins: input frame width.
        dim: output width D.
        units / layers: the bottleneck MLP.
        dropout: the always-on dropout probability.
        speaker_embedding_dim: width of the x-vector (0: no speaker input).
        positional_dropout: dropout after the positional encoding.
    """

    downsample_rate = 1
    modality = "mel"

    def __init__(self, num_mel_bins: int = 80, dim: int = 768, units: int = 256, layers: int = 2,
                 dropout: float = 0.5, speaker_embedding_dim: int = 512, positional_dropout: float = 0.1,
                 max_positions: int = 4000):
        super().__init__()
        self.output_dim, self.num_mel_bins, self.dropout = dim, num_mel_bins, dropout
        self.layers = nn.ModuleList(Linear(num_mel_bins if i == 0 else units, units) for i in range(layers))
        self.final_layer = Linear(units, dim)
        self.encode_positions = ScaledPositionalEncoding(dim, positional_dropout, max_positions)
        self.speaker_embedding_dim = speaker_embedding_dim
        if speaker_embedding_dim:
            self.speaker_embeds_layer = Linear(speaker_embedding_dim + dim, dim)
        self.generator: torch.Generator | None = None

    def _always_on_dropout(self, x: Tensor) -> Tensor:
        if self.dropout <= 0:
            return x
        keep = 1.0 - self.dropout
        uniform = torch.rand(x.shape[1:], generator=self.generator, device=self.generator.device
                             if self.generator is not None else None).to(x.device, x.dtype)
        return x * uniform.lt_(keep).mul_(1.0 / keep)  # in place: the scaled mask in the draws' buffer

    def forward(self, frames: Tensor, lengths: Tensor | None = None, offset: int = 0,
                speaker_embeddings: Tensor | None = None,
                speaker_conditioning: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``frames [B, T, n_mels]``; ``offset`` = steps already decoded; ``speaker_embeddings [B, S]``, or their
        :meth:`speaker_conditioning` computed once for a whole generation."""
        if lengths is None:
            lengths = torch.full((frames.shape[0],), frames.shape[1], dtype=torch.long, device=frames.device)
        x = frames
        for layer in self.layers:
            x = self._always_on_dropout(F.relu(layer(x)))
        x = self.encode_positions(self.final_layer(x), offset)
        if speaker_conditioning is not None:
            weight, term = speaker_conditioning
            return F.relu_(_speaker_layer(x, weight, term)), lengths
        if speaker_embeddings is not None:
            if not self.speaker_embedding_dim:
                raise InputError("this model takes no speaker embeddings")
            spk = F.normalize(speaker_embeddings.to(x.dtype))[:, None, :].expand(-1, x.shape[1], -1)
            x = F.relu(self.speaker_embeds_layer(torch.cat([x, spk], dim=-1)))
        return x, lengths

    def step(self, x: Tensor, offset: int, speaker_conditioning: tuple[Tensor, Tensor] | None) -> Tensor:
        """:meth:`forward` for one frame per row, ``x [B, n_mels]`` -> ``[B, 1, D]``, for generation (no
        gradients): the same arithmetic with one-row products (:func:`~mmseq.nn.linear.project`) and no module
        calls, which cost more than the arithmetic at this size. It reads the layers' weights directly, so the
        decode engine calls it only when the pre-net is made of its plain modules (:data:`STEP_MODULES`); the
        dropout masks draw the same numbers as :meth:`forward`'s."""
        for layer in self.layers:
            x = self._always_on_dropout(F.relu_(project(x, layer.weight, layer.bias)))
        final = self.final_layer
        x = project(x, final.weight, final.bias).add_(self.encode_positions.scaled(offset, offset + 1, x.dtype))
        if speaker_conditioning is None:
            return x[:, None]
        weight, term = speaker_conditioning
        return F.relu_(_speaker_layer(x[:, None], weight, term))

    def speaker_conditioning(self, speaker_embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """The speaker layer split for decoding: ``relu(W [x; s/|s|] + b) = relu(W_x x + t)`` with the speaker
        term ``t = W_s s/|s| + b [B, D]`` computed once per utterance instead of once per step. Returns ``(W_x, t)``
        (``W_x`` contiguous); select rows of ``t`` as rows leave the batch."""
        if not self.speaker_embedding_dim:
            raise InputError("this model takes no speaker embeddings")
        layer = self.speaker_embeds_layer
        dim = self.output_dim
        spk = F.normalize(speaker_embeddings.to(layer.weight.dtype))
        term = F.linear(spk, layer.weight[:, dim:], layer.bias)
        return layer.weight[:, :dim].contiguous(), term

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(0)
        lengths = torch.tensor([6 - 2 * (i % 2) for i in range(batch_size)])
        return torch.randn(batch_size, 6, self.num_mel_bins, generator=g), lengths

    def dummy_conditioning(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Speaker x-vectors for :meth:`dummy_inputs` (none when the pre-net takes no speaker input)."""
        if not self.speaker_embedding_dim:
            return {}
        g = torch.Generator().manual_seed(1)
        return {"speaker_embeddings": torch.randn(batch_size, self.speaker_embedding_dim, generator=g)}


# What SpeechDecoderPrenet.step reads directly: a pre-net made of exactly these (no hooks) may take it.
STEP_MODULES = frozenset({SpeechDecoderPrenet, Linear, nn.ModuleList, ScaledPositionalEncoding, Dropout})
