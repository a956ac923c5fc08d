"""TERA (Liu, Li, Lee 2021, "TERA: Self-Supervised Learning of Transformer Encoder Representation for Speech").

The encoder-only path through the shared trunk, an :class:`~mmseq.models.compose.EncoderModel`, read top to bottom:

* front-end stage :class:`TeraInput` (no weights): waveforms -> TERA's log-mel (or fbank + deltas, see
  :mod:`mmseq.data.features`), or frames as they are;
* pre-net :class:`~mmseq.prenets.spectrogram.SpectrogramPrenet`: ``Linear(F -> D)`` + fixed sinusoidal positions;
* trunk: a post-LN :class:`~mmseq.nn.transformer.TransformerEncoder` (GELU, layer norm eps 1e-12) whose input
  layer norm + dropout is TERA's ``input_representations.LayerNorm`` / dropout;
* post-net :class:`~mmseq.postnets.spectrogram.SpectrogramPredictionHead`: TERA's ``SpecHead``.

``model(frames)`` reconstructs frames (pretraining: :mod:`mmseq.tasks.tera`); ``model.forward_features`` is the door
every downstream head uses: the input projection's hidden state (after the layer norm) and every layer's output,
in chunks of ``max_input_frames`` for long inputs, like s3prl.

Variants (s3prl configs): ``tera_base`` = ``config_model.yaml`` (3 x 768, 12 heads, FFN 3072, 21.3M parameters),
``tera_slim`` = ``logMelSlim-T-F-M`` (12 x 384, 8 heads, FFN 768), ``tera_tiny`` for tests. The key map to s3prl's
``TransformerModel`` / ``TransformerSpecPredictionHead`` state dicts is :func:`s3prl_key_map`.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from mmseq.contracts import full_lengths
from mmseq.data.features import TeraFbank, TeraLogMel
from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.models.compose import EncoderModel
from mmseq.nn.transformer import LayerSpec, TransformerEncoder
from mmseq.postnets.spectrogram import SpectrogramPredictionHead
from mmseq.prenets.spectrogram import SpectrogramPrenet
from mmseq.registry import register_model

SAMPLE_RATE = 16000
FRAME_SHIFT = 160  # waveform samples per frame (10 ms at 16 kHz): TERA's downsample rate
FRONTENDS = ("logmel", "fbank", "none")


class TeraInput(nn.Module):
    """TERA's front-end stage: waveforms ``[B, S]`` through its feature extractor, frames ``[B, T, F]`` as they are.

    Args:
        extractor: ``"logmel"`` (80-d), ``"fbank"`` (240-d) or ``"none"`` (the model takes frames only).
        input_dim: the frame width F the pre-net takes.
    """

    def __init__(self, extractor: str, input_dim: int):
        super().__init__()
        if extractor not in FRONTENDS:
            raise ConfigError(unknown_choice("TERA front-end", extractor, FRONTENDS))
        self.extractor = {"logmel": TeraLogMel, "fbank": TeraFbank, "none": lambda: None}[extractor]()
        if self.extractor is not None and self.extractor.output_dim != input_dim:
            raise ConfigError(f"front-end {extractor!r} gives {self.extractor.output_dim}-d frames but the pre-net "
                              f"takes {input_dim}-d ones")
        self.output_dim = input_dim
        self.downsample_rate = FRAME_SHIFT if self.extractor is None else self.extractor.downsample_rate
        self.modality = "frames" if self.extractor is None else "waveform"

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(frames [B, T, F], frame lengths [B])``."""
        if x.dim() == 2:
            if self.extractor is None:
                raise InputError("this TERA model has no front-end (frontend='none'); pass frames [B, T, F]")
            return self.extractor(x, lengths)
        if x.dim() != 3:
            raise InputError(f"TERA takes waveforms [B, S] or frames [B, T, F], got shape {tuple(x.shape)}")
        return x, full_lengths(x) if lengths is None else lengths


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
         output_dim: int | None) -> EncoderModel:
    """Build a TERA model (every argument is a plain value; see the registered variants for defaults)."""
    if activation not in ("gelu", "relu", "swish"):
        raise ConfigError(unknown_choice("TERA activation", activation, ["gelu", "relu", "swish"]))
    spec = LayerSpec(dim, heads, ffn_dim, dropout=dropout, attention_dropout=attention_dropout,
                     activation_dropout=0.0, activation=activation, norm_first=False, layer_norm_eps=layer_norm_eps)
    model = EncoderModel(
        prenet=SpectrogramPrenet(input_dim, dim),
        encoder=TransformerEncoder(spec, layers),
        postnet=SpectrogramPredictionHead(dim, output_dim or input_dim, activation, layer_norm_eps),
        frontend=TeraInput(frontend, input_dim),
        max_input_frames=max_input_frames,
    )
    model.apply(init_tera_weights)
    return model


@register_model
def tera_base(input_dim: int = 80, dim: int = 768, heads: int = 12, ffn_dim: int = 3072, layers: int = 3,
              dropout: float = 0.1, attention_dropout: float = 0.1, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> EncoderModel:
    """TERA base (s3prl ``config_model.yaml``; the released ``tera`` checkpoints): 21.3M encoder parameters."""
    return tera(input_dim, dim, heads, ffn_dim, layers, dropout, attention_dropout, layer_norm_eps, activation,
                frontend, max_input_frames, output_dim)


@register_model
def tera_slim(input_dim: int = 80, dim: int = 384, heads: int = 8, ffn_dim: int = 768, layers: int = 12,
              dropout: float = 0.3, attention_dropout: float = 0.3, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> EncoderModel:
    """TERA slim (s3prl ``exp_model_config/logMelSlim-T-F-M.yaml``): deeper and narrower, 14.2M parameters."""
    return tera(input_dim, dim, heads, ffn_dim, layers, dropout, attention_dropout, layer_norm_eps, activation,
                frontend, max_input_frames, output_dim)


@register_model
def tera_tiny(input_dim: int = 80, dim: int = 32, heads: int = 4, ffn_dim: int = 64, layers: int = 2,
              dropout: float = 0.1, attention_dropout: float = 0.1, layer_norm_eps: float = 1e-12,
              activation: str = "gelu", frontend: str = "logmel", max_input_frames: int = 1500,
              output_dim: int | None = None) -> EncoderModel:
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
