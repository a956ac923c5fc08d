"""Autoregressive generation with the KV cache over the model kinds of :mod:`mmseq.models.compose`: token output
(greedy, beam search with optional CTC scoring, sampling) and speech-frame output (per-row stopping).

:func:`generate` and :func:`generate_speech` are also ``mmseq.generate`` / ``mmseq.generate_speech``.
"""

from mmseq.generation.speech import SpeechGenerationOutput, generate_speech
from mmseq.generation.text import beam_search, filter_logits, generate, greedy_search, sample

__all__ = ["SpeechGenerationOutput", "beam_search", "filter_logits", "generate", "generate_speech", "greedy_search",
           "sample"]
