"""TERA (Liu, Li, Lee 2021, "TERA: Self-Supervised Learning of Transformer Encoder Representation for Speech").

The encoder-only path through the shared trunk, read top to bottom:

* front-end (optional, no weights): waveform -> TERA's log-mel (or fbank + deltas), see :mod:`mmseq.data.features`;
* pre-net :class:`~mmseq.prenets.spectrogram.SpectrogramPrenet`: ``Linear(F -> D)`` + fixed sinusoidal positions;
* trunk: a post-LN :class:`~mmseq.nn.transformer.TransformerEncoder` (GELU, layer norm eps 1e-12) whose input
  layer norm + dropout is TERA's ``input_representations.LayerNorm`` / dropout;
* post-net :class:`~mmseq.postnets.spectrogram.SpectrogramPredictionHead`: TERA's ``SpecHead``.

:meth:`TeraModel.forward` reconstructs frames (pretraining, see :mod:`mmseq.models.tera_alteration`);
:meth:`TeraModel.forward_features` is the door every downstream head uses: the input projection's hidden state
(after the layer norm) and every layer's output, chunked like s3prl for long inputs.

Variants (s3prl configs): ``tera_base`` = ``config_model.yaml`` (3 x 768, 12 heads, FFN 3072, 21.3M parameters),
``tera_slim`` = ``logMelSlim-T-F-M`` (12 x 384, 8 heads, FFN 768), ``tera_tiny`` for tests. The key map to s3prl's
``TransformerModel`` / ``TransformerSpecPredictionHead`` state dicts is :func:`s3prl_key_map`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.nn.backbone import Features, lengths_to_padding_mask
from mmseq.nn.transformer import LayerSpec, TransformerEncoder
from mmseq.postnets.spectrogram import SpectrogramPredictionHead
from mmseq.prenets.spectrogram import SpectrogramPrenet
from mmseq.registry import register_model

SAMPLE_RATE = 16000
FRAME_SHIFT = 160  # waveform samples per frame (10 ms at 16 kHz): TERA's downsample rate
FRONTENDS = ("logmel", "fbank", "none")


def build_frontend(name: str) -> nn.Module | None:
    """TERA's feature extractor by name: ``"logmel"`` (80-d), ``"fbank"`` (240-d) or ``"none"`` (frames in)."""
    if name not in FRONTENDS:
        raise ConfigError(unknown_choice("TERA front-end", name, FRONTENDS))
    if name == "none":
        return None
    from mmseq.data.features import TeraFbank, TeraLogMel

    return TeraLogMel() if name == "logmel" else TeraFbank()


