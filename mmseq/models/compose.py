"""Model kinds: pre-nets, the shared trunk and post-nets composed by constructor injection (no subclass trees).

* :class:`EncoderModel` -- [front-end] -> pre-net -> encoder -> [post-net]: classification, reconstruction
  (TERA), features for downstream heads.
* :class:`EncoderDecoderModel` -- encoder pre-net -> encoder [-> encoder post-net, e.g. CTC] ; decoder pre-net ->
  decoder (cross-attending to the encoder) -> decoder post-net: ASR, TTS, VC, translation.
* :class:`DecoderOnlyModel` -- [prefix pre-net] + token pre-net -> causal decoder -> LM head: language models and
  prefix-conditioned ones (LiMBeR: image features mapped to soft prompts for a frozen LM).

Parts follow :mod:`mmseq.contracts`; sizes flow forward (a pre-net's ``output_dim`` must equal the width of the
stack it feeds). A slot that needs several named post-nets takes a :class:`~mmseq.postnets.PostnetDict`.
Generation over these models is :mod:`mmseq.generation`; the compositions themselves know nothing of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.contracts import Features, as_prenet_output, check_prenet, full_lengths
from mmseq.errors import InputError
from mmseq.nn.attention import lengths_to_padding_mask, padding_mask_or_none
from mmseq.nn.transformer import DecoderCache, TransformerDecoder, TransformerEncoder


def _check_width(prenet: nn.Module, stack: nn.Module, role: str, stack_name: str) -> None:
    if prenet.output_dim != stack.dim:
        raise ValueError(f"{role} output_dim {prenet.output_dim} != {stack_name} width {stack.dim}")


def _dummy_conditioning(prenet: nn.Module, batch_size: int) -> dict[str, Any]:
    """Extra keyword inputs a pre-net takes (e.g. speaker embeddings), for tests; none by default."""
    make = getattr(prenet, "dummy_conditioning", None)
    return make(batch_size) if make is not None else {}


def encode_in_chunks(encode, frames: Tensor, lengths: Tensor, max_steps: int) -> list[Tensor]:
    """``encode(frames, lengths) -> list of hidden states``, applied to equal chunks of at most ``max_steps``
    steps (``torch.chunk``'s split, as s3prl: ``ceil(T / max)`` chunks of ``ceil(T / chunks)`` steps, the last
    shorter), each encoded on its own, the states concatenated over time. ``max_steps <= 0`` never splits."""
    total = frames.shape[1]
    if max_steps <= 0 or total <= max_steps:
        return encode(frames, lengths)
    size = math.ceil(total / math.ceil(total / max_steps))
    pieces = []
    for start in range(0, total, size):
        chunk = frames[:, start : start + size]
        # A row that has ended before this chunk is encoded from one (padding) step and discarded.
        chunk_lengths = (lengths - start).clamp(min=1, max=chunk.shape[1])
        pieces.append(encode(chunk, chunk_lengths))
    return [torch.cat(layer, dim=1) for layer in zip(*pieces)]


class EncoderModel(nn.Module):
    """[front-end] -> pre-net -> encoder -> [post-net].

    Args:
        prenet: turns the input into ``[B, T, D]`` and reports output lengths.
        encoder: the encoder stack; its width must equal ``prenet.output_dim``.
        postnet: optional head on the encoder output (a :class:`~mmseq.postnets.PostnetDict` for several).
        frontend: optional stage before the pre-net without trained weights (e.g. waveform -> log-mel frames):
            ``frontend(x, lengths) -> (frames, lengths)`` with ``downsample_rate``.
        max_input_frames: :meth:`forward_features` splits pre-net inputs (front-end frames) longer than this into
            equal chunks encoded on their own (positions restart), as s3prl's TERA upstream does with its
            ``sequence_length``; 0 never splits.
        downsample_rate: input steps per output step that :meth:`forward_features` reports; default: the
            front-end's times the pre-net's.
    """

    def __init__(self, prenet: nn.Module, encoder: TransformerEncoder, postnet: nn.Module | None = None, *,
                 frontend: nn.Module | None = None, max_input_frames: int = 0, downsample_rate: int | None = None):
        super().__init__()
        check_prenet(prenet, "encoder pre-net")
        _check_width(prenet, encoder, "pre-net", "encoder")
        self.frontend, self.prenet, self.encoder, self.postnet = frontend, prenet, encoder, postnet
        self.max_input_frames = max_input_frames
        self._downsample_rate = downsample_rate

    @property
    def output_dim(self) -> int:
        """Width D of every hidden state."""
        return self.encoder.dim

    @property
    def num_hidden_states(self) -> int:
        """Hidden states :meth:`forward_features` returns: the encoder's input plus one per layer."""
        return len(self.encoder.layers) + 1

    @property
    def downsample_rate(self) -> int:
        if self._downsample_rate is not None:
            return self._downsample_rate
        return getattr(self.frontend, "downsample_rate", 1) * self.prenet.downsample_rate

    @property
    def reads(self) -> str | None:
        """The modality the model reads (its front-end's, else its pre-net's)."""
        return getattr(self.frontend if self.frontend is not None else self.prenet, "modality", None)

    @property
    def writes(self) -> str | None:
        """The modality its post-net writes (``"hidden"`` without one)."""
        return "hidden" if self.postnet is None else getattr(self.postnet, "modality", None)

    def frames(self, x: Any, lengths: Tensor | None = None) -> tuple[Any, Tensor | None]:
        """The front-end stage: ``(frames, lengths)`` for the pre-net (the input itself without a front-end)."""
        return (x, lengths) if self.frontend is None else self.frontend(x, lengths)

    def _encode(self, frames: Any, lengths: Tensor | None, all_layers: bool) -> tuple[list[Tensor], Tensor]:
        out = as_prenet_output(self.prenet(frames, lengths))
        hidden, lengths = out.hidden, out.lengths
        enc = self.encoder(hidden, padding_mask_or_none(lengths, hidden.shape[1]), output_hidden_states=all_layers)
        return (enc.hidden_states if all_layers else [enc.last_hidden_state]), lengths

    def forward_features(self, x: Any, lengths: Tensor | None = None) -> Features:
        """Every hidden state (the encoder's input, then each layer's output), their lengths and the
        downsample rate; long inputs are encoded in chunks of ``max_input_frames``."""
        frames, lengths = self.frames(x, lengths)
        if self.max_input_frames <= 0 or not isinstance(frames, Tensor) or frames.shape[1] <= self.max_input_frames:
            hidden, out_lengths = self._encode(frames, lengths, all_layers=True)
        else:
            lengths = full_lengths(frames) if lengths is None else lengths
            hidden = encode_in_chunks(lambda f, n: self._encode(f, n, True)[0], frames, lengths,
                                      self.max_input_frames)
            out_lengths = lengths
        return Features(hidden, out_lengths, self.downsample_rate)

    def forward(self, x: Any, lengths: Tensor | None = None) -> Any:
        """The post-net's outputs for the encoded input (the encoder output without a post-net)."""
        frames, lengths = self.frames(x, lengths)
        hidden, lengths = self._encode(frames, lengths, all_layers=False)
        return hidden[-1] if self.postnet is None else self.postnet(hidden[-1], lengths)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        x, lengths = self.prenet.dummy_inputs(batch_size)
        return {"x": x, "lengths": lengths}


