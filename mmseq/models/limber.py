"""LiMBeR (Merullo et al., "Linearly Mapping from Image to Text Space"): a frozen image encoder, one linear map
to ``k`` soft-prompt vectors in the input-embedding space of a frozen causal language model, and the LM's head.

Only the map trains. The encoder and the LM have ``requires_grad=False`` and stay in eval mode when the model is
switched to training (no dropout, no batch-norm statistics drift), as in the official code, where the map is the
only trained module.

* **Encoders** (:class:`FrozenImageEncoder`, built from a spec dict by :func:`build_image_encoder`): any timm
  model by name, open_clip image towers, and an embedded tiny CNN for CPU tests and recipes. ``features="pooled"``
  gives one vector per image (nf_resnet50's 2048-d pool: ``Linear(2048, k * D)``); ``features="grid"`` gives one
  per spatial position or patch (CLIP RN50x16's 12x12 layer4 map before the attention pool, BEiT's patch tokens
  without the CLS token: ``Linear(C, D)`` per token).
* **LMs**: mmseq's own decoder-only trunk (a :class:`~mmseq.models.compose.DecoderOnlyModel`, given as a
  registered name, a spec or a built model; :class:`MmseqCausalLM`) or any transformers causal LM (GPT-2, GPT-J,
  OPT, Llama; :class:`TransformersCausalLM`) driven through ``inputs_embeds``. A transformers LM is recorded in
  ``config.json`` as ``{"transformers": <its config dict>}``, its weights in the checkpoint's safetensors.
* **The map** (:class:`ImagePrefix`): ``Linear``, reshape to ``k`` vectors, dropout 0.1 on the image embeddings,
  optionally a LayerNorm, in the official order.
* **Encoders trained here** for the paper's comparison, one timm backbone under three supervisions:
  :class:`LabelSupervisedEncoder` (a label head), :class:`ContrastiveImageTextEncoder` (a text tower, CLIP-style
  projections and temperature), :class:`MaskedImageEncoder` (SimMIM's mask value and pixel decoder); LiMBeR takes
  their ``backbone.*`` weights.

Builders do no I/O; :func:`limber_from_pretrained` is the edge that reads local weight files (a timm state dict,
an open_clip checkpoint, a transformers model folder) and records specs, never paths. Generation over
:class:`LimberModel` (interleaved image / text prompts on a KV cache) is in :mod:`mmseq.tasks.limber`.
"""

from __future__ import annotations

import inspect

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.data.tokenizers import TransformersTokenizer
from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.models.compose import DecoderOnlyModel
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.registry import build_submodel, register_model

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ENCODER_LIBRARIES = ("timm", "open_clip", "mmseq")
FEATURE_KINDS = ("pooled", "grid")
TINY_ENCODER = {"library": "mmseq", "name": "conv_tiny", "features": "pooled", "image_size": 32}


# ------------------------------------------------------------------------------------------------- encoders
class TinyConvBackbone(nn.Module):
    """Two stride-2 3x3 convolutions: ``[B, 3, H, W] -> [B, width, H / 4, W / 4]`` (the embedded CPU encoder)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.layers = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, width, 3, 2, 1), nn.GELU())

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


def _grid_tokens(features: Tensor, prefix_tokens: int = 0) -> Tensor:
    """A feature map ``[B, C, H, W]`` as ``[B, H * W, C]``; token features ``[B, N, C]`` without their prefix
    (CLS / register) tokens."""
    if features.dim() == 4:
        return features.flatten(2).transpose(1, 2)
    if features.dim() == 3:
        return features[:, prefix_tokens:]
    raise InputError(f"grid features must be [B, C, H, W] or [B, N, C], got {list(features.shape)}")


def _open_clip_grid(visual: nn.Module, images: Tensor) -> Tensor:
    """open_clip image tower features before pooling: a ModifiedResNet's layer4 map (no attention pool), or a
    VisionTransformer's patch tokens."""
    if hasattr(visual, "attnpool"):
        x = visual.stem(images)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        return _grid_tokens(x)
    visual.output_tokens = True
    _, tokens = visual(images)
    return tokens