class TeraModel(nn.Module):
    """front-end -> spectrogram pre-net -> post-LN encoder -> spectrogram prediction head.

    Args:
        prenet: frames ``[B, T, F]`` -> ``[B, T, D]``.
        encoder: post-LN encoder of width D (its input layer norm is TERA's input layer norm).
        postnet: reconstruction head ``[B, T, D]`` -> ``[B, T, F_out]``.
        frontend: waveform ``[B, S]`` -> frames; used when an input is 2-D. None: inputs must be frames.
        max_input_frames: :meth:`forward_features` splits longer inputs into equal chunks of at most this many
            frames, encodes each on its own (positions restart) and concatenates them, as s3prl's upstream does
            with its ``sequence_length``; 0 never splits.
    """

    def __init__(self, prenet: SpectrogramPrenet, encoder: TransformerEncoder, postnet: nn.Module,
                 frontend: nn.Module | None = None, max_input_frames: int = 0):
        super().__init__()
        if prenet.output_dim != encoder.dim:
            raise ValueError(f"pre-net output_dim {prenet.output_dim} != encoder width {encoder.dim}")
        if encoder.norm_first:
            raise ValueError("TERA uses a post-LN encoder (its input layer norm is the encoder's layer_norm)")
        if frontend is not None and frontend.output_dim != prenet.input_dim:
            raise ConfigError(f"front-end gives {frontend.output_dim}-d frames but the pre-net takes "
                              f"{prenet.input_dim}-d ones")
        self.frontend, self.prenet, self.encoder, self.postnet = frontend, prenet, encoder, postnet
        self.max_input_frames = max_input_frames

    @property
    def output_dim(self) -> int:
        """Width D of every hidden state."""
        return self.encoder.dim

    @property
    def num_hidden_states(self) -> int:
        """Hidden states :meth:`forward_features` returns: the input projection's plus one per layer."""
        return len(self.encoder.layers) + 1

    @property
    def downsample_rate(self) -> int:
        """Waveform samples per output frame (160 at 16 kHz): frames map one to one onto hidden states."""
        return getattr(self.frontend, "downsample_rate", FRAME_SHIFT)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Waveforms ``[B, S]`` through the front-end, or frames ``[B, T, F]`` as they are.

        Returns:
            ``(frames [B, T, F], frame lengths [B])``.
        """
        if x.dim() == 2:
            if self.frontend is None:
                raise InputError("this TERA model has no front-end (frontend='none'); pass frames [B, T, F]")
            return self.frontend(x, lengths)
        if x.dim() != 3:
            raise InputError(f"TERA takes waveforms [B, S] or frames [B, T, F], got shape {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return x, lengths

    def _encode(self, frames: Tensor, lengths: Tensor, all_layers: bool) -> list[Tensor]:
        hidden, lengths = self.prenet(frames, lengths)
        padding = None if bool((lengths == hidden.shape[1]).all()) else lengths_to_padding_mask(lengths, hidden.shape[1])
        out = self.encoder(hidden, padding, output_hidden_states=all_layers)
        return out.hidden_states if all_layers else [out.last_hidden_state]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Reconstruct frames from (altered) input frames or waveforms.

        Args:
            x: frames ``[B, T, F]`` or waveforms ``[B, S]``.
            lengths: valid frames (or samples) per row ``[B]``; None means all.

        Returns:
            Predicted frames ``[B, T, F_out]``.
        """
        frames, lengths = self.features(x, lengths)
        return self.postnet(self._encode(frames, lengths, all_layers=False)[-1], lengths)

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Features:
        """Hidden states of every layer, s3prl's ``hidden_states``: the input projection's (after its layer norm)
        then each encoder layer's output, all ``[B, T, D]``; with their lengths and ``downsample_rate``.

        Args:
            x: waveforms ``[B, S]`` (16 kHz; needs a front-end) or frames ``[B, T, F]``, zero-padded.
            lengths: valid samples (or frames) per row ``[B]``; None means all.
        """
        frames, lengths = self.features(x, lengths)
        total = frames.shape[1]
        if self.max_input_frames <= 0 or total <= self.max_input_frames:
            hidden = self._encode(frames, lengths, all_layers=True)
        else:
            # torch.chunk's split, as s3prl: ceil(T / max) chunks of ceil(T / chunks) frames (the last shorter).
            size = math.ceil(total / math.ceil(total / self.max_input_frames))
            pieces = []
            for start in range(0, total, size):
                chunk = frames[:, start : start + size]
                # A row that has ended before this chunk is encoded from one (padding) frame and discarded.
                chunk_lengths = (lengths - start).clamp(min=1, max=chunk.shape[1])
                pieces.append(self._encode(chunk, chunk_lengths, all_layers=True))
            hidden = [torch.cat(layer, dim=1) for layer in zip(*pieces)]
        return Features(hidden, lengths, self.downsample_rate)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        frames, lengths = self.prenet.dummy_inputs(batch_size)
        return {"x": frames, "lengths": lengths}