@dataclass
class Seq2SeqOutput:
    """What :meth:`EncoderDecoderModel.forward` returns.

    Attributes:
        outputs: the decoder post-net's outputs (logits, :class:`~mmseq.postnets.speech.SpeechOutput`, a dict).
        encoder_outputs: the encoder post-net's outputs (e.g. CTC log-probabilities), None without one.
        encoder_hidden / encoder_lengths: the encoder output ``[B, S, D]`` and its lengths.
        decoder_hidden: the decoder output ``[B, T, D]``.
        cross_attentions: per decoder layer ``[B, H, T, S]``, when requested.
    """

    outputs: Any
    encoder_outputs: Any
    encoder_hidden: Tensor
    encoder_lengths: Tensor
    decoder_hidden: Tensor
    cross_attentions: list[Tensor] = field(default_factory=list)


class EncoderDecoderModel(nn.Module):
    """encoder pre-net -> encoder [-> encoder post-net]; decoder pre-net -> decoder -> decoder post-net.

    Args:
        encoder_prenet / decoder_prenet: modality adapters of the source and the target.
        encoder / decoder: the shared trunk.
        decoder_postnet: turns decoder states into the target modality (logits, mel frames ...).
        encoder_postnet: optional head on the encoder output (a CTC head), run by :meth:`forward` too so that
            its loss trains.
    """

    def __init__(self, encoder_prenet: nn.Module, encoder: TransformerEncoder, decoder_prenet: nn.Module,
                 decoder: TransformerDecoder, decoder_postnet: nn.Module, encoder_postnet: nn.Module | None = None):
        super().__init__()
        check_prenet(encoder_prenet, "encoder pre-net")
        check_prenet(decoder_prenet, "decoder pre-net")
        _check_width(encoder_prenet, encoder, "encoder pre-net", "encoder")
        _check_width(decoder_prenet, decoder, "decoder pre-net", "decoder")
        if not decoder.cross_attention:
            raise ValueError("an encoder-decoder model needs a decoder with cross-attention")
        self.encoder_prenet, self.encoder, self.encoder_postnet = encoder_prenet, encoder, encoder_postnet
        self.decoder_prenet, self.decoder, self.decoder_postnet = decoder_prenet, decoder, decoder_postnet

    @property
    def output_dim(self) -> int:
        return self.encoder.dim

    @property
    def num_hidden_states(self) -> int:
        return len(self.encoder.layers) + 1

    @property
    def downsample_rate(self) -> int:
        return self.encoder_prenet.downsample_rate

    @property
    def reads(self) -> str | None:
        return getattr(self.encoder_prenet, "modality", None)

    @property
    def writes(self) -> str | None:
        return getattr(self.decoder_postnet, "modality", None)

    def encode(self, x: Any, lengths: Tensor | None = None, output_hidden_states: bool = False):
        """Returns ``(encoder output, output lengths [B])``."""
        out = as_prenet_output(self.encoder_prenet(x, lengths))
        hidden, lengths = out.hidden, out.lengths
        enc = self.encoder(hidden, lengths_to_padding_mask(lengths, hidden.shape[1]),
                           output_hidden_states=output_hidden_states)
        return enc, lengths

    def forward_features(self, x: Any, lengths: Tensor | None = None) -> Features:
        out, lengths = self.encode(x, lengths, output_hidden_states=True)
        return Features(out.hidden_states, lengths, self.encoder_prenet.downsample_rate)

    def decode(self, targets: Any, target_lengths: Tensor | None, memory: Tensor, memory_padding_mask: Tensor | None,
               cache: DecoderCache | None = None, output_attentions: bool = False,
               attention_heads: int | None = None, **prenet_kwargs: Any):
        """Run the decoder pre-net, decoder and post-net on (new) target steps: the module path.

        With ``cache``, ``targets`` holds only the new steps; positions continue from ``cache.length``.
        ``prenet_kwargs`` go to the decoder pre-net (e.g. ``speaker_embeddings``). ``attention_heads``: with
        ``output_attentions``, the cross-attention probabilities of the first heads only (a guided attention loss).
        Returns ``(post-net outputs, decoder output, target lengths)``.
        """
        offset = cache.length if cache is not None else 0
        hidden, target_lengths = self.decoder_prenet(targets, target_lengths, offset=offset, **prenet_kwargs)
        padding = None
        if cache is None:
            padding = lengths_to_padding_mask(target_lengths, hidden.shape[1])
        out = self.decoder(hidden, padding, memory, memory_padding_mask, cache=cache,
                           output_attentions=output_attentions, attention_heads=attention_heads)
        return self.decoder_postnet(out.last_hidden_state, target_lengths), out, target_lengths

    def forward(self, x: Any, lengths: Tensor | None, targets: Any, target_lengths: Tensor | None = None,
                output_attentions: bool = False, attention_heads: int | None = None,
                **prenet_kwargs: Any) -> Seq2SeqOutput:
        """Teacher-forced forward: ``targets`` are the decoder inputs (already shifted right)."""
        enc, lengths = self.encode(x, lengths)
        memory = enc.last_hidden_state
        encoder_outputs = None if self.encoder_postnet is None else self.encoder_postnet(memory, lengths)
        memory_mask = lengths_to_padding_mask(lengths, memory.shape[1])
        outputs, dec, _ = self.decode(targets, target_lengths, memory, memory_mask,
                                      output_attentions=output_attentions, attention_heads=attention_heads,
                                      **prenet_kwargs)
        return Seq2SeqOutput(outputs, encoder_outputs, memory, lengths, dec.last_hidden_state, dec.cross_attentions)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        x, lengths = self.encoder_prenet.dummy_inputs(batch_size)
        targets, target_lengths = self.decoder_prenet.dummy_inputs(batch_size)
        return {"x": x, "lengths": lengths, "targets": targets, "target_lengths": target_lengths,
                **_dummy_conditioning(self.decoder_prenet, batch_size)}


