"""wav2vec 2.0: a waveform encoder (convolutional features + transformer), and a seq2seq SLU model on it.

The encoder is composed from the speech pieces SpeechT5 shares with it (:mod:`mmseq.prenets.speech`: the
convolutional feature encoder, the feature projection, the convolutional position embedding) and the shared
:class:`~mmseq.nn.transformer.TransformerEncoder`; wav2vec 2.0 adds no sinusoidal positions, so its pre-net is
:class:`Wav2Vec2Prenet` here rather than SpeechT5's. Parameter names below the top level are transformers'
(``Wav2Vec2Model``), so :mod:`mmseq.interop.hf_wav2vec2` maps a transformers folder by prefixes.

Two layouts, as transformers' config names them:

* base (``feat_extract_norm="group"``, ``do_stable_layer_norm=False``): the first convolution normalises each
  channel over time (GroupNorm), the transformer is post-LN with a layer norm on its input;
* large / "stable layer norm" (``feat_extract_norm="layer"``, ``norm_first=True``): every convolution is followed
  by a LayerNorm over channels, the transformer is pre-LN with a final layer norm.

Padding. mmseq always masks padded frames: they are zeroed before the position convolution and excluded from
attention, and the first layer's GroupNorm (base) takes its statistics over each row's valid samples only. So a row's
valid outputs are the same in a padded batch as alone, in both layouts. transformers agrees for the large layout
(with an ``attention_mask``); for base models its feature extractors return no attention mask, so a padded row is
encoded with its padding (zeros attended to), and even with a mask its GroupNorm statistics run over the padded
length -- there mmseq's padded outputs equal transformers' outputs of the row *alone*, not of the padded batch.

SpecAugment while training (``mask_time_prob``, ``mask_feature_prob``) draws its spans with mmseq's
:func:`~mmseq.prenets.speech.time_mask_spans` (torch's generator), not transformers' numpy draws.

:func:`wav2vec2_seq2seq` is the encoder + a randomly initialised SpeechT5-style text decoder (token pre-net,
transformer decoder cross-attending to the encoder, LM head), trained by the ``slu_seq2seq`` task as COCONUT's SLU
model; its encoder is built from the size arguments, or ``encoder_from`` a transformers folder (loaded by
``mmseq train`` / :func:`mmseq.checkpoint.build_model`; the builder does no I/O).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import ConfigError, InputError
from mmseq.models.compose import EncoderDecoderModel, EncoderModel
from mmseq.models.speecht5 import PAD
from mmseq.nn.conv import conv1d_time_major
from mmseq.nn.positional import ConvPositionalEmbedding
from mmseq.nn.transformer import ACTIVATIONS, LayerSpec, TransformerDecoder, TransformerEncoder
from mmseq.postnets.projection import ProjectionHeads
from mmseq.postnets.text import CTCHead, LMHead
from mmseq.prenets.speech import (FeatureEncoder, FeatureProjection, check_waveforms, time_mask_spans,
                                  waveform_dummy_inputs)
from mmseq.prenets.text import TokenPrenet
from mmseq.registry import build_submodel, is_registered, register_model, register_variant

FEATURE_NORMS = ("group", "layer")


# --- pre-net -------------------------------------------------------------------------------------------------------

class LayerNormConvLayer(nn.Module):
    """A convolution followed by a LayerNorm over channels and GELU (``feat_extract_norm="layer"``), time-major:
    ``[B, S, C_in]`` -> ``[B, T, C_out]``. Each output step depends on its own window only, so padding never
    changes the valid steps."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """On the CPU the convolution runs as time-major matrix products (:mod:`mmseq.nn.conv`, as SpeechT5's
        layers do), elsewhere as :meth:`reference`."""
        if x.device.type != "cpu":
            return self.reference(x)
        conv = self.conv
        return F.gelu(self.layer_norm(conv1d_time_major(x, conv.weight, conv.bias, conv.stride[0])))

    def reference(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """:meth:`forward` with ``F.conv1d`` on channel-major input."""
        y = F.conv1d(x.transpose(1, 2), self.conv.weight, self.conv.bias, stride=self.conv.stride[0])
        return F.gelu(self.layer_norm(y.transpose(1, 2)))


def feature_encoder(norm: str, dims: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
                    bias: bool) -> FeatureEncoder:
    """SpeechT5's :class:`~mmseq.prenets.speech.FeatureEncoder` (``"group"``: GroupNorm after the first
    convolution) or the same stack with a LayerNorm after every convolution (``"layer"``)."""
    if norm not in FEATURE_NORMS:
        raise ValueError(f"feat_extract_norm must be one of {FEATURE_NORMS}, got {norm!r}")
    encoder = FeatureEncoder(dims, kernels, strides, bias)
    if norm == "layer":
        encoder.conv_layers = nn.ModuleList(
            LayerNormConvLayer(1 if i == 0 else dims[i - 1], dims[i], kernels[i], strides[i], bias)
            for i in range(len(dims)))
    return encoder


def normalize_waveforms(wav: Tensor, lengths: Tensor, eps: float = 1e-7) -> Tensor:
    """Zero mean and unit variance over each row's valid samples, padding set to 0: what transformers'
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does before the model."""
    valid = (torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]).to(wav.dtype)
    count = lengths.to(wav.dtype)[:, None]
    mean = (wav * valid).sum(1, keepdim=True) / count
    var = ((wav - mean).square() * valid).sum(1, keepdim=True) / count
    return (wav - mean) * torch.rsqrt(var + eps) * valid


class Wav2Vec2Prenet(nn.Module):
    """Raw 16 kHz waveform ``[B, S]`` -> ``[B, T, D]``: convolutional features, LayerNorm + projection, SpecAugment
    (training only), plus the convolutional position embedding. transformers keeps the position convolution in its
    encoder; here it is the pre-net's last step, so the trunk is the shared encoder stack.

    Args:
        dim: output width D.
        conv_dims / conv_kernels / conv_strides / conv_bias: the convolutional feature encoder.
        feat_extract_norm: ``"group"`` (base) or ``"layer"`` (large, "stable layer norm").
        pos_conv_kernel / pos_conv_groups: the position convolution.
        layer_norm_eps: eps of the feature LayerNorm.
        feature_dropout: dropout after the projection.
        mask_time_prob / mask_time_length / mask_time_min_masks: time spans replaced by ``masked_spec_embed``.
        mask_feature_prob / mask_feature_length / mask_feature_min_masks: channel spans set to 0.
        normalize_waveform: normalise each row's valid samples to zero mean and unit variance first.
    """

    modality = "waveform"

    def __init__(self, dim: int = 768, conv_dims: Sequence[int] = (512,) * 7,
                 conv_kernels: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
                 conv_strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2), conv_bias: bool = False,
                 feat_extract_norm: str = "group", pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 layer_norm_eps: float = 1e-5, feature_dropout: float = 0.0, mask_time_prob: float = 0.05,
                 mask_time_length: int = 10, mask_time_min_masks: int = 2, mask_feature_prob: float = 0.0,
                 mask_feature_length: int = 10, mask_feature_min_masks: int = 0, normalize_waveform: bool = True):
        super().__init__()
        self.output_dim = dim
        self.downsample_rate = 1
        for s in conv_strides:
            self.downsample_rate *= s
        self.feature_encoder = feature_encoder(feat_extract_norm, conv_dims, conv_kernels, conv_strides, conv_bias)
        self.feature_projection = FeatureProjection(conv_dims[-1], dim, layer_norm_eps, feature_dropout)
        # As transformers: the mask embedding exists only when some masking is configured.
        if mask_time_prob > 0 or mask_feature_prob > 0:
            self.masked_spec_embed = nn.Parameter(torch.empty(dim).uniform_())
        else:
            self.register_parameter("masked_spec_embed", None)
        self.mask_time_prob, self.mask_time_length, self.mask_time_min_masks = (
            mask_time_prob, mask_time_length, mask_time_min_masks)
        self.mask_feature_prob, self.mask_feature_length, self.mask_feature_min_masks = (
            mask_feature_prob, mask_feature_length, mask_feature_min_masks)
        self.pos_conv_embed = ConvPositionalEmbedding(dim, pos_conv_kernel, pos_conv_groups)
        self.normalize_waveform = normalize_waveform

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
        lengths = check_waveforms(wav, lengths, self.receptive_field, "wav2vec 2.0 feature encoder")
        if self.normalize_waveform:
            wav = normalize_waveforms(wav, lengths)
        x = self.feature_projection(self.feature_encoder(wav, lengths))
        out_lengths = self.output_lengths(lengths).clamp(max=x.shape[1])
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= out_lengths[:, None]
        if bool(padding.any()):
            # Zero padded steps so the position convolution sees what it sees at the end of an unpadded row.
            x = x.masked_fill(padding[..., None], 0.0)
        if time_mask is None and self.training and self.mask_time_prob > 0:
            time_mask = time_mask_spans(out_lengths.cpu(), x.shape[1], self.mask_time_prob, self.mask_time_length,
                                        self.mask_time_min_masks).to(x.device)
        if time_mask is not None:
            if self.masked_spec_embed is None:
                raise InputError("this wav2vec 2.0 pre-net has no mask embedding (mask_time_prob = 0)")
            x = torch.where(time_mask[..., None], self.masked_spec_embed.to(x.dtype), x)
        if self.training and self.mask_feature_prob > 0:
            dim = x.shape[2]
            channels = time_mask_spans(torch.full((x.shape[0],), dim), dim, self.mask_feature_prob,
                                       self.mask_feature_length, self.mask_feature_min_masks).to(x.device)
            x = x.masked_fill(channels[:, None, :], 0.0)
        return x + self.pos_conv_embed(x), out_lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        return waveform_dummy_inputs(self, batch_size)


# --- encoder -------------------------------------------------------------------------------------------------------

def wav2vec2(*, dim: int = 768, layers: int = 12, heads: int = 12, ffn_dim: int = 3072, activation: str = "gelu",
             dropout: float = 0.1, attention_dropout: float = 0.1, activation_dropout: float = 0.1,
             feature_dropout: float = 0.0, layerdrop: float = 0.1, layer_norm_eps: float = 1e-5,
             feat_extract_norm: str = "group", norm_first: bool = False, conv_dims: tuple[int, ...] = (512,) * 7,
             conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2),
             conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2), conv_bias: bool = False,
             pos_conv_kernel: int = 128, pos_conv_groups: int = 16, apply_spec_augment: bool = True,
             mask_time_prob: float = 0.05, mask_time_length: int = 10, mask_time_min_masks: int = 2,
             mask_feature_prob: float = 0.0, mask_feature_length: int = 10, mask_feature_min_masks: int = 0,
             normalize_waveform: bool = True, ctc_vocab_size: int = 0, ctc_dropout: float = 0.1,
             gradient_checkpointing: bool = False) -> EncoderModel:
    """A wav2vec 2.0 encoder (:class:`~mmseq.models.compose.EncoderModel`); defaults are wav2vec 2.0 base.

    Its ``forward_features`` returns transformers' ``hidden_states``: the encoder input (after the input layer norm
    in post-LN), then every layer's output, the last one being ``last_hidden_state`` (in pre-LN after the final
    layer norm, as transformers 4 lists it; transformers 5 lists that layer's output before the norm). The
    arguments are transformers' config fields under mmseq's names (``hidden_size`` -> ``dim``,
    ``do_stable_layer_norm`` -> ``norm_first``, ...; see :mod:`mmseq.interop.hf_wav2vec2`).

    Args:
        apply_spec_augment: False switches the masking off while keeping the mask embedding (transformers').
        normalize_waveform: zero-mean unit-variance input rows, as transformers' feature extractor with
            ``do_normalize`` (the model then reads raw waveforms).
        ctc_vocab_size: > 0 adds ``Wav2Vec2ForCTC``'s head as the post-net (``forward`` then returns CTC
            log-probabilities), with ``ctc_dropout`` before it (transformers' ``final_dropout``).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    prenet = Wav2Vec2Prenet(
        dim, conv_dims, conv_kernels, conv_strides, conv_bias, feat_extract_norm, pos_conv_kernel, pos_conv_groups,
        layer_norm_eps, feature_dropout, mask_time_prob, mask_time_length, mask_time_min_masks, mask_feature_prob,
        mask_feature_length, mask_feature_min_masks, normalize_waveform)
    if not apply_spec_augment:
        prenet.mask_time_prob = prenet.mask_feature_prob = 0.0
    spec = LayerSpec(dim, heads, ffn_dim, dropout, attention_dropout, activation_dropout, activation,
                     norm_first=norm_first, layer_norm_eps=layer_norm_eps)
    encoder = TransformerEncoder(spec, layers, layerdrop=layerdrop, gradient_checkpointing=gradient_checkpointing)
    head = CTCHead(dim, ctc_vocab_size, ctc_dropout) if ctc_vocab_size else None
    return EncoderModel(prenet, encoder, head)