def init_tera_weights(module: nn.Module, std: float = 0.02) -> None:
    """s3prl's initialisation: linear weights N(0, std), biases 0, layer norms 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def tera(input_dim: int, dim: int, heads: int, ffn_dim: int, layers: int, dropout: float,
         attention_dropout: float, layer_norm_eps: float, activation: str, frontend: str, max_input_frames: int,
         output_dim: int | None) -> TeraModel:
    """Build a TERA model (every argument is a plain value; see the registered variants for defaults)."""
    if activation not in ("gelu", "relu", "swish"):
        raise ConfigError(unknown_choice("TERA activation", activation, ["gelu", "relu", "swish"]))
    spec = LayerSpec(dim, heads, ffn_dim, dropout=dropout, attention_dropout=attention_dropout,
                     activation_dropout=0.0, activation=activation, norm_first=False, layer_norm_eps=layer_norm_eps)
    model = TeraModel(
        prenet=SpectrogramPrenet(input_dim, dim),
        encoder=TransformerEncoder(spec, layers),
        postnet=SpectrogramPredictionHead(dim, output_dim or input_dim, activation, layer_norm_eps),
        frontend=build_frontend(frontend),
        max_input_frames=max_input_frames,
    )
    model.apply(init_tera_weights)
    return model


@register_model
def tera_base(input_dim: int = 80, dim: int = 768, heads: int = 12, ffn_dim: int = 3072, layers: int = 3,
              dropout: float = 0.1, attention_dropout: float = 0.1, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> TeraModel:
    """TERA base (s3prl ``config_model.yaml``; the released ``tera`` checkpoints): 21.3M encoder parameters."""
    return tera(input_dim, dim, heads, ffn_dim, layers, dropout, attention_dropout, layer_norm_eps, activation,
                frontend, max_input_frames, output_dim)


@register_model
def tera_slim(input_dim: int = 80, dim: int = 384, heads: int = 8, ffn_dim: int = 768, layers: int = 12,
              dropout: float = 0.3, attention_dropout: float = 0.3, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> TeraModel:
    """TERA slim (s3prl ``exp_model_config/logMelSlim-T-F-M.yaml``): deeper and narrower, 14.2M parameters."""
    return tera(input_dim, dim, heads, ffn_dim, layers, dropout, attention_dropout, layer_norm_eps, activation,
                frontend, max_input_frames, output_dim)


@register_model
def tera_tiny(input_dim: int = 80, dim: int = 32, heads: int = 4, ffn_dim: int = 64, layers: int = 2,
              dropout: float = 0.1, attention_dropout: float = 0.1, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> TeraModel:
    """A tiny TERA for tests and smoke runs."""
    return tera(input_dim, dim, heads, ffn_dim, layers, dropout, attention_dropout, layer_norm_eps, activation,
                frontend, max_input_frames, output_dim)


# --- s3prl key map ----------------------------------------------------------------------------------------------

_S3PRL_LAYER_KEYS = {
    "attention.self.query": "attention.q_proj",
    "attention.self.key": "attention.k_proj",
    "attention.self.value": "attention.v_proj",
    "attention.output.dense": "attention.out_proj",
    "attention.output.LayerNorm": "layer_norm",
    "intermediate.dense": "feed_forward.intermediate_dense",
    "output.dense": "feed_forward.output_dense",
    "output.LayerNorm": "final_layer_norm",
}


def s3prl_key_map(num_layers: int) -> dict[str, str]:
    """mmseq parameter name -> s3prl name, for the ``Transformer`` and ``SpecHead`` entries of an s3prl checkpoint.

    s3prl names are prefixed ``Transformer.`` or ``SpecHead.`` to say which state dict they belong to.
    """
    pairs = {
        "prenet.projection": "Transformer.input_representations.spec_transform",
        "encoder.layer_norm": "Transformer.input_representations.LayerNorm",
        "postnet.dense": "SpecHead.dense",
        "postnet.layer_norm": "SpecHead.LayerNorm",
        "postnet.output": "SpecHead.output",
    }
    for i in range(num_layers):
        for theirs, ours in _S3PRL_LAYER_KEYS.items():
            pairs[f"encoder.layers.{i}.{ours}"] = f"Transformer.encoder.layer.{i}.{theirs}"
    return {f"{ours}.{p}": f"{theirs}.{p}" for ours, theirs in pairs.items() for p in ("weight", "bias")}


# --- downstream probe ------------------------------------------------------------------------------------------

def build_upstream(upstream: str) -> nn.Module:
    """``"logmel"`` / ``"fbank"`` (plain features), a registered TERA name (random weights), or a checkpoint path
    (mmseq directory or s3prl ``.ckpt``)."""
    from mmseq.checkpoint import load
    from mmseq.downstream import FeatureUpstream
    from mmseq.registry import create_model, list_models

    if upstream in ("logmel", "fbank"):
        return FeatureUpstream(build_frontend(upstream))
    if upstream in list_models("tera_*") and upstream != "tera_downstream":
        return create_model(upstream)
    return load(upstream)


@register_model
def tera_downstream(upstream: str = "logmel", num_classes: int = 10, level: str = "frame", hidden_dim: int = 0,
                    layer: int | None = None, freeze_upstream: bool = True, dropout: float = 0.0,
                    normalize_layers: bool = False, normalize_utterances: bool = False) -> nn.Module:
    """A frozen (or fine-tuned) upstream, a weighted sum of its layers and a linear / one-hidden-layer head.

    Args:
        upstream: see :func:`build_upstream`; its weights are saved with this model, the path only rebuilds it.
        num_classes: output classes.
        level: ``"frame"`` (logits per frame, e.g. phones) or ``"utterance"`` (mean-pooled: speaker, intent).
        hidden_dim: 0 for a linear head, else one hidden layer of this width.
        layer: use this hidden state only (0 = input projection) instead of the learnable weighted sum.
        freeze_upstream: keep the upstream fixed (no gradients, eval mode).
        dropout: dropout after the hidden layer.
        normalize_layers: layer-normalise hidden states before the weighted sum.
        normalize_utterances: per-utterance mean/variance normalisation of every hidden state (see
            :class:`~mmseq.downstream.UpstreamClassifier`).
    """
    from mmseq.downstream import FrameClassifier, UpstreamClassifier, UtteranceClassifier

    if level not in ("frame", "utterance"):
        raise ConfigError(unknown_choice("downstream level", level, ["frame", "utterance"]))
    body = build_upstream(upstream)
    head_cls = FrameClassifier if level == "frame" else UtteranceClassifier
    head = head_cls(body.output_dim, num_classes, hidden_dim, dropout)
    return UpstreamClassifier(body, head, body.num_hidden_states, layer, freeze_upstream, normalize_layers,
                              normalize_utterances)