class FrozenImageEncoder(nn.Module):
    """A frozen image backbone: ``images [B, 3, S, S]`` (normalised with :attr:`mean` / :attr:`std`) -> features
    ``[B, N, C]`` (``N = 1`` for pooled features), computed without gradients.

    Args:
        backbone: the network (its parameters are frozen here).
        run: ``run(backbone, images) -> [B, N, C]``.
        output_dim: C.
        image_size: the square input side the encoder expects.
        mean / std: per-channel normalisation of its inputs.
        features: ``"pooled"`` or ``"grid"``.
    """

    modality = "image"

    def __init__(self, backbone: nn.Module, run: Callable[[nn.Module, Tensor], Tensor], output_dim: int,
                 image_size: int, mean: tuple[float, ...], std: tuple[float, ...], features: str):
        super().__init__()
        self.backbone, self.run = backbone, run
        self.output_dim, self.image_size, self.features = output_dim, image_size, features
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.backbone.requires_grad_(False)

    @property
    def weight_dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [batch, 3, height, width], got {list(images.shape)}")
        with torch.no_grad():
            out = self.run(self.backbone, images.to(self.weight_dtype))
        return out.float()


def _timm_encoder(name: str, features: str, image_size: int | None, pretrained_file: str | None):
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0}
    if pretrained_file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)})
    backbone = timm.create_model(name, **kwargs)
    cfg = backbone.pretrained_cfg
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    if features == "pooled":
        return backbone, lambda m, x: m(x)[:, None], backbone.num_features, size, cfg["mean"], cfg["std"]
    prefix = int(getattr(backbone, "num_prefix_tokens", 0))
    return (backbone, lambda m, x: _grid_tokens(m.forward_features(x), prefix), backbone.num_features, size,
            cfg["mean"], cfg["std"])


def _open_clip_encoder(name: str, features: str, image_size: int | None, pretrained_file: str | None):
    import open_clip

    kwargs: dict[str, Any] = {} if image_size is None else {"force_image_size": image_size}
    visual = open_clip.create_model(name, pretrained=pretrained_file, **kwargs).visual
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = getattr(visual, "image_mean", None) or OPENAI_CLIP_MEAN
    std = getattr(visual, "image_std", None) or OPENAI_CLIP_STD
    if features == "pooled":
        return visual, lambda m, x: m(x)[:, None], int(visual.output_dim), size, mean, std
    if hasattr(visual, "attnpool"):
        dim = visual.attnpool.k_proj.in_features
    else:
        dim = visual.conv1.out_channels
    return visual, _open_clip_grid, int(dim), size, mean, std


def _mmseq_encoder(name: str, features: str, image_size: int | None, pretrained_file: str | None):
    if name != "conv_tiny":
        raise ConfigError(unknown_choice("embedded image encoder", name, ["conv_tiny"]))
    backbone = TinyConvBackbone()
    run = (lambda m, x: m(x).mean(dim=(2, 3))[:, None]) if features == "pooled" else (lambda m, x: _grid_tokens(m(x)))
    return backbone, run, backbone.width, image_size or 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


_ENCODER_BUILDERS = {"timm": _timm_encoder, "open_clip": _open_clip_encoder, "mmseq": _mmseq_encoder}


