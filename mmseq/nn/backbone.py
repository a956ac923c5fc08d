"""Composition of pre-nets, the shared trunk and post-nets (constructor injection, no subclass trees).

Contracts (see DESIGN.md):
    * pre-net: ``forward(x, lengths) -> (hidden [B, T, D], lengths [B])`` with attributes ``output_dim`` and
      ``downsample_rate``; decoder pre-nets also accept ``offset`` (steps already decoded) for incremental
      decoding; ``dummy_inputs(batch_size) -> (x, lengths)`` gives a small valid input for tests.
    * post-net: ``forward(hidden, lengths) -> outputs``; losses live elsewhere as functions of outputs.
    * encoders expose ``forward_features``: per-layer hidden states and their lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.nn.transformer import DecoderCache, TransformerDecoder, TransformerEncoder


def lengths_to_padding_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """``lengths [B]`` -> bool ``[B, max_length]``, True at padding."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] >= lengths[:, None]


@dataclass
class Features:
    """What ``forward_features`` returns: ``hidden_states`` = the encoder input then every layer's output,
    each ``[B, T, D]``; ``lengths [B]``; ``downsample_rate`` = input steps per output step."""

    hidden_states: list[Tensor]
    lengths: Tensor
    downsample_rate: int

    @property
    def last_hidden_state(self) -> Tensor:
        return self.hidden_states[-1]


def _check_prenet(prenet: nn.Module, role: str) -> None:
    for attr in ("output_dim", "downsample_rate"):
        if not hasattr(prenet, attr):
            raise TypeError(f"{role} {type(prenet).__name__} lacks the pre-net attribute {attr!r}")


class EncoderModel(nn.Module):
    """pre-net -> encoder -> post-net (classification, reconstruction, features for downstream heads).

    Args:
        prenet: turns the input modality into ``[B, T, D]`` (and reports output lengths).
        encoder: the shared encoder stack; its width must equal ``prenet.output_dim``.
        postnet: optional head applied to the encoder output.
    """

    def __init__(self, prenet: nn.Module, encoder: TransformerEncoder, postnet: nn.Module | None = None):
        super().__init__()
        _check_prenet(prenet, "encoder pre-net")
        if prenet.output_dim != encoder.dim:
            raise ValueError(f"pre-net output_dim {prenet.output_dim} != encoder width {encoder.dim}")
        self.prenet, self.encoder, self.postnet = prenet, encoder, postnet

    def forward_features(self, x: Any, lengths: Tensor | None = None) -> Features:
        hidden, lengths = self.prenet(x, lengths)
        out = self.encoder(hidden, lengths_to_padding_mask(lengths, hidden.shape[1]), output_hidden_states=True)
        return Features(out.hidden_states, lengths, self.prenet.downsample_rate)

    def forward(self, x: Any, lengths: Tensor | None = None) -> Any:
        hidden, lengths = self.prenet(x, lengths)
        out = self.encoder(hidden, lengths_to_padding_mask(lengths, hidden.shape[1]))
        return out.last_hidden_state if self.postnet is None else self.postnet(out.last_hidden_state, lengths)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        x, lengths = self.prenet.dummy_inputs(batch_size)
        return {"x": x, "lengths": lengths}


@dataclass
class Seq2SeqOutput:
    outputs: Any
    encoder_hidden: Tensor
    encoder_lengths: Tensor
    decoder_hidden: Tensor
    cross_attentions: list[Tensor] = field(default_factory=list)


