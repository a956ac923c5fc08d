"""The decode engine: the state of one generation call, stepped one token at a time by the search algorithms.

A *decoding* holds what a model needs to extend a batch of hypotheses by one token -- the KV cache, the encoder
memory (encoder-decoder) or the prompt's padding (decoder-only), the positions -- and offers four operations:
``first_logits()`` (scores of the first new token), ``step(tokens)`` (feed one token per row, get the next
scores), ``select(index)`` (keep / reorder rows: finished rows leave, beams are reordered) and ``repeat(k)`` (one
copy per beam). :mod:`mmseq.generation.text` runs greedy, beam and sampling searches on it.

Each step runs the decoder through :class:`~mmseq.nn.incremental.StepDecoder`, built here on purpose for this call:
the fused one-step path when the decoder is made of the plain modules it knows, the module path otherwise.
``fast=False`` forces the module path (the reference).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmseq.errors import InputError
from mmseq.models.compose import DecoderOnlyModel, EncoderDecoderModel
from mmseq.nn.attention import lengths_to_padding_mask, padding_mask_or_none
from mmseq.nn.incremental import StepDecoder
from mmseq.postnets import PostnetDict


def decoder_dtype(model: EncoderDecoderModel | DecoderOnlyModel) -> torch.dtype:
    return model.decoder.weight_dtype


class Encoded:
    """An encoder output in the decoder's dtype (the two may differ: :func:`mmseq.inference.set_precision`), its
    padding mask (None when no row is padded) and lengths."""

    def __init__(self, model: EncoderDecoderModel, x: Any, lengths: Tensor | None):
        out, self.lengths = model.encode(x, lengths)
        self.raw = out.last_hidden_state  # in the encoder's own dtype (the CTC head reads it)
        self.memory = self.raw.to(decoder_dtype(model))
        self.padding_mask = padding_mask_or_none(self.lengths, self.memory.shape[1])

    def select(self, index: Tensor) -> None:
        self.memory = self.memory.index_select(0, index)
        self.raw = self.raw.index_select(0, index)
        self.lengths = self.lengths.index_select(0, index)
        if self.padding_mask is not None:
            self.padding_mask = self.padding_mask.index_select(0, index)


class Seq2SeqDecoding:
    """Token decoding of an :class:`~mmseq.models.compose.EncoderDecoderModel`: the input is encoded once, the
    decoder starts from ``start_id``.

    Args:
        model: the encoder-decoder model.
        x / lengths: encoder inputs (waveforms, token ids ...) and their lengths.
        start_id: the decoder's first input token.
        fast: allow the decoder's fused one-step path.
    """

    initial_tokens: list[int]

    def __init__(self, model: EncoderDecoderModel, x: Any, lengths: Tensor | None = None, *, start_id: int = 2,
                 fast: bool = True):
        self.model = model
        self.encoded = Encoded(model, x, lengths)
        self.batch_size = self.encoded.memory.shape[0]
        self.device = self.encoded.memory.device
        self.cache = model.decoder.new_cache()
        self.stepper = StepDecoder(model.decoder, fast)
        self.start_id = start_id
        self.initial_tokens = [start_id]

    def first_logits(self) -> Tensor:
        return self.step(torch.full((self.batch_size,), self.start_id, dtype=torch.long, device=self.device))

    def step(self, tokens: Tensor) -> Tensor:
        """``tokens [N]`` (one per live row) -> next-token logits ``[N, V]``."""
        model = self.model
        hidden, _ = model.decoder_prenet(tokens[:, None], None, offset=self.cache.length)
        out = self.stepper(hidden, self.cache, self.encoded.memory, self.encoded.padding_mask)
        return model.decoder_postnet(out, None)[:, -1]

    def select(self, index: Tensor, same_inputs: bool = False) -> None:
        """Keep / reorder rows. ``same_inputs``: every row moves to a row with the same encoder output (beams of
        one utterance), so the memory and the cross-attention caches stay as they are."""
        self.cache.select(index, cross=not same_inputs)
        if not same_inputs:
            self.encoded.select(index)
        self.batch_size = len(index)

    def repeat(self, times: int) -> None:
        """One copy of every row per beam (``[B] -> [B * times]``); cross-attention keys and values are computed
        once per utterance first, so the projections do not run per beam."""
        if self.cache.cross_attn[0].keys is None:
            self.model.decoder.fill_cross_cache(self.cache, self.encoded.memory)
        self.select(torch.arange(self.batch_size, device=self.device).repeat_interleave(times))

    def ctc_log_probs(self) -> Tensor:
        """The model's CTC head on the encoder output: the encoder post-net, or its ``"ctc"`` entry."""
        head = self.model.encoder_postnet
        if isinstance(head, PostnetDict):
            head = head["ctc"] if "ctc" in head else None
        if head is None:
            raise InputError("ctc_weight > 0 needs a model with a CTC head (built with ctc=True)")
        return head(self.encoded.raw, self.encoded.lengths)