def check_encoder_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its defaults filled in; ConfigError names an unknown key, library or feature kind."""
    if not isinstance(spec, dict):
        raise ConfigError(f"an image encoder spec is a dict with library, name and features, got {spec!r}")
    known = {"library", "name", "features", "image_size"}
    for key in spec:
        if key not in known:
            raise ConfigError(unknown_choice("image encoder key", key, known))
    for key in ("library", "name"):
        if key not in spec:
            raise ConfigError(f"image encoder spec {spec!r} needs {key!r}")
    if spec["library"] not in ENCODER_LIBRARIES:
        raise ConfigError(unknown_choice("image encoder library", spec["library"], ENCODER_LIBRARIES))
    full = {"features": "pooled", "image_size": None, **spec}
    if full["features"] not in FEATURE_KINDS:
        raise ConfigError(unknown_choice("image encoder features", full["features"], FEATURE_KINDS))
    return full


def build_image_encoder(spec: dict[str, Any], pretrained_file: str | Path | None = None) -> FrozenImageEncoder:
    """A frozen encoder from ``{"library": timm | open_clip | mmseq, "name": ..., "features": pooled | grid,
    "image_size": optional}``; random weights unless ``pretrained_file`` (a local file) is given."""
    spec = check_encoder_spec(spec)
    made = _ENCODER_BUILDERS[spec["library"]](spec["name"], spec["features"], spec["image_size"],
                                              None if pretrained_file is None else str(pretrained_file))
    backbone, run, dim, size, mean, std = made
    return FrozenImageEncoder(backbone.eval(), run, dim, size, tuple(mean), tuple(std), spec["features"])


# ---------------------------------------------------------------------------------------------------- the map
class ImagePrefix(nn.Module):
    """The trained map: image features ``[B, N, C]`` -> soft prompts ``[B, P, D]`` in the LM's embedding space.

    Pooled features (``N = 1``): ``Linear(C, k * D)`` reshaped to ``k`` vectors (``P = k``). Grid features:
    ``Linear(C, D)`` on each of the ``N`` tokens (``P = N``). Then dropout and an optional LayerNorm.

    Args:
        input_dim: C.
        output_dim: D, the LM's embedding width.
        prefix_length: k for pooled features; None maps every grid token.
        dropout: dropout on the image embeddings (0.1 in LiMBeR).
        layer_norm: a LayerNorm after the dropout (off in LiMBeR's configs).
    """

    downsample_rate = 1
    modality = "image_features"

    def __init__(self, input_dim: int, output_dim: int, prefix_length: int | None = 1, dropout: float = 0.1,
                 layer_norm: bool = False):
        super().__init__()
        self.input_dim, self.output_dim, self.prefix_length = input_dim, output_dim, prefix_length
        self.proj = nn.Linear(input_dim, output_dim * (prefix_length or 1))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(output_dim) if layer_norm else None

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if features.dim() != 3 or features.shape[-1] != self.input_dim:
            raise InputError(f"image features must be [batch, tokens, {self.input_dim}], got {list(features.shape)}")
        if self.prefix_length is not None:
            if features.shape[1] != 1:
                raise InputError(f"a pooled-feature map takes one vector per image, got {features.shape[1]}")
            hidden = self.proj(features[:, 0]).view(features.shape[0], self.prefix_length, self.output_dim)
        else:
            hidden = self.proj(features)
        hidden = self.dropout(hidden)
        if self.norm is not None:
            hidden = self.norm(hidden)
        return hidden, torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long, device=hidden.device)


# ------------------------------------------------------------------------------------------- language models
class MmseqCausalLM(nn.Module):
    """An mmseq :class:`~mmseq.models.compose.DecoderOnlyModel` driven by input embeddings.

    :meth:`embed_tokens` is the token pre-net's (scaled) embedding without positions; :meth:`forward` adds the
    pre-net's sinusoidal positions for the given position indices (0-based), its dropout, then runs the causal
    decoder and the LM head, as the model's own forward does for tokens.
    """

    def __init__(self, model: DecoderOnlyModel):
        super().__init__()
        if not isinstance(model, DecoderOnlyModel):
            raise ConfigError(f"the LM must be a decoder-only model, got {type(model).__name__}")
        prenet = model.token_prenet
        if getattr(prenet, "positions", None) not in ("sinusoidal", "none"):
            raise ConfigError("LiMBeR drives an mmseq LM with explicit positions: its token pre-net needs "
                              f"positions 'sinusoidal' or 'none', not {getattr(prenet, 'positions', None)!r}")
        self.model = model
        self.dim, self.vocab_size = model.decoder.dim, prenet.vocab_size

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.model.decoder.weight_dtype

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        prenet = self.model.token_prenet
        return prenet.embed_tokens(tokens) * prenet.embed_scale

    def new_cache(self) -> Any:
        return self.model.decoder.new_cache()

    def select_cache(self, cache: Any, index: Tensor) -> None:
        cache.select(index)

    def forward(self, embeds: Tensor, positions: Tensor, padding_mask: Tensor | None = None,
                cache: Any = None, keep: Tensor | None = None) -> Tensor:
        """``embeds [B, T, D]``, ``positions [B, T]`` (0-based), ``padding_mask [B, past + T]`` (True at padding)
        -> logits ``[B, T, V]``; with ``cache``, only the new steps are given and the cache grows. ``keep`` (1-D
        indices into the T steps): logits at those steps only, ``[B, len(keep), V]`` (a prefill needs one)."""
        prenet = self.model.token_prenet
        x = embeds.to(self.weight_dtype)
        if prenet.positions == "sinusoidal":
            x = x + prenet.embed_positions(positions + prenet.padding_idx + 1).to(x.dtype)
        hidden = self.model.decoder(prenet.dropout(x), padding_mask, cache=cache).last_hidden_state
        return self.model.postnet(hidden if keep is None else hidden[:, keep], None)


class _TransformersCache:
    """The key-value cache (``cache``, formerly ``past_key_values``) a transformers model returned (None before the first call)."""

    def __init__(self) -> None:
        self.past: Any = None


def transformers_causal_lm(config: dict[str, Any]) -> nn.Module:
    """A randomly initialised transformers causal LM from its config dict (``model_type`` names the family)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(config)
    if "model_type" not in config:
        raise ConfigError("a transformers LM config needs 'model_type' (e.g. 'gpt2')")
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
    return AutoModelForCausalLM.from_config(hf_config)


class TransformersCausalLM(nn.Module):
    """A transformers causal LM (GPT-2, GPT-J, OPT, Llama ...) driven through ``inputs_embeds``, with explicit
    ``position_ids`` and an ``attention_mask``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        embeddings = model.get_input_embeddings()
        self.dim, self.vocab_size = embeddings.embedding_dim, embeddings.num_embeddings
        # transformers 5.2x renamed the key-value cache argument and output ``past_key_values`` -> ``cache`` (the
        # old name is deprecated, to be removed); older releases know only the old name
        parameters = inspect.signature(model.forward).parameters
        self._cache_name = "cache" if "cache" in parameters else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in parameters  # transformers >= 4.50's causal LMs

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        return self.model.get_input_embeddings()(tokens)

    def new_cache(self) -> _TransformersCache:
        return _TransformersCache()

    def select_cache(self, cache: _TransformersCache, index: Tensor) -> None:
        if cache.past is not None:
            cache.past.reorder_cache(index)

    def forward(self, embeds: Tensor, positions: Tensor, padding_mask: Tensor | None = None,
                cache: _TransformersCache | None = None, keep: Tensor | None = None) -> Tensor:
        """As :meth:`MmseqCausalLM.forward`."""
        attention_mask = None if padding_mask is None else (~padding_mask).long()
        extra: dict[str, Any] = {self._cache_name: None if cache is None else cache.past}
        if keep is not None and self._logits_to_keep:  # the LM head runs on those steps only
            extra["logits_to_keep"] = keep
        out = self.model(inputs_embeds=embeds.to(self.weight_dtype), attention_mask=attention_mask,
                         position_ids=positions, use_cache=cache is not None, **extra)
        if cache is not None:
            cache.past = out[self._cache_name]
        return out.logits if keep is None or self._logits_to_keep else out.logits[:, keep]


def build_lm(lm: Any) -> nn.Module:
    """The LM adapter for a sub-model argument: ``{"transformers": config dict}``, a transformers model, or an
    mmseq decoder-only model (registered name, spec or built model)."""
    if isinstance(lm, dict) and set(lm) == {"transformers"}:
        return TransformersCausalLM(transformers_causal_lm(lm["transformers"]))
    if isinstance(lm, nn.Module) and hasattr(lm, "get_input_embeddings") and hasattr(lm, "config"):
        return TransformersCausalLM(lm)
    return MmseqCausalLM(build_submodel(lm, "LiMBeR lm"))


# -------------------------------------------------------------------------------------------------- the model
@dataclass
class LimberOutput:
    """What :meth:`LimberModel.forward` returns.

    Attributes:
        outputs: logits over every position, image prefix included (``[B, P + L, V]``).
        prefix_length: P.
        lengths: valid positions per row (``P + token lengths``).
    """

    outputs: Tensor
    prefix_length: int
    lengths: Tensor

    def token_logits(self) -> Tensor:
        """``[B, L, V]``: position ``i`` predicts token ``i`` from the image and the tokens before it."""
        p = self.prefix_length
        return self.outputs[:, p - 1 : -1]


class LimberModel(nn.Module):
    """Frozen image encoder -> trained :class:`ImagePrefix` -> frozen causal LM and its head.

    Args:
        encoder: the frozen :class:`FrozenImageEncoder`.
        prefix: the map from its features to the LM's embedding width.
        lm: :class:`MmseqCausalLM` or :class:`TransformersCausalLM` (frozen here). The tokenizer an mmseq LM carries
            (one loaded from a checkpoint with its tokenizer) becomes ``model.tokenizer``.
    """

    reads = "image"
    writes = "text"

    def __init__(self, encoder: FrozenImageEncoder, prefix: ImagePrefix, lm: nn.Module):
        super().__init__()
        if prefix.input_dim != encoder.output_dim:
            raise ValueError(f"map input_dim {prefix.input_dim} != encoder output_dim {encoder.output_dim}")
        if prefix.output_dim != lm.dim:
            raise ValueError(f"map output_dim {prefix.output_dim} != LM embedding width {lm.dim}")
        self.encoder, self.prefix, self.lm = encoder, prefix, lm
        tokenizer = getattr(lm.model, "tokenizer", None)  # an mmseq LM's checkpoint tokenizer comes along
        if tokenizer is not None:
            self.tokenizer = tokenizer
        self.encoder.requires_grad_(False)
        self.lm.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> LimberModel:
        """Only the map switches mode; the frozen encoder and LM always run in eval mode."""
        super().train(mode)
        self.encoder.eval()
        self.lm.eval()
        return self

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    def encode_images(self, images: Tensor) -> Tensor:
        """Frozen features ``[B, N, C]`` of normalised images ``[B, 3, S, S]`` (what the feature cache stores)."""
        return self.encoder(images)

    def image_embeddings(self, images: Tensor | None = None, features: Tensor | None = None) -> Tensor:
        """Soft prompts ``[B, P, D]`` from images, or from their cached :meth:`encode_images` features."""
        if (images is None) == (features is None):
            raise InputError("pass images or features, exactly one of them")
        if features is None:
            features = self.encode_images(images)
        return self.prefix(features.to(self.prefix.proj.weight.dtype))[0]

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        return self.lm.embed_tokens(tokens)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None, images: Tensor | None = None,
                features: Tensor | None = None) -> LimberOutput:
        """Teacher-forced pass over ``[image prefix] + tokens`` (right-padded ``tokens [B, L]``)."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise InputError(f"tokens must be a long tensor [batch, length], got {tokens.dtype} {list(tokens.shape)}")
        prefix = self.image_embeddings(images, features)
        x = torch.cat([prefix.to(self.lm.weight_dtype), self.embed_tokens(tokens).to(self.lm.weight_dtype)], dim=1)
        p, total = prefix.shape[1], x.shape[1]
        if lengths is None:
            lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        valid = lengths + p
        padding = None if bool((valid == total).all()) else lengths_to_padding_mask(valid, total)
        positions = torch.arange(total, device=tokens.device)[None].expand(tokens.shape[0], -1)
        return LimberOutput(self.lm(x, positions, padding), p, valid)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        g = torch.Generator().manual_seed(0)
        size = self.encoder.image_size
        lengths = torch.tensor([5 - (i % 2) for i in range(batch_size)])
        tokens = torch.randint(3, self.vocab_size, (batch_size, 5), generator=g)
        return {"tokens": tokens, "lengths": lengths, "images": torch.randn(batch_size, 3, size, size, generator=g)}


def limber_model(encoder: dict[str, Any], lm: Any, prefix_length: int | None, dropout: float,
                 layer_norm: bool) -> LimberModel:
    """Every argument explicit; ``prefix_length`` None maps each grid token (grid encoders only)."""
    image_encoder = build_image_encoder(encoder)
    language_model = build_lm(lm)
    if image_encoder.features == "grid" and prefix_length is not None:
        raise ConfigError("a grid-feature encoder maps every token: set prefix_length=None")
    if image_encoder.features == "pooled" and (prefix_length is None or prefix_length < 1):
        raise ConfigError(f"a pooled-feature encoder needs prefix_length >= 1, got {prefix_length}")
    prefix = ImagePrefix(image_encoder.output_dim, language_model.dim, prefix_length, dropout, layer_norm)
    return LimberModel(image_encoder, prefix, language_model)


@register_model(submodels=("lm",))
def limber(encoder: dict[str, Any] | None = None, lm: Any = "text_lm_tiny", prefix_length: int | None = 1,
           dropout: float = 0.1, layer_norm: bool = False) -> LimberModel:
    """LiMBeR with any encoder spec and LM (defaults: the embedded tiny CNN and ``text_lm_tiny``). The paper's
    NFRN50 setting: ``encoder={"library": "timm", "name": "nf_resnet50"}``, a GPT-J LM, ``prefix_length=2``
    (the code's default config: 1); CLIP: ``{"library": "open_clip", "name": "RN50x16", "features": "grid"}``,
    ``prefix_length=None``."""
    return limber_model(encoder or TINY_ENCODER, lm, prefix_length, dropout, layer_norm)


@register_model(submodels=("lm",))
def limber_tiny(image_size: int = 32, lm: Any = "text_lm_tiny", prefix_length: int = 2,
                dropout: float = 0.1) -> LimberModel:
    """The embedded CNN's pooled features mapped to ``prefix_length`` prompts of ``text_lm_tiny``."""
    return limber_model({**TINY_ENCODER, "image_size": image_size}, lm, prefix_length, dropout, False)


@register_model(submodels=("lm",))
def limber_grid_tiny(image_size: int = 32, lm: Any = "text_lm_tiny", dropout: float = 0.1) -> LimberModel:
    """The embedded CNN's grid features (``(image_size / 4)^2`` tokens), each mapped to one prompt."""
    spec = {**TINY_ENCODER, "features": "grid", "image_size": image_size}
    return limber_model(spec, lm, None, dropout, False)


def limber_from_pretrained(encoder: dict[str, Any], lm: Any, *, encoder_weights: str | Path | None = None,
                           prefix_length: int | None = 1, dropout: float = 0.1, layer_norm: bool = False,
                           torch_dtype: torch.dtype | None = None) -> LimberModel:
    """A LiMBeR model whose frozen parts come from local files: the edge where paths become weights.

    Args:
        encoder: an encoder spec (see :func:`build_image_encoder`).
        lm: a transformers model folder (GPT-2, GPT-J, OPT, Llama; its tokenizer, when present, becomes
            ``model.tokenizer``), or an mmseq LM (name, spec, built model).
        encoder_weights: a local weight file: a timm state dict (``pretrained_cfg_overlay=dict(file=...)``) or an
            open_clip checkpoint (``open_clip.create_model(name, pretrained=...)``); None keeps random weights.
        torch_dtype: the transformers LM's dtype (e.g. ``torch.bfloat16`` for GPT-J), default its saved one.

    The recorded config holds the encoder spec and ``{"transformers": <config dict>}``, never a path, so
    :func:`mmseq.save_pretrained` writes a self-contained checkpoint.
    """
    image_encoder = build_image_encoder(encoder, encoder_weights)
    tokenizer = None
    if isinstance(lm, (str, Path)) and Path(lm).is_dir():
        from transformers import AutoModelForCausalLM

        folder = Path(lm)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype) if torch_dtype is not None \
            else AutoModelForCausalLM.from_pretrained(folder)
        language_model: nn.Module = TransformersCausalLM(hf)
        recorded_lm: Any = {"transformers": hf.config.to_diff_dict()}
        if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            from transformers import AutoTokenizer

            tokenizer = TransformersTokenizer(AutoTokenizer.from_pretrained(folder))
    else:
        language_model = build_lm(lm)
        recorded_lm = lm if not isinstance(lm, nn.Module) else getattr(lm, "mmseq_config", None)
        if recorded_lm is None:
            raise ConfigError("an mmseq LM passed as a module must come from mmseq.create_model or mmseq.load")
        tokenizer = getattr(lm, "tokenizer", None)
    prefix = ImagePrefix(image_encoder.output_dim, language_model.dim, prefix_length, dropout, layer_norm)
    model = LimberModel(image_encoder, prefix, language_model)
    spec = check_encoder_spec(encoder)
    model.mmseq_config = {"builder": "limber", "args": {
        "encoder": {k: v for k, v in spec.items() if v is not None}, "lm": recorded_lm,
        "prefix_length": prefix_length, "dropout": dropout, "layer_norm": layer_norm}}
    if tokenizer is not None:
        model.tokenizer = tokenizer
    return model


