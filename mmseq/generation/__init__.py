"""Autoregressive generation over an :class:`~mmseq.nn.backbone.EncoderDecoderModel` with the KV cache:
token output (greedy, beam search) and frame output (speech, with per-row stopping)."""

from mmseq.generation.speech import SpeechGenerationOutput, generate_speech
from mmseq.generation.text import beam_search, greedy_search

__all__ = ["SpeechGenerationOutput", "beam_search", "generate_speech", "greedy_search"]