_TINY: dict[str, Any] = dict(dim=32, layers=2, heads=4, ffn_dim=64, conv_dims=(32, 32, 32), conv_kernels=(10, 3, 3),
                             conv_strides=(5, 2, 2), pos_conv_kernel=16, pos_conv_groups=2)
_STABLE: dict[str, Any] = dict(feat_extract_norm="layer", norm_first=True, conv_bias=True)
_LARGE: dict[str, Any] = dict(dim=1024, layers=24, heads=16, ffn_dim=4096, **_STABLE)

register_variant(wav2vec2, "wav2vec2_base", "wav2vec 2.0 base (GroupNorm features, post-LN, 12 x 768).")
register_variant(wav2vec2, "wav2vec2_large", "wav2vec 2.0 large, stable layer norm (LayerNorm features, pre-LN, "
                 "24 x 1024).", **_LARGE)
register_variant(wav2vec2, "wav2vec2_tiny", "wav2vec 2.0 base layout at test size.", **_TINY)
register_variant(wav2vec2, "wav2vec2_tiny_stable", "wav2vec 2.0 large layout (stable layer norm) at test size.",
                 **_TINY, **_STABLE)


# --- seq2seq SLU model ---------------------------------------------------------------------------------------------

# The encoder arguments of wav2vec2_seq2seq are wav2vec2's, without its CTC head (the seq2seq model has its own).
_ENCODER_ARGS = [p for p in inspect.signature(wav2vec2).parameters.values()
                 if p.name not in ("ctc_vocab_size", "ctc_dropout")]