class EncoderDecoderModel(nn.Module):
    """encoder pre-net -> encoder -> decoder (fed by the decoder pre-net) -> decoder post-net.

    Args:
        encoder_prenet / decoder_prenet: modality adapters of the source and the target.
        encoder / decoder: the shared trunk.
        decoder_postnet: turns decoder states into the target modality (logits, mel frames ...).
        encoder_postnet: optional head on the encoder (e.g. a CTC head), returned by :meth:`encode_outputs`.
    """

    def __init__(self, encoder_prenet: nn.Module, encoder: TransformerEncoder, decoder_prenet: nn.Module,
                 decoder: TransformerDecoder, decoder_postnet: nn.Module, encoder_postnet: nn.Module | None = None):
        super().__init__()
        _check_prenet(encoder_prenet, "encoder pre-net")
        _check_prenet(decoder_prenet, "decoder pre-net")
        if encoder_prenet.output_dim != encoder.dim or decoder_prenet.output_dim != decoder.dim:
            raise ValueError("pre-net output_dim must equal the width of the stack it feeds")
        self.encoder_prenet, self.encoder, self.encoder_postnet = encoder_prenet, encoder, encoder_postnet
        self.decoder_prenet, self.decoder, self.decoder_postnet = decoder_prenet, decoder, decoder_postnet

    def encode(self, x: Any, lengths: Tensor | None = None, output_hidden_states: bool = False):
        """Returns ``(encoder output, output lengths [B])``."""
        hidden, lengths = self.encoder_prenet(x, lengths)
        out = self.encoder(hidden, lengths_to_padding_mask(lengths, hidden.shape[1]),
                           output_hidden_states=output_hidden_states)
        return out, lengths

    def forward_features(self, x: Any, lengths: Tensor | None = None) -> Features:
        out, lengths = self.encode(x, lengths, output_hidden_states=True)
        return Features(out.hidden_states, lengths, self.encoder_prenet.downsample_rate)

    def decode(self, targets: Any, target_lengths: Tensor | None, memory: Tensor, memory_padding_mask: Tensor,
               cache: DecoderCache | None = None, output_attentions: bool = False, **prenet_kwargs: Any):
        """Run the decoder pre-net, decoder and post-net on (new) target steps.

        With ``cache``, ``targets`` holds only the new steps; positions continue from ``cache.length``.
        ``prenet_kwargs`` go to the decoder pre-net (e.g. ``speaker_embeddings``).
        Returns ``(post-net outputs, decoder output, target lengths)``.
        """
        offset = cache.length if cache is not None else 0
        hidden, target_lengths = self.decoder_prenet(targets, target_lengths, offset=offset, **prenet_kwargs)
        padding = None
        if cache is None:
            padding = lengths_to_padding_mask(target_lengths, hidden.shape[1])
        out = self.decoder(hidden, padding, memory, memory_padding_mask, cache=cache,
                           output_attentions=output_attentions)
        return self.decoder_postnet(out.last_hidden_state, target_lengths), out, target_lengths

    def forward(self, x: Any, lengths: Tensor | None, targets: Any, target_lengths: Tensor | None = None,
                output_attentions: bool = False, **prenet_kwargs: Any) -> Seq2SeqOutput:
        """Teacher-forced forward: ``targets`` are the decoder inputs (already shifted right)."""
        enc, lengths = self.encode(x, lengths)
        memory_mask = lengths_to_padding_mask(lengths, enc.last_hidden_state.shape[1])
        outputs, dec, _ = self.decode(targets, target_lengths, enc.last_hidden_state, memory_mask,
                                      output_attentions=output_attentions, **prenet_kwargs)
        return Seq2SeqOutput(outputs, enc.last_hidden_state, lengths, dec.last_hidden_state, dec.cross_attentions)

    def generate(self, x: Any, lengths: Tensor | None = None, *, num_beams: int = 1, **kwargs: Any) -> Tensor:
        """Token ids ``[B, L]`` by greedy (``num_beams=1``) or beam search; see :mod:`mmseq.generation.text`."""
        from mmseq.generation import beam_search, greedy_search

        if num_beams > 1:
            return beam_search(self, x, lengths, num_beams=num_beams, **kwargs)
        return greedy_search(self, x, lengths, **kwargs)

    def generate_speech(self, x: Any, lengths: Tensor | None = None, **kwargs: Any):
        """Mel frames (and waveforms with ``vocoder=``); see :func:`mmseq.generation.generate_speech`."""
        from mmseq.generation import generate_speech

        return generate_speech(self, x, lengths, **kwargs)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        x, lengths = self.encoder_prenet.dummy_inputs(batch_size)
        targets, target_lengths = self.decoder_prenet.dummy_inputs(batch_size)
        return {"x": x, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}