# ------------------------------------------------------- encoders trained here: labels, contrastive, masked image
# The paper's comparison holds the architecture fixed and varies only the supervision: each of these wraps the same
# timm backbone (random init) as ``backbone``, so the LiMBeR encoder spec ``{"library": "timm", "name": name}``
# takes its weights with ``init_from: {checkpoint: ..., include: ["backbone.*"],
# prefix_map: {"backbone.": "encoder.backbone."}}``.
def _timm_backbone(name: str) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...], dict[str, str]]:
    """A timm model without its classifier (random init), its input mean / std, and the parameter patterns that
    get no gradient on a first step (for the registry test)."""
    import timm

    backbone = timm.create_model(name, num_classes=0)
    cfg = backbone.pretrained_cfg
    # timm ResNets start the last norm of every residual block at zero (zero_init_last): until the first step
    # moves it, the layers before it in the block get no gradient
    why = "timm zero_init_last: the block's last norm starts at zero"
    unused = {f"backbone.layer*.*.{layer}.*": why for layer in ("conv1", "bn1", "conv2", "bn2", "conv3")}
    return backbone, tuple(cfg["mean"]), tuple(cfg["std"]), unused


def _dummy_images(batch_size: int, image_size: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, 3, image_size, image_size, generator=g)


class LabelSupervisedEncoder(nn.Module):
    """A timm backbone (random init) with a linear head over attribute labels: the label-supervised encoder of
    the paper's comparison (its NFRN50 role), trained on the synthetic images by ``limber_encoder_labels``."""

    reads = "image"
    writes = "labels"

    def __init__(self, name: str, num_labels: int, image_size: int):
        super().__init__()
        self.backbone, self.mean, self.std, self.mmseq_unused_parameters = _timm_backbone(name)
        self.head = nn.Linear(self.backbone.num_features, num_labels)
        self.image_size = image_size

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, 3, S, S]`` (normalised) -> label logits ``[B, num_labels]``."""
        return self.head(self.backbone(images))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return {"images": _dummy_images(batch_size, self.image_size)}


@register_model
def limber_label_encoder(backbone: str = "resnet18", num_labels: int = 24,
                         image_size: int = 64) -> LabelSupervisedEncoder:
    """A timm ``backbone`` with a ``num_labels`` head (synthetic captions: 8 colours, 12 shapes, 4 counts)."""
    return LabelSupervisedEncoder(backbone, num_labels, image_size)


@dataclass
class ContrastiveOutput:
    """Unit-norm embeddings ``image_embeds [B, E]`` and ``text_embeds [B, E]``; ``logit_scale`` (scalar, the
    exponentiated learnable temperature, at most 100 as in CLIP)."""

    image_embeds: Tensor
    text_embeds: Tensor
    logit_scale: Tensor


class ContrastiveImageTextEncoder(nn.Module):
    """CLIP's recipe at small size: the image tower (a timm backbone, pooled, then a linear projection) and a text
    tower (character tokens, a pre-LN transformer encoder, the mean over real tokens, a linear projection) embed
    into one space, compared by cosine similarity times a learnable ``logit_scale`` (initialised to 1 / 0.07);
    ``limber_encoder_contrastive`` trains it with open_clip's ``ClipLoss``. LiMBeR keeps the image backbone only.

    Args:
        name: the timm image backbone.
        vocab_size / pad_id: the character tokenizer's (the task trains it on the captions and checks both).
        image_size: the square input side.
        embed_dim: the joint embedding width E.
        text_dim / text_layers / text_heads / text_ffn_dim: the text transformer's sizes.
        dropout: in the text transformer.
    """

    reads = "image"
    writes = "embedding"

    def __init__(self, name: str, vocab_size: int, pad_id: int, image_size: int, embed_dim: int, text_dim: int,
                 text_layers: int, text_heads: int, text_ffn_dim: int, dropout: float):
        super().__init__()
        from mmseq.nn.transformer import LayerSpec, TransformerEncoder
        from mmseq.prenets.text import TokenPrenet

        self.backbone, self.mean, self.std, self.mmseq_unused_parameters = _timm_backbone(name)
        self.image_size, self.pad_id = image_size, pad_id
        self.image_projection = nn.Linear(self.backbone.num_features, embed_dim, bias=False)
        self.token_prenet = TokenPrenet(vocab_size, text_dim, padding_idx=pad_id, scale_embedding=True)
        spec = LayerSpec(text_dim, text_heads, text_ffn_dim, dropout, dropout, dropout, norm_first=True)
        self.text_encoder = TransformerEncoder(spec, text_layers)
        self.text_projection = nn.Linear(text_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images: Tensor) -> Tensor:
        """``images [B, 3, S, S]`` (normalised) -> unit-norm ``[B, E]``."""
        return nn.functional.normalize(self.image_projection(self.backbone(images)), dim=-1)

    def encode_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens [B, L]`` (pad-filled after ``lengths [B]``) -> unit-norm ``[B, E]``."""
        hidden, lengths = self.token_prenet(tokens, lengths)
        padding = lengths_to_padding_mask(lengths, tokens.shape[1])
        hidden = self.text_encoder(hidden, padding).last_hidden_state
        keep = (~padding).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)
        return nn.functional.normalize(self.text_projection(pooled), dim=-1)

    def forward(self, images: Tensor, tokens: Tensor, lengths: Tensor) -> ContrastiveOutput:
        return ContrastiveOutput(self.encode_image(images), self.encode_text(tokens, lengths),
                                 self.logit_scale.exp().clamp(max=100.0))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        lengths = torch.tensor([7 - (i % 3) for i in range(batch_size)])
        tokens = torch.randint(self.pad_id + 1, self.token_prenet.vocab_size, (batch_size, 7), generator=g)
        tokens[torch.arange(7)[None, :] >= lengths[:, None]] = self.pad_id
        return {"images": _dummy_images(batch_size, self.image_size), "tokens": tokens, "lengths": lengths}