class DecoderOnlyDecoding:
    """Token decoding of a :class:`~mmseq.models.compose.DecoderOnlyModel` after a prompt.

    The prefix (if any) and the prompt tokens run through the decoder in one pass that fills the cache. Prompts of
    different lengths are right-padded: each row's padded positions stay masked for the rest of the call, and its
    new tokens take the positions after its own prompt.

    Args:
        model: the decoder-only model.
        tokens / lengths: prompt token ids ``[B, L]`` (right-padded) and their lengths (None: no padding).
        prefix: the prefix pre-net's input (e.g. images), or None.
        fast: allow the decoder's fused one-step path.
    """

    initial_tokens: list[int] = []

    def __init__(self, model: DecoderOnlyModel, tokens: Tensor, lengths: Tensor | None = None, *, prefix: Any = None,
                 fast: bool = True):
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise InputError(f"prompt tokens must be [batch, length >= 1], got {list(tokens.shape)}")
        self.model = model
        self.device = tokens.device
        if lengths is None:
            lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=self.device)
        if bool((lengths < 1).any()):
            raise InputError("every prompt needs at least one token")
        hidden, total, prefix_length = model.embed(tokens, lengths, prefix)
        self.cache = model.decoder.new_cache()
        self.stepper = StepDecoder(model.decoder, fast)
        padded = not bool((total == hidden.shape[1]).all())
        self.self_padding = lengths_to_padding_mask(total, hidden.shape[1]) if padded else None
        out = model.decoder(hidden, self.self_padding, cache=self.cache).last_hidden_state
        last = out[torch.arange(out.shape[0], device=self.device), total - 1][:, None]
        self._first = model.postnet(last, None)[:, -1]
        self.next_position = lengths.clone()  # token positions (the token pre-net adds the prefix's length)
        self.prefix_length = prefix_length
        self.batch_size = tokens.shape[0]

    def first_logits(self) -> Tensor:
        return self._first

    def step(self, tokens: Tensor) -> Tensor:
        """``tokens [N]`` -> next-token logits ``[N, V]``."""
        model = self.model
        ones = torch.ones_like(tokens)
        hidden, _ = model.token_prenet(tokens[:, None], ones, offset=self.next_position + self.prefix_length)
        if self.self_padding is not None:
            self.self_padding = torch.cat([self.self_padding, ones[:, None].eq(0)], dim=1)
        out = self.stepper(hidden, self.cache, self_padding_mask=self.self_padding)
        self.next_position = self.next_position + 1
        return model.postnet(out, None)[:, -1]

    def select(self, index: Tensor, same_inputs: bool = False) -> None:
        self.cache.select(index)
        self.next_position = self.next_position.index_select(0, index)
        self._first = self._first.index_select(0, index)
        if self.self_padding is not None:
            self.self_padding = self.self_padding.index_select(0, index)
        self.batch_size = len(index)

    def repeat(self, times: int) -> None:
        self.select(torch.arange(self.batch_size, device=self.device).repeat_interleave(times))

    def ctc_log_probs(self) -> Tensor:
        raise InputError("joint CTC scoring needs an encoder-decoder model with a CTC head")