def _encoder_part(encoder_from: Any) -> tuple[nn.Module, TransformerEncoder]:
    """The pre-net and encoder stack of ``encoder_from``: a model built by a ``wav2vec2_*`` builder, its spec or
    its registered name."""
    if isinstance(encoder_from, str) and not is_registered(encoder_from):
        # A folder that exists was loaded before the builder (checkpoint.build_model): this one does not.
        raise ConfigError(f"encoder_from {encoder_from!r}: no such folder (a local transformers wav2vec 2.0 folder: "
                          "config.json + model.safetensors or pytorch_model.bin) and not a registered model")
    encoder_from = build_submodel(encoder_from, "encoder_from")
    builder = getattr(encoder_from, "mmseq_config", {}).get("builder", type(encoder_from).__name__)
    if not (isinstance(encoder_from, EncoderModel) and str(builder).startswith("wav2vec2_")):
        raise ConfigError(f"encoder_from must be a wav2vec 2.0 encoder (a transformers Wav2Vec2 folder or a "
                          f"wav2vec2_* model), got {builder}")
    return encoder_from.prenet, encoder_from.encoder


def _freeze(model: EncoderDecoderModel, feature_encoder: bool, layers: int) -> None:
    """Freeze the convolutional feature encoder, and/or everything below the encoder's layer ``layers`` (the
    pre-net, the post-LN input layer norm, layers ``0 .. layers-1``; all of it, final layer norm included, when
    ``layers`` is the depth)."""
    depth = len(model.encoder.layers)
    if not 0 <= layers <= depth:
        raise ConfigError(f"freeze_encoder_layers must be in [0, {depth}] (the encoder's layers), got {layers}")
    frozen: list[nn.Module] = [model.encoder_prenet.feature_encoder] if feature_encoder else []
    if layers:
        frozen.append(model.encoder_prenet)
        frozen += list(model.encoder.layers[:layers])
        if not model.encoder.norm_first or layers == depth:
            frozen.append(model.encoder.layer_norm)
    for module in frozen:
        module.requires_grad_(False)


