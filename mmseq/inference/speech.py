"""Per-task inference behind :func:`mmseq.pipeline`: SpeechT5 ASR / ST, TTS, VC / SE and speaker ID."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import InputError
from mmseq.generation import generate, generate_speech
from mmseq.generation.speech import enhance_speech
from mmseq.inference.precision import set_precision
from mmseq.inference.inputs import is_batch, load_speaker_embeddings, load_waveform, pad_waveforms
from mmseq.vocoders import GriffinLimVocoder

SAMPLE_RATE = 16000


class _Pipeline:
    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        self.model = set_precision(model, dtype, device).eval()
        self.device, self.dtype = device, dtype
        # Inputs enter the encoder, which keeps its own dtype (fp32 on the CPU, see set_precision).
        self.input_dtype = next(self.model.parameters()).dtype

    @property
    def tokenizer(self):
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            raise InputError("the model has no tokenizer: load it from a checkpoint directory holding spm_char.model")
        return tokenizer

    def _waveforms(self, inputs: Sequence[Any], sampling_rate: int | None) -> tuple[Tensor, Tensor]:
        waves = [load_waveform(x, sampling_rate, SAMPLE_RATE, f"input {i}") for i, x in enumerate(inputs)]
        # Checked here too (the pre-net checks its batch) so the error names the input.
        prenet = getattr(self.model, "encoder_prenet", None) or self.model.prenet
        wav, lengths = pad_waveforms(waves, prenet.receptive_field)
        return wav.to(self.device, self.input_dtype), lengths.to(self.device)

    def _chunks(self, items: list, batch_size: int):
        for start in range(0, len(items), batch_size):
            yield items[start : start + batch_size]


class SpeechToTextPipeline(_Pipeline):
    """Audio in, text out (ASR, speech translation). Greedy by default; ``num_beams`` for beam search."""

    def __call__(self, inputs: Any, sampling_rate: int | None = None, batch_size: int = 8, num_beams: int = 1,
                 max_new_tokens: int = 200) -> str | list[str]:
        items = list(inputs) if is_batch(inputs) else [inputs]
        texts: list[str] = []
        with torch.inference_mode():
            for chunk in self._chunks(items, batch_size):
                wav, lengths = self._waveforms(chunk, sampling_rate)
                tokens = generate(self.model, wav, lengths, num_beams=num_beams, max_new_tokens=max_new_tokens)
                texts += [self.tokenizer.decode(row) for row in tokens.cpu()]
        return texts if is_batch(inputs) else texts[0]


def split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters for separate synthesis.

    Long sentences are cut at commas, then between words (a single over-long word is cut anywhere); the units
    are then packed greedily, so short sentences share a piece and punctuation is kept.
    """
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text]
    units: list[str] = []
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        for clause in re.split(r"(?<=,)\s+", sentence) if len(sentence) > max_chars else [sentence]:
            for word in clause.split(" ") if len(clause) > max_chars else [clause]:
                units += [word[i : i + max_chars] for i in range(0, len(word), max_chars)]
    pieces: list[str] = []
    for unit in units:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= max_chars:
            pieces[-1] += " " + unit
        else:
            pieces.append(unit)
    return pieces


class _SpeechOutputPipeline(_Pipeline):
    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype, vocoder: nn.Module | None):
        super().__init__(model, device, dtype)
        if vocoder is None:
            vocoder = GriffinLimVocoder(n_mels=model.decoder_postnet.num_mel_bins)
        # Convolutional vocoders are compute-bound: reduced precision only on CUDA (see set_precision).
        self.vocoder_dtype = dtype if device.type == "cuda" and not isinstance(vocoder, GriffinLimVocoder) \
            else torch.float32
        self.vocoder = vocoder.to(device=device, dtype=self.vocoder_dtype).eval()

    def _speaker_rows(self, speaker_embeddings: Any, count: int) -> Tensor | None:
        """One x-vector row per input (``[count, dim]``), from a shared or per-input array / ``.npy`` path."""
        dim = self.model.decoder_prenet.speaker_embedding_dim
        return load_speaker_embeddings(speaker_embeddings, dim, count, self.dtype, self.device)

    generate = staticmethod(generate_speech)

    def _speak(self, x: Tensor, lengths: Tensor, spk: Tensor | None, **kwargs: Any) -> list[np.ndarray]:
        out = self.generate(self.model, x, lengths, speaker_embeddings=spk, **kwargs)
        wav = self.vocoder(out.mel.to(self.vocoder_dtype))
        step = self.vocoder.samples_per_frame
        return [wav[i, : int(n) * step].float().cpu().numpy() for i, n in enumerate(out.lengths)]