@dataclass
class DecoderOnlyOutput:
    """What :meth:`DecoderOnlyModel.forward` returns.

    Attributes:
        outputs: the post-net's outputs over every position, prefix included (``[B, P + L, V]`` logits).
        hidden: the decoder output ``[B, P + L, D]``.
        prefix_length: P, the positions the prefix takes before the tokens (the same for every row).
        lengths: valid positions per row, ``P + token lengths``.
    """

    outputs: Any
    hidden: Tensor
    prefix_length: int
    lengths: Tensor

    def token_logits(self) -> Tensor:
        """Logits aligned with the tokens: position ``i`` predicts token ``i`` from the prefix and the tokens
        before it (``[B, L, V]``; without a prefix the first token has no prediction and row 0 predicts token 1,
        so the result is ``[B, L - 1, V]`` aligned with ``tokens[:, 1:]``)."""
        p = self.prefix_length
        return self.outputs[:, p - 1 : -1] if p > 0 else self.outputs[:, :-1]


class DecoderOnlyModel(nn.Module):
    """[prefix pre-net] + token pre-net -> causal decoder (no cross-attention) -> LM head.

    The prefix pre-net maps another modality (image features, ...) to ``P`` vectors placed before the tokens;
    token positions continue after them. Every row's prefix has the same ``P`` steps.

    Args:
        token_prenet: token ids -> ``[B, L, D]``, with ``offset`` for positions.
        decoder: a :class:`~mmseq.nn.transformer.TransformerDecoder` built with ``cross_attention=False``.
        postnet: the LM head.
        prefix_prenet: optional, ``(prefix, lengths) -> ([B, P, D], lengths)``.
    """

    def __init__(self, token_prenet: nn.Module, decoder: TransformerDecoder, postnet: nn.Module,
                 prefix_prenet: nn.Module | None = None):
        super().__init__()
        check_prenet(token_prenet, "token pre-net")
        _check_width(token_prenet, decoder, "token pre-net", "decoder")
        if prefix_prenet is not None:
            check_prenet(prefix_prenet, "prefix pre-net")
            _check_width(prefix_prenet, decoder, "prefix pre-net", "decoder")
        if decoder.cross_attention:
            raise ValueError("a decoder-only model needs a decoder built with cross_attention=False")
        self.prefix_prenet, self.token_prenet, self.decoder, self.postnet = (prefix_prenet, token_prenet, decoder,
                                                                             postnet)

    @property
    def reads(self) -> str | None:
        return getattr(self.token_prenet, "modality", None)

    @property
    def writes(self) -> str | None:
        return getattr(self.postnet, "modality", None)

    def embed_prefix(self, prefix: Any) -> Tensor | None:
        """The prefix pre-net's ``[B, P, D]`` (None without a prefix)."""
        if prefix is None:
            return None
        if self.prefix_prenet is None:
            raise InputError("this model has no prefix pre-net: pass prefix=None")
        hidden, lengths = as_prenet_output(self.prefix_prenet(prefix, None))
        if bool((lengths != hidden.shape[1]).any()):
            raise InputError("every row's prefix must have the same number of steps")
        return hidden

    def embed(self, tokens: Tensor, lengths: Tensor | None = None, prefix: Any = None,
              offset: int | Tensor = 0) -> tuple[Tensor, Tensor, int]:
        """``(hidden [B, P + L, D], valid lengths [B], P)`` for the prefix (if any) then the tokens, whose
        positions start after the prefix plus ``offset``."""
        prefix_hidden = self.embed_prefix(prefix)
        p = 0 if prefix_hidden is None else prefix_hidden.shape[1]
        hidden, lengths = self.token_prenet(tokens, lengths, offset=offset + p if p else offset)
        if prefix_hidden is not None:
            hidden = torch.cat([prefix_hidden.to(hidden.dtype), hidden], dim=1)
        return hidden, lengths + p, p

    def forward(self, tokens: Tensor, lengths: Tensor | None = None, prefix: Any = None) -> DecoderOnlyOutput:
        """Causal forward over prefix and (right-padded) tokens."""
        hidden, lengths, p = self.embed(tokens, lengths, prefix)
        out = self.decoder(hidden, padding_mask_or_none(lengths, hidden.shape[1])).last_hidden_state
        return DecoderOnlyOutput(self.postnet(out, lengths), out, p, lengths)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        tokens, lengths = self.token_prenet.dummy_inputs(batch_size)
        inputs: dict[str, Any] = {"tokens": tokens, "lengths": lengths}
        if self.prefix_prenet is not None:
            inputs["prefix"] = self.prefix_prenet.dummy_inputs(batch_size)[0]
        return inputs
