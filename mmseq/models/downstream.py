"""Downstream probes (SUPERB / s3prl style) on any encoder that exposes ``forward_features``.

``UpstreamClassifier(upstream, head)`` runs the upstream's ``forward_features`` (without gradients and in eval mode
when frozen, as s3prl's ``run_downstream.py`` does without ``--upstream_trainable``), combines its hidden states
with a learnable softmax-weighted sum (weights start uniform; s3prl's featurizer) or picks one, and applies a
frame-level or utterance-level head. The upstream is any :class:`~mmseq.contracts.FeatureEncoder`: a TERA model,
a SpeechT5 encoder-decoder or encoder model, or :class:`FeatureUpstream` (plain log-mel behind the same door, so a
baseline uses the very same heads).

The registered builder ``tera_downstream`` takes the upstream as a sub-model argument: a registered name (random
weights), a model spec, a built or loaded model, or (through ``mmseq train`` / :func:`mmseq.checkpoint.build_model`)
a checkpoint path. A saved probe holds the upstream's spec and weights itself, so it loads anywhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.contracts import Features, full_lengths
from mmseq.data.features import TeraFbank, TeraLogMel, utterance_cmvn
from mmseq.errors import ConfigError, unknown_choice
from mmseq.nn.layer_sum import WeightedLayerSum
from mmseq.postnets.classifier import FrameClassifier, UtteranceClassifier
from mmseq.registry import build_submodel, register_model

PLAIN_FEATURES = {"logmel": TeraLogMel, "fbank": TeraFbank}


class FeatureUpstream(nn.Module):
    """Plain features behind ``forward_features``: one "hidden state", the features themselves.

    Args:
        frontend: waveform ``[B, S]`` -> ``(frames [B, T, F], lengths)`` with ``output_dim`` and ``downsample_rate``
            (e.g. :class:`mmseq.data.features.TeraLogMel`).
    """

    def __init__(self, frontend: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.output_dim = frontend.output_dim
        self.num_hidden_states = 1
        self.reads = "waveform"

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Features:
        """Waveforms ``[B, S]`` through the front-end, or frames ``[B, T, F]`` as they are."""
        if x.dim() == 3:
            return Features([x], full_lengths(x) if lengths is None else lengths, self.frontend.downsample_rate)
        frames, lengths = self.frontend(x, lengths)
        return Features([frames], lengths, self.frontend.downsample_rate)


class UpstreamClassifier(nn.Module):
    """upstream ``forward_features`` -> weighted sum of its hidden states (or one of them) -> head.

    Args:
        upstream: any module with ``forward_features(x, lengths) -> Features`` and ``num_hidden_states``.
        head: ``head(hidden [B, T, D], lengths [B]) -> logits``.
        layer: use only this hidden state (an index into ``hidden_states``) instead of the weighted sum (always the
            one there is, for an upstream with a single hidden state).
        freeze_upstream: no gradients into the upstream, and keep it in eval mode (no dropout).
        normalize_layers: layer-normalise hidden states before the weighted sum.
        normalize_utterances: mean/variance-normalise every hidden state over each utterance's valid frames
            (per dimension, :func:`~mmseq.data.features.utterance_cmvn`), removing per-utterance offsets such as a
            speaker's; what utterance CMVN does to log-mel inputs, applied to every layer. Not in s3prl.
    """

    def __init__(self, upstream: nn.Module, head: nn.Module, layer: int | None = None, freeze_upstream: bool = True,
                 normalize_layers: bool = False, normalize_utterances: bool = False):
        super().__init__()
        if not hasattr(upstream, "forward_features"):
            raise ConfigError(f"{type(upstream).__name__} has no forward_features: it cannot be a probe's upstream")
        self.upstream, self.head, self.layer = upstream, head, layer
        self.freeze_upstream = freeze_upstream
        self.normalize_utterances = normalize_utterances
        count = upstream.num_hidden_states
        if layer is not None and not -count <= layer < count:
            raise ConfigError(f"layer {layer} is out of range: the upstream has {count} hidden states")
        if count == 1 and layer is None:
            layer = self.layer = 0  # one hidden state (plain features): a weighted sum of it would learn nothing
        self.layer_sum = WeightedLayerSum(count, normalize_layers) if layer is None else None
        self.reads = getattr(upstream, "reads", None)
        self.writes = getattr(head, "modality", None)
        if freeze_upstream:
            self.upstream.requires_grad_(False)
            self.upstream.eval()

    def train(self, mode: bool = True) -> UpstreamClassifier:
        super().train(mode)
        if self.freeze_upstream:
            self.upstream.eval()
        return self

    def upstream_features(self, x: Tensor, lengths: Tensor | None = None) -> Features:
        """The upstream's hidden states (normalised per utterance when the probe does so)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_upstream):
            features = self.upstream.forward_features(x, lengths)
        if self.normalize_utterances:
            states = [utterance_cmvn(h, features.lengths) for h in features.hidden_states]
            features = Features(states, features.lengths, features.downsample_rate)
        return features

    def classify(self, hidden_states: list[Tensor], lengths: Tensor) -> Tensor:
        """The head on hidden states already computed (e.g. cached for a frozen upstream)."""
        hidden = hidden_states[self.layer] if self.layer_sum is None else self.layer_sum(hidden_states)
        return self.head(hidden, lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits (``[B, T, C]`` frame-level or ``[B, C]`` utterance-level) for waveforms or frames ``x``."""
        features = self.upstream_features(x, lengths)
        return self.classify(features.hidden_states, features.lengths)

    def output_lengths(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Frame lengths the head sees for these inputs (for frame-level targets)."""
        return self.upstream_features(x, lengths).lengths

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Waveforms of 0.2 s and 0.1 s (for the registry test)."""
        lengths = torch.tensor([3200] + [1600] * (batch_size - 1))[:batch_size]
        x = torch.randn(batch_size, 3200) * 0.1
        x[torch.arange(3200)[None, :] >= lengths[:, None]] = 0
        return {"x": x, "lengths": lengths}


def build_upstream(upstream: Any) -> nn.Module:
    """``"logmel"`` / ``"fbank"`` (plain features, no weights), or a sub-model (registered name, spec, model)."""
    if isinstance(upstream, str) and upstream in PLAIN_FEATURES:
        return FeatureUpstream(PLAIN_FEATURES[upstream]())
    return build_submodel(upstream, "upstream")


@register_model(submodels=("upstream",))
def tera_downstream(upstream: Any = "logmel", num_classes: int = 10, level: str = "frame", hidden_dim: int = 0,
                    layer: int | None = None, freeze_upstream: bool = True, dropout: float = 0.0,
                    normalize_layers: bool = False, normalize_utterances: bool = False) -> UpstreamClassifier:
    """A frozen (or fine-tuned) upstream, a weighted sum of its layers and a linear / one-hidden-layer head.

    Args:
        upstream: ``"logmel"`` / ``"fbank"`` (the baseline), a registered encoder (e.g. ``"tera_base"``, random
            weights), a model spec or model (e.g. ``mmseq.load("runs/tera/pretrain/best")``); its weights are
            saved with the probe.
        num_classes: output classes.
        level: ``"frame"`` (logits per frame, e.g. phones) or ``"utterance"`` (mean-pooled: speaker, intent).
        hidden_dim: 0 for a linear head, else one hidden layer of this width.
        layer: use this hidden state only (0 = the encoder's input) instead of the learnable weighted sum.
        freeze_upstream: keep the upstream fixed (no gradients, eval mode).
        dropout: dropout after the hidden layer.
        normalize_layers: layer-normalise hidden states before the weighted sum.
        normalize_utterances: per-utterance mean/variance normalisation of every hidden state.
    """
    if level not in ("frame", "utterance"):
        raise ConfigError(unknown_choice("downstream level", level, ["frame", "utterance"]))
    body = build_upstream(upstream)
    head_cls = FrameClassifier if level == "frame" else UtteranceClassifier
    head = head_cls(body.output_dim, num_classes, hidden_dim, dropout)
    return UpstreamClassifier(body, head, layer, freeze_upstream, normalize_layers, normalize_utterances)
