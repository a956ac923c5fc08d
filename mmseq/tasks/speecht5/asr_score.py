"""ASR word and character error rates of speech a model produced, beside those of the recorded speech.

SpeechT5's TTS and VC results are judged by what a speech recogniser hears: a TTS model passes when an ASR
transcribes its synthesised test sentences with a WER at most twice the WER it reaches on the recordings of the
same sentences. :class:`AsrScorer` does that measurement for the speech-output tasks
(:mod:`mmseq.tasks.speecht5.speech`, ``task_args.asr_model``):

* the ASR model is an mmseq checkpoint folder (an ASR run's ``best/``, or a format :func:`mmseq.checkpoint.load`
  reads) that reads waveforms and writes text; it is loaded once, when the task is built, so that a wrong path or
  a model that is not an ASR model fails before any training, with a :class:`~mmseq.errors.ConfigError` that names
  ``task_args.asr_model``;
* decoding is the ASR task's own (:func:`mmseq.tasks.speecht5.text.transcribe`): beam search of ``num_beams``,
  joint with the CTC head at ``ctc_weight`` where the model has one (the ASR task's ``wer``), at most one token per
  encoder frame + 10, batched; waveforms are resampled to the ASR model's rate (``sampling_rate``, else 16 kHz);
* texts are compared after the ASR task's normalisation (:func:`~mmseq.tasks.speecht5.text.normalize_text`: white
  space collapsed, lower-cased) on both sides; the rates are corpus-level (jiwer's edit counts summed over the
  utterances, :mod:`mmseq.metrics`);
* speech shorter than the ASR pre-net's receptive field (a model that stopped at once) counts as an empty
  transcript: every reference word deleted.

Recorded speech does not change during training, so its transcripts are computed once per split and kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.checkpoint import load
from mmseq.data.audio import load_audio, resample
from mmseq.errors import CheckpointError, ConfigError
from mmseq.metrics import character_error_rate, word_error_rate
from mmseq.tasks.speecht5.data import SpeechItem
from mmseq.tasks.speecht5.text import normalize_text, transcribe

SAMPLE_RATE = 16000
KEY = "task_args.asr_model"


def load_asr_model(path: str) -> nn.Module:
    """The ASR model of ``path`` (eval mode, no gradients), after checking that it is one."""
    folder = Path(path)
    if not folder.exists():
        raise ConfigError(f"{KEY}: {path!r} does not exist; give an ASR checkpoint folder, e.g. the best/ of an "
                          "ASR run (`mmseq train recipes/speecht5/asr/configs/quick.yaml` writes "
                          "runs/speecht5/asr_quick/best)")
    try:
        model = load(folder)
    except CheckpointError as e:
        raise ConfigError(f"{KEY}: cannot load {path!r}: {e}") from None
    builder = getattr(model, "mmseq_config", {}).get("builder", type(model).__name__)
    reads, writes = getattr(model, "reads", None), getattr(model, "writes", None)
    if reads != "waveform" or writes != "text":
        raise ConfigError(f"{KEY}: {path!r} ({builder}) is not an ASR model: it reads {reads} and writes {writes}, "
                          "an ASR model reads waveform and writes text")
    if str(builder).startswith("speecht5_st"):
        raise ConfigError(f"{KEY}: {path!r} ({builder}) is a speech translation model, not an ASR model")
    if getattr(model, "tokenizer", None) is None:
        raise ConfigError(f"{KEY}: {path!r} has no tokenizer (spm_char.model) to write its transcripts with")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class AsrScorer:
    """Transcribes waveforms with one ASR model and scores them against reference texts.

    Args:
        path: the ASR checkpoint (``task_args.asr_model``).
        num_beams: beam size (1: greedy).
        ctc_weight: joint CTC/attention weight, where the model has a CTC head and ``num_beams > 1``.
        batch_size: utterances decoded together.
    """

    def __init__(self, path: str, num_beams: int = 5, ctc_weight: float = 0.3, batch_size: int = 8):
        self.path, self.num_beams, self.batch_size = path, num_beams, batch_size
        self.model = load_asr_model(path)
        has_ctc = getattr(self.model, "encoder_postnet", None) is not None
        self.ctc_weight = ctc_weight if has_ctc and num_beams > 1 else 0.0
        self.sampling_rate = int(getattr(self.model, "sampling_rate", SAMPLE_RATE))
        prenet = getattr(self.model, "encoder_prenet", None)
        self.min_samples = int(getattr(prenet, "receptive_field", 0))
        self._recorded: dict[tuple[str, str], list[str]] = {}

    def transcribe(self, waveforms: Sequence[Tensor], sampling_rate: int,
                   device: torch.device | None = None) -> list[str]:
        """Transcripts of mono ``waveforms`` (``[S_i]`` each, at ``sampling_rate``), normalised."""
        model = self.model.to(device) if device is not None else self.model
        waves = [resample(w.detach().float().cpu(), sampling_rate, self.sampling_rate) for w in waveforms]
        heard = [i for i, w in enumerate(waves) if w.numel() >= max(self.min_samples, 1)]
        texts = [""] * len(waves)  # too short to hear: nothing said
        if heard:
            items = [SpeechItem(waves[i], None, i) for i in heard]
            decoded = transcribe(model, items, model.tokenizer, num_beams=self.num_beams,
                                 ctc_weight=self.ctc_weight, batch_size=self.batch_size)
            for i, text in zip(heard, decoded):
                texts[i] = normalize_text(text, lowercase=True)
        return texts

    def transcribe_files(self, paths: Sequence[str], device: torch.device | None = None,
                         cache: str | None = None) -> list[str]:
        """Transcripts of audio files; with ``cache`` (a name for these files, e.g. the split) computed once."""
        key = (cache, "\n".join(paths)) if cache is not None else None
        if key is not None and key in self._recorded:
            return self._recorded[key]
        texts = self.transcribe([load_audio(p, self.sampling_rate) for p in paths], self.sampling_rate, device)
        if key is not None:
            self._recorded[key] = texts
        return texts


def error_rates(hypotheses: Sequence[str], texts: Sequence[str], suffix: str = "") -> dict[str, float]:
    """``asr_wer{suffix}`` and ``asr_cer{suffix}`` of normalised hypotheses against the reference ``texts``."""
    refs = [normalize_text(t, lowercase=True) for t in texts]
    return {f"asr_wer{suffix}": word_error_rate(list(hypotheses), refs).rate,
            f"asr_cer{suffix}": character_error_rate(list(hypotheses), refs).rate}


def with_ratio(scores: dict[str, float]) -> dict[str, float]:
    """``scores`` plus ``asr_wer_ratio`` = generated / recorded WER, where the recorded WER is not 0."""
    recorded = scores.get("asr_wer_recorded")
    if "asr_wer" in scores and recorded:
        scores["asr_wer_ratio"] = scores["asr_wer"] / recorded
    return scores