class TextToSpeechPipeline(_SpeechOutputPipeline):
    """Text in, ``(waveform, sampling_rate)`` out. Text longer than the model's text positions is split at
    sentence boundaries, the pieces synthesised as one batch and their audio joined."""

    def __call__(self, inputs: str | list[str], speaker_embeddings: Any = None, batch_size: int = 8,
                 **generate_kwargs: Any) -> tuple[np.ndarray, int] | list[tuple[np.ndarray, int]]:
        texts = list(inputs) if is_batch(inputs) else [inputs]
        max_chars = self.model.encoder_prenet.max_positions - 1  # room for </s>
        pieces, owner = [], []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"input {i}: TTS needs non-empty text, got {text!r}")
            for piece in split_text(text, max_chars):
                pieces.append(piece)
                owner.append(i)
        spk = self._speaker_rows(speaker_embeddings, len(texts))
        audio: list[list[np.ndarray]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(pieces), batch_size):
                chunk = pieces[start : start + batch_size]
                ids, lengths = self.tokenizer.batch_encode(chunk, strict=True)
                rows = torch.tensor(owner[start : start + len(chunk)], device=self.device)
                chunk_spk = None if spk is None else spk.index_select(0, rows)
                for j, wav in enumerate(self._speak(ids.to(self.device), lengths.to(self.device), chunk_spk,
                                                    **generate_kwargs)):
                    audio[owner[start + j]].append(wav)
        results = [(np.concatenate(parts), SAMPLE_RATE) for parts in audio]
        return results if is_batch(inputs) else results[0]


class SpeechToSpeechPipeline(_SpeechOutputPipeline):
    """Audio in, ``(waveform, sampling_rate)`` out (voice conversion, speech enhancement). An enhancement model
    whose decoder reads the noisy frames runs once on them and applies its ``se_predict`` rule
    (:func:`~mmseq.generation.speech.enhance_speech`); other models generate frames autoregressively."""

    generate = staticmethod(enhance_speech)

    def __call__(self, inputs: Any, sampling_rate: int | None = None, speaker_embeddings: Any = None,
                 batch_size: int = 8, **generate_kwargs: Any):
        items = list(inputs) if is_batch(inputs) else [inputs]
        spk = self._speaker_rows(speaker_embeddings, len(items))
        results = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                wav, lengths = self._waveforms(items[start : start + batch_size], sampling_rate)
                chunk_spk = None if spk is None else spk[start : start + batch_size]
                results += [(w, SAMPLE_RATE) for w in self._speak(wav, lengths, chunk_spk, **generate_kwargs)]
        return results if is_batch(inputs) else results[0]


class SpeakerIdPipeline(_Pipeline):
    """Audio in, ``{"label", "score"}`` out; labels from ``model.labels`` when the checkpoint has them."""

    def __call__(self, inputs: Any, sampling_rate: int | None = None, batch_size: int = 8):
        items = list(inputs) if is_batch(inputs) else [inputs]
        labels = getattr(self.model, "labels", None)
        results = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                wav, lengths = self._waveforms(items[start : start + batch_size], sampling_rate)
                probs = self.model(wav, lengths).float().softmax(-1)
                score, index = probs.max(-1)
                results += [{"label": labels[i] if labels else str(i), "score": s}
                            for i, s in zip(index.tolist(), score.tolist())]
        return results if is_batch(inputs) else results[0]