def wav2vec2_seq2seq(*, encoder_from: Any = None, vocab_size: int = 81, decoder_dim: int = 0,
                     decoder_layers: int = 6, decoder_heads: int = 8, decoder_ffn_dim: int = 3072,
                     decoder_dropout: float = 0.1, decoder_attention_dropout: float = 0.1,
                     decoder_activation_dropout: float = 0.1, decoder_layerdrop: float = 0.0,
                     decoder_norm_first: bool = True, scale_embedding: bool = True, positional_dropout: float = 0.1,
                     max_text_positions: int = 450, tie_embeddings: bool = True, ctc: bool = False,
                     projection_dim: int = 0, freeze_feature_encoder: bool = False, freeze_encoder_layers: int = 0,
                     **encoder_args: Any) -> EncoderDecoderModel:
    """wav2vec 2.0 encoder + SpeechT5-style text decoder, an :class:`~mmseq.models.compose.EncoderDecoderModel`.

    The defaults follow the seq2seq SLU model of the COCONUT authors' code: a 6-layer pre-LN decoder of width 768,
    8 heads, FFN 3072, token embeddings scaled by sqrt(D) and sinusoidal positions.

    Args:
        encoder_from: None -- the encoder is built (randomly initialised) from the encoder arguments, which are
            :func:`wav2vec2`'s; or a wav2vec 2.0 model (``mmseq train`` and :func:`mmseq.checkpoint.build_model`
            load a transformers folder path into one; a registered ``wav2vec2_*`` name or a model spec also do).
            With it the encoder -- sizes, dropout, SpecAugment -- is that model's and the encoder arguments are
            unused; the checkpoint records the encoder's spec, not the path, and its weights.
        vocab_size: the decoder's token vocabulary (the task's character vocabulary).
        decoder_dim: the decoder width; 0 -- the encoder's. The decoder cross-attends to the encoder either way.
        tie_embeddings: the LM head shares the token embedding matrix.
        ctc: add a CTC head on the encoder over ``vocab_size`` (the task's ``ctc_weight``).
        projection_dim: > 0 adds ``projection_heads`` for COCONUT's contrastive losses (one head on the pooled
            encoder states, the other on the pooled token embeddings, each at its own width).
        freeze_feature_encoder: keep the convolutional feature encoder fixed (transformers' fine-tuning default).
        freeze_encoder_layers: keep the pre-net and the lowest N encoder layers fixed.
    """
    if encoder_from is None:
        base = wav2vec2(**{**encoder_args, "ctc_vocab_size": 0})
        prenet, encoder = base.prenet, base.encoder
    else:
        prenet, encoder = _encoder_part(encoder_from)
    dim = decoder_dim or encoder.dim
    spec = LayerSpec(dim, decoder_heads, decoder_ffn_dim, decoder_dropout, decoder_attention_dropout,
                     decoder_activation_dropout, norm_first=decoder_norm_first,
                     layer_norm_eps=encoder.layer_norm.eps)
    decoder = TransformerDecoder(spec, decoder_layers, layerdrop=decoder_layerdrop, encoder_dim=encoder.dim)
    decoder_prenet = TokenPrenet(vocab_size, dim, PAD, positions="sinusoidal", scale_embedding=scale_embedding,
                                 dropout=positional_dropout, max_positions=max_text_positions)
    postnet = LMHead(dim, vocab_size, tie_to=decoder_prenet.embed_tokens if tie_embeddings else None)
    ctc_head = CTCHead(encoder.dim, vocab_size) if ctc else None
    model = EncoderDecoderModel(prenet, encoder, decoder_prenet, decoder, postnet, encoder_postnet=ctc_head)
    if projection_dim:
        model.projection_heads = ProjectionHeads(encoder.dim, projection_dim, text_dim=dim)
    _freeze(model, freeze_feature_encoder, freeze_encoder_layers)
    return model