@register_model
def limber_contrastive_encoder(backbone: str = "resnet18", vocab_size: int = 53, pad_id: int = 1,
                               image_size: int = 64, embed_dim: int = 128, text_dim: int = 128, text_layers: int = 2,
                               text_heads: int = 4, text_ffn_dim: int = 256,
                               dropout: float = 0.1) -> ContrastiveImageTextEncoder:
    """A timm image tower and a character-level text tower trained contrastively (CLIP's role)."""
    return ContrastiveImageTextEncoder(backbone, vocab_size, pad_id, image_size, embed_dim, text_dim, text_layers,
                                       text_heads, text_ffn_dim, dropout)


def patch_mask_pixels(mask: Tensor, patch_size: int) -> Tensor:
    """A patch mask ``[B, H / p, W / p]`` (True = masked) as a pixel mask ``[B, 1, H, W]``."""
    return mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1)


class MaskedImageEncoder(nn.Module):
    """SimMIM on a CNN: masked ``patch_size`` squares of the (normalised) input are replaced by a learned
    per-channel mask value, the timm backbone encodes the image to its last feature map (stride ``r``), and a
    one-layer decoder (a 1x1 convolution to ``3 r^2`` channels, then pixel shuffle) predicts every pixel;
    ``limber_encoder_mim`` scores the masked pixels only. LiMBeR keeps the backbone only (masks are for training:
    it sees whole images).
    """

    reads = "image"
    writes = "image"

    def __init__(self, name: str, image_size: int, patch_size: int):
        super().__init__()
        self.backbone, self.mean, self.std, self.mmseq_unused_parameters = _timm_backbone(name)
        stride = int(self.backbone.feature_info[-1]["reduction"])
        for size, what in ((stride, "the backbone's stride"), (patch_size, "patch_size")):
            if image_size % size:
                raise ConfigError(f"image_size {image_size} must be a multiple of {what} ({size})")
        self.image_size, self.patch_size, self.stride = image_size, patch_size, stride
        self.mask_token = nn.Parameter(torch.zeros(3))
        self.decoder = nn.Sequential(nn.Conv2d(self.backbone.num_features, 3 * stride * stride, 1),
                                     nn.PixelShuffle(stride))

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """``images [B, 3, S, S]`` (normalised), ``mask [B, S / p, S / p]`` (True = masked) -> predicted pixels
        ``[B, 3, S, S]``."""
        if mask.shape != (images.shape[0], self.grid_size, self.grid_size):
            raise InputError(f"mask must be [batch, {self.grid_size}, {self.grid_size}] for {self.image_size} px "
                             f"images and {self.patch_size} px patches, got {list(mask.shape)}")
        pixels = patch_mask_pixels(mask, self.patch_size)
        masked = torch.where(pixels, self.mask_token.view(1, 3, 1, 1).to(images.dtype), images)
        return self.decoder(self.backbone.forward_features(masked))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        mask = torch.zeros(batch_size, self.grid_size, self.grid_size, dtype=torch.bool)
        mask[:, ::2] = True
        return {"images": _dummy_images(batch_size, self.image_size), "mask": mask}


@register_model
def limber_mim_encoder(backbone: str = "resnet18", image_size: int = 64, patch_size: int = 8) -> MaskedImageEncoder:
    """A timm backbone with SimMIM's one-layer pixel decoder (masked image modelling, BEiT's role)."""
    return MaskedImageEncoder(backbone, image_size, patch_size)
