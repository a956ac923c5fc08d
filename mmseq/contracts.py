"""The contracts every piece of mmseq is written against, as ``typing.Protocol`` classes.

mmseq composes models from parts: a **pre-net** turns a modality into a hidden sequence, a **trunk** (encoder
and/or decoder stack) transforms it, and **post-nets** turn hidden states into a modality, logits or a loss input.
Parts are passed into a composition's constructor (:mod:`mmseq.models.compose`); nothing downstream inspects a
part's class (``isinstance``) or reaches into its internals, so any object that satisfies these protocols plugs in.

* :class:`Prenet` -- ``forward(x, lengths) -> (hidden [B, T, D], lengths [B])`` with ``output_dim`` (D) and
  ``downsample_rate`` (input steps per output step). It reports its own output lengths. A pre-net that has more to
  say (point-group centres, visibility masks, per-scale 2-D features) returns a :class:`PrenetOutput`, which
  unpacks like the pair and carries named ``extras`` beside it. Decoder pre-nets also take ``offset`` (steps
  already decoded) for incremental decoding. ``modality`` names what it reads (``"waveform"``, ``"text"``,
  ``"mel"``, ``"frames"``, ``"image"``, ``"points"``), so a pipeline can tell whether a model fits its task.
* :class:`Postnet` -- ``forward(hidden, lengths) -> outputs`` (a tensor, a dataclass of tensors, or a dict of
  them for :class:`~mmseq.postnets.PostnetDict`). Losses are functions of outputs and targets, kept apart.
  ``modality`` names what it writes (``"text"``, ``"mel"``, ``"classes"``, ``"frames"``).
* :class:`FeatureEncoder` -- every encoder model: ``forward_features(x, lengths) -> Features`` with all hidden
  states (the trunk's input, then each layer's output) and their lengths; ``output_dim`` and
  ``num_hidden_states``. TERA downstream probes, COCONUT distillation and SSMA fusion all use this one door.
* Trunk stacks take ``(hidden [B, T, D], padding_mask [B, T])`` (True at padding); a decoder keeps an
  incremental cache (:class:`~mmseq.nn.transformer.DecoderCache`): self-attention keys/values grow, cross-attention
  keys/values are computed once.

This module imports nothing from mmseq: every layer may depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


class PrenetOutput(tuple):
    """``(hidden [B, T, D], lengths [B])`` plus named extras a method needs beside them.

    It is a 2-tuple, so ``hidden, lengths = prenet(x, lengths)`` works for every pre-net; the extras (e.g.
    ``centres [B, G, 3]``, ``visible [B, G]``, ``scales: list[Tensor]``) are in :attr:`extras`.
    """

    extras: dict[str, Any]

    def __new__(cls, hidden: Tensor, lengths: Tensor, **extras: Any) -> PrenetOutput:
        out = super().__new__(cls, (hidden, lengths))
        out.extras = extras
        return out

    @property
    def hidden(self) -> Tensor:
        return self[0]

    @property
    def lengths(self) -> Tensor:
        return self[1]


def as_prenet_output(result: Any) -> PrenetOutput:
    """A pre-net's return value (a plain pair or a :class:`PrenetOutput`) as a :class:`PrenetOutput`."""
    if isinstance(result, PrenetOutput):
        return result
    hidden, lengths = result
    return PrenetOutput(hidden, lengths)


@dataclass
class Features:
    """What ``forward_features`` returns.

    Attributes:
        hidden_states: the trunk's input, then every layer's output, each ``[B, T, D]``.
        lengths: valid steps per row ``[B]``.
        downsample_rate: input steps (e.g. waveform samples) per output step.
    """

    hidden_states: list[Tensor]
    lengths: Tensor
    downsample_rate: int

    @property
    def last_hidden_state(self) -> Tensor:
        return self.hidden_states[-1]


@runtime_checkable
class Prenet(Protocol):
    output_dim: int
    downsample_rate: int

    def __call__(self, x: Any, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class Postnet(Protocol):
    def __call__(self, hidden: Tensor, lengths: Tensor | None = None) -> Any: ...


@runtime_checkable
class FeatureEncoder(Protocol):
    output_dim: int
    num_hidden_states: int

    def forward_features(self, x: Any, lengths: Tensor | None = None) -> Features: ...


def check_prenet(prenet: Any, role: str) -> None:
    """Raise TypeError unless ``prenet`` has the pre-net attributes (a programming error, not a user one)."""
    for attr in ("output_dim", "downsample_rate"):
        if not hasattr(prenet, attr):
            raise TypeError(f"{role} {type(prenet).__name__} lacks the pre-net attribute {attr!r}")


def full_lengths(x: Tensor, dim: int = 1) -> Tensor:
    """``lengths [B]`` when no row is padded: every row has ``x.shape[dim]`` steps."""
    return torch.full((x.shape[0],), x.shape[dim], dtype=torch.long, device=x.device)