wav2vec2_seq2seq.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p for p in inspect.signature(wav2vec2_seq2seq).parameters.values() if p.kind is p.KEYWORD_ONLY]
    + _ENCODER_ARGS)

_TINY_DECODER: dict[str, Any] = dict(decoder_layers=2, decoder_heads=4, decoder_ffn_dim=64)


def _register_seq2seq(name: str, doc: str, defaults: dict[str, Any]) -> None:
    """:func:`~mmseq.registry.register_variant` for :func:`wav2vec2_seq2seq`, keeping ``encoder_from`` a sub-model
    argument (so ``mmseq train`` loads a folder path given there)."""

    def builder(**overrides: Any) -> EncoderDecoderModel:
        return wav2vec2_seq2seq(**{**defaults, **overrides})

    sig = inspect.signature(wav2vec2_seq2seq)
    builder.__name__, builder.__doc__ = name, doc
    builder.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()])
    register_model(builder, submodels=("encoder_from",))


_register_seq2seq("wav2vec2_seq2seq_base", "wav2vec 2.0 base encoder + text decoder (COCONUT's SLU model).", {})
_register_seq2seq("wav2vec2_seq2seq_large", "wav2vec 2.0 large encoder + text decoder (width 1024).", _LARGE)
_register_seq2seq("wav2vec2_seq2seq_tiny", "wav2vec 2.0 encoder + text decoder at test size.",
                  {**_TINY, **_TINY_DECODER})
