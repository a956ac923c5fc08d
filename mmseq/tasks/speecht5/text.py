"""SpeechT5 speech-to-text tasks: ``speecht5_asr`` (recognition) and ``speecht5_st`` (translation).

Both train a ``speecht5_asr_*`` / ``speecht5_st_*`` model (waveform -> text) teacher-forced on a manifest corpus:

* **Loss** (the official fine-tuning criterion): ``ce_weight * CE + ctc_weight * CTC``, both summed over the
  batch's target tokens and divided by their number (``</s>`` included, as transformers' ``loss`` and fairseq's
  ``sample_size`` count them). CE may be label-smoothed (``torch``'s definition: ``(1 - eps) * nll + eps *
  mean_v(-log p_v)``). CTC is ``torch.nn.functional.ctc_loss`` on the encoder post-net's log-probabilities (the
  model's CTC head) with the encoder lengths the pre-net reports, the transcript without ``</s>`` as the target,
  ``<ctc_blank>`` as the blank and ``zero_infinity``. ASR defaults: 0.5 / 0.5, no smoothing; ST: CE only, 0.1.
* **Vocabulary**: ``tokenizer: train`` makes one from the training split -- ASR: a character vocabulary in
  SpeechT5's ``spm_char`` layout (``<s> <pad> </s> <unk>``, the characters, ``<mask>``, ``<ctc_blank>``), always
  holding ``alphabet`` so that its size does not depend on which characters a corpus happens to use; ST: a
  sentencepiece unigram model of ``vocab_size - 2`` pieces on the translations (fairseq's MuST-C recipe), with the
  same special ids and added tokens. Otherwise ``tokenizer`` is a folder holding ``spm_char.model`` (a transformers
  ``microsoft/speecht5_asr`` download). The tokenizer goes with the model into every checkpoint, so
  ``mmseq.pipeline("asr", model=RUN/best)`` decodes with it.
* **Evaluation** by generation on the validation and test splits (:func:`mmseq.generation.generate`): ASR's
  ``wer`` with joint CTC/attention beam search (``num_beams``, ``decode_ctc_weight``; attention-only when the model
  has no CTC head), ``wer_attention`` with attention-only beam search and ``cer``; ST's ``bleu`` and ``chrf`` with
  beam search (:mod:`mmseq.metrics`: jiwer and sacrebleu). At the end ``examples.jsonl`` holds the test
  references and hypotheses and ``alignment.png`` the cross-attention of the best model on the first test
  utterance.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SpeechT5CharTokenizer, pad_id_lists
from mmseq.errors import ConfigError, InputError
from mmseq.generation import generate
from mmseq.metrics import bleu, character_error_rate, chrf, word_error_rate
from mmseq.tasks.base import Callback, Ratio, RunContext, Task, register_task
from mmseq.tasks.speecht5.data import (SpeechItem, SpeechItems, bind_tokenizer, duration_plan, model_device,
                                       pad_waveforms, read_split, unwrap)


@dataclass
class SpeechToTextConfig:
    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    test_manifest: str = "test.jsonl"
    tokenizer: str = "train"  # "train": a new vocabulary from the training split; else a folder with spm_char.model
    vocab_size: int = 0  # ST (trained): the model's vocabulary, pieces + <mask> + <ctc_blank>; 0: the tokenizer's
    lowercase: bool = True  # texts lower-cased (and white space collapsed) before tokenizing and scoring
    ce_weight: float = 0.5
    ctc_weight: float = 0.5  # needs a model with a CTC head (model_args.ctc: true)
    label_smoothing: float = 0.0
    max_batch_seconds: float = 0.0  # > 0: length-bucketed batches of at most this much padded audio
    max_train_seconds: float = 0.0  # > 0: longer training utterances are left out
    num_beams: int = 5
    decode_ctc_weight: float = 0.3  # joint CTC/attention decoding weight (ASR)
    length_penalty: float = 1.0
    max_new_tokens: int = 0  # 0: 1.5 x the longest training target + 10 (at most one per encoder frame + 10)
    decode_batch_size: int = 8
    val_decode_items: int = 0  # utterances of the validation split decoded at each validation (0: all)

    def __post_init__(self) -> None:
        for key in ("ce_weight", "ctc_weight", "label_smoothing", "max_train_seconds", "decode_ctc_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"task_args.{key} must be >= 0, got {getattr(self, key)}")
        if self.ce_weight + self.ctc_weight <= 0:
            raise ConfigError("task_args.ce_weight + ctc_weight must be > 0")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.decode_ctc_weight < 1:
            raise ConfigError("task_args.label_smoothing and decode_ctc_weight must be in [0, 1)")
        if self.num_beams < 1 or self.decode_batch_size < 1:
            raise ConfigError("task_args.num_beams and decode_batch_size must be >= 1")


@dataclass
class AsrConfig(SpeechToTextConfig):
    alphabet: str = "abcdefghijklmnopqrstuvwxyz'"  # characters a trained vocabulary always holds


@dataclass
class StConfig(SpeechToTextConfig):
    vocab_size: int = 8000
    lowercase: bool = False
    ce_weight: float = 1.0
    ctc_weight: float = 0.0
    label_smoothing: float = 0.1
    decode_ctc_weight: float = 0.0


# --- vocabulary -------------------------------------------------------------------------------------------------

def normalize_text(text: str, lowercase: bool) -> str:
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def train_unigram(texts: Sequence[str], vocab_size: int) -> SpeechT5CharTokenizer:
    """A sentencepiece unigram model of ``vocab_size - 2`` pieces with SpeechT5's special ids, in the
    :class:`~mmseq.data.tokenizers.SpeechT5CharTokenizer` layout (``<mask>``, ``<ctc_blank>`` appended), so that it
    is saved and loaded with checkpoints as ``spm_char.model`` like the character vocabulary."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("cannot train a vocabulary: the training split has no non-empty text")
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buffer, model_type="unigram", vocab_size=vocab_size - 2,
            bos_id=BOS_ID, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, hard_vocab_limit=False,
            character_coverage=1.0, minloglevel=2)
    except RuntimeError as e:
        raise InputError(f"sentencepiece training failed (unigram, {vocab_size - 2} pieces): {e}") from None
    tokenizer = SpeechT5CharTokenizer(buffer.getvalue())
    if len(tokenizer) != vocab_size:
        raise ConfigError(f"the training translations give only {len(tokenizer) - 2} sentencepiece pieces; set "
                          f"task_args.vocab_size and model_args.vocab_size to {len(tokenizer)}")
    return tokenizer


def build_tokenizer(cfg: SpeechToTextConfig, texts: Sequence[str], kind: str) -> SpeechT5CharTokenizer:
    """The task's tokenizer: trained on ``texts`` (characters for ASR, unigram pieces for ST) or from a folder."""
    if cfg.tokenizer != "train":
        folder = Path(cfg.tokenizer)
        if not (folder / SpeechT5CharTokenizer.model_file_name).is_file():
            raise ConfigError(f"task_args.tokenizer {cfg.tokenizer!r} is neither 'train' nor a folder holding "
                              f"{SpeechT5CharTokenizer.model_file_name}")
        return SpeechT5CharTokenizer.from_dir(folder)
    if kind == "asr":
        alphabet = " ".join(getattr(cfg, "alphabet", ""))
        return SpeechT5CharTokenizer.train([*texts, alphabet] if alphabet.strip() else list(texts))
    if cfg.vocab_size < 8:
        raise ConfigError(f"task_args.vocab_size must be at least 8 to train a vocabulary, got {cfg.vocab_size}")
    return train_unigram(texts, cfg.vocab_size)


# --- batches and loss -------------------------------------------------------------------------------------------

def collate_text(items: list[SpeechItem], pad_id: int, start_id: int) -> dict[str, Tensor]:
    """Waveforms, the decoder input (``start_id`` then the ids shifted right) and the target ids (ending in
    ``</s>``), both padded with ``pad_id``."""
    wav, lengths = pad_waveforms([item.audio for item in items])
    target, target_lengths = pad_id_lists([item.target for item in items], pad_id)
    dec_in = torch.full_like(target, pad_id)
    dec_in[:, 0] = start_id
    for row, n in enumerate(target_lengths.tolist()):
        dec_in[row, 1:n] = target[row, : n - 1]
    return {"audio": wav, "audio_lengths": lengths, "dec_in": dec_in, "target": target,
            "target_lengths": target_lengths, "index": torch.tensor([item.index for item in items])}


def ctc_targets(target: Tensor, pad_id: int, eos_id: int) -> tuple[Tensor, Tensor]:
    """The CTC targets of padded ``target [B, L]``: each row's tokens without padding and ``</s>``, left-aligned
    (``[B, L]``, padded with ``pad_id``) and their lengths ``[B]``."""
    keep = target.ne(pad_id) & target.ne(eos_id)
    lengths = keep.sum(1)
    out = torch.full_like(target, pad_id)
    for row in range(target.shape[0]):
        out[row, : int(lengths[row])] = target[row][keep[row]]
    return out, lengths


def speech_to_text_loss(model: nn.Module, batch: dict[str, Tensor], *, ce_weight: float = 0.5,
                        ctc_weight: float = 0.5, label_smoothing: float = 0.0, pad_id: int = PAD_ID,
                        eos_id: int = EOS_ID, blank_id: int | None = None,
                        outputs: Any = None) -> tuple[Tensor, dict[str, Any]]:
    """``(ce_weight * CE_sum + ctc_weight * CTC_sum) / target tokens`` of a collated batch (see the module notes).

    Returns the loss and the metrics ``ce`` / ``ctc`` (per target token) and ``token_accuracy`` (teacher-forced,
    exact over the split). ``blank_id`` defaults to the last vocabulary id (SpeechT5's ``<ctc_blank>``).
    ``outputs``: the model's output on this batch when the caller has run it already (a loss that adds terms on
    the same forward pass).
    """
    out = outputs if outputs is not None else model(batch["audio"], batch["audio_lengths"], batch["dec_in"],
                                                    batch["target_lengths"])
    logits, target = out.outputs.float(), batch["target"]
    valid = target.ne(pad_id)
    tokens = valid.sum().clamp(min=1)
    ce_sum = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=pad_id, reduction="sum",
                             label_smoothing=label_smoothing)
    loss = ce_weight * ce_sum
    metrics: dict[str, Any] = {"ce": (ce_sum / tokens).item()}
    if ctc_weight > 0:
        if out.encoder_outputs is None:
            raise ConfigError("task_args.ctc_weight > 0 needs a model with a CTC head: set model_args.ctc=true "
                              "(or task_args.ctc_weight=0)")
        log_probs = out.encoder_outputs.float()
        blank = log_probs.shape[-1] - 1 if blank_id is None else blank_id
        labels, label_lengths = ctc_targets(target, pad_id, eos_id)
        ctc_sum = F.ctc_loss(log_probs.transpose(0, 1), labels, out.encoder_lengths, label_lengths, blank=blank,
                             reduction="sum", zero_infinity=True)
        loss = loss + ctc_weight * ctc_sum
        metrics["ctc"] = (ctc_sum / tokens).item()
    correct = (logits.argmax(-1).eq(target) & valid).sum()
    metrics["token_accuracy"] = Ratio(float(correct), float(valid.sum()))
    return loss / tokens, metrics


# --- evaluation -------------------------------------------------------------------------------------------------

@torch.no_grad()
def transcribe(model: nn.Module, items: Sequence[SpeechItem], tokenizer: SpeechT5CharTokenizer, *, num_beams: int,
               ctc_weight: float, length_penalty: float = 1.0, max_new_tokens: int = 0,
               batch_size: int = 8) -> list[str]:
    """Decoded texts of ``items`` by beam search (``num_beams`` 1: greedy), joint with CTC when ``ctc_weight`` > 0."""
    inner = unwrap(model)
    device = model_device(inner)
    texts: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        wav, lengths = pad_waveforms([item.audio for item in chunk])
        frames = int(lengths.max()) // inner.downsample_rate + 10
        limit = min(max_new_tokens, frames) if max_new_tokens else frames
        ids = generate(inner, wav.to(device), lengths.to(device), num_beams=num_beams,
                       ctc_weight=ctc_weight if num_beams > 1 else 0.0, blank_id=tokenizer.ctc_blank_id,
                       length_penalty=length_penalty, max_new_tokens=limit, start_id=tokenizer.eos_id,
                       eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
        texts += [tokenizer.decode(row) for row in ids.cpu()]
    return texts


def alignment_plot(model: nn.Module, item: SpeechItem, path: Path, title: str) -> None:
    """The last decoder layer's cross-attention (mean over heads) of a teacher-forced utterance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = collate_text([item], PAD_ID, EOS_ID)
    device = model_device(model)
    with torch.no_grad():
        out = unwrap(model).eval()(batch["audio"].to(device), batch["audio_lengths"].to(device),
                                   batch["dec_in"].to(device), batch["target_lengths"].to(device),
                                   output_attentions=True)
    if not out.cross_attentions:
        return
    weights = out.cross_attentions[-1][0].float().mean(0).cpu()[:, : int(out.encoder_lengths[0])]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.imshow(weights.numpy(), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xlabel(f"encoder frame ({unwrap(model).downsample_rate / 16:.0f} ms)")
    ax.set_ylabel("output token")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class TextOutputs(Callback):
    """At the end: ``examples.jsonl`` (test references and hypotheses) and ``alignment.png``."""

    def __init__(self, decoded: dict[str, list[dict[str, str]]], example: SpeechItem | None):
        self.decoded, self.example = decoded, example

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        rows = self.decoded.get("test", [])
        (run.out_dir / "examples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        model = run.best_model if run.best_model is not None else run.model
        if self.example is not None:
            alignment_plot(model, self.example, run.out_dir / "alignment.png", "cross-attention, last decoder layer")


def speech_to_text_task(cfg: SpeechToTextConfig, kind: str) -> Task:
    """The ASR (``kind="asr"``: field ``text``) or ST (``"translation"``) task."""
    field = "text" if kind == "asr" else "translation"
    splits = {"train": read_split(cfg.corpus, cfg.train_manifest, cfg.max_train_seconds, need=field),
              "val": read_split(cfg.corpus, cfg.val_manifest, need=field),
              "test": read_split(cfg.corpus, cfg.test_manifest, need=field) if cfg.test_manifest else []}
    texts = {s: [normalize_text(getattr(u, field), cfg.lowercase) for u in utts] for s, utts in splits.items()}
    tokenizer = build_tokenizer(cfg, texts["train"], kind)
    if cfg.vocab_size and len(tokenizer) != cfg.vocab_size:
        raise ConfigError(f"task_args.vocab_size is {cfg.vocab_size} but the tokenizer has {len(tokenizer)} tokens")
    if cfg.ctc_weight > 0 and tokenizer.ctc_blank_id < 0:
        raise ConfigError("the tokenizer has no <ctc_blank> token, so task_args.ctc_weight must be 0")
    data = {s: SpeechItems(splits[s], [tokenizer.encode(t) for t in texts[s]]) for s in splits}
    longest = int(1.5 * max(len(ids) for ids in data["train"].targets)) + 10  # generation's default bound
    decoded: dict[str, list[dict[str, str]]] = {}

    def collate(items: list[SpeechItem]) -> dict[str, Tensor]:
        return collate_text(items, tokenizer.pad_id, tokenizer.eos_id)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        return speech_to_text_loss(model, batch, ce_weight=cfg.ce_weight, ctc_weight=cfg.ctc_weight,
                                   label_smoothing=cfg.label_smoothing, pad_id=tokenizer.pad_id,
                                   eos_id=tokenizer.eos_id, blank_id=tokenizer.ctc_blank_id)

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        dataset = data[split]
        count = len(dataset) if split != "val" or cfg.val_decode_items <= 0 else min(cfg.val_decode_items,
                                                                                      len(dataset))
        items = [dataset[i] for i in range(count)]
        refs = texts[split][:count]
        options = dict(num_beams=cfg.num_beams, length_penalty=cfg.length_penalty,
                       max_new_tokens=cfg.max_new_tokens or longest, batch_size=cfg.decode_batch_size)
        attention = transcribe(model, items, tokenizer, ctc_weight=0.0, **options)
        if kind == "st":
            decoded[split] = [{"id": u.id, "reference": r, "hypothesis": h}
                              for u, r, h in zip(splits[split], refs, attention)]
            return {"bleu": bleu(attention, refs).score, "chrf": chrf(attention, refs).score}
        joint = attention
        has_ctc = getattr(unwrap(model), "encoder_postnet", None) is not None
        if has_ctc and cfg.decode_ctc_weight > 0 and cfg.num_beams > 1:
            joint = transcribe(model, items, tokenizer, ctc_weight=cfg.decode_ctc_weight, **options)
        decoded[split] = [{"id": u.id, "reference": r, "hypothesis": h, "hypothesis_attention": a}
                          for u, r, h, a in zip(splits[split], refs, joint, attention)]
        return {"wer": word_error_rate(joint, refs).rate, "wer_attention": word_error_rate(attention, refs).rate,
                "cer": character_error_rate(joint, refs).rate}

    example = data["test"][0] if len(data["test"]) else (data["val"][0] if len(data["val"]) else None)
    return Task(data["train"], data["val"], collate, loss, test_set=data["test"] if len(data["test"]) else None,
                train_plan=duration_plan(data["train"].durations, cfg.max_batch_seconds),
                batch_size_of=lambda b: len(b["audio_lengths"]), evaluate=evaluate,
                callbacks=[TextOutputs(decoded, example)],
                prepare_model=lambda model: bind_tokenizer(model, tokenizer),
                info={"vocab_size": len(tokenizer), "tokenizer": cfg.tokenizer, "field": field,
                      "train_utterances": len(data["train"])})


@register_task(config=AsrConfig)
def speecht5_asr(cfg: AsrConfig) -> Task:
    return speech_to_text_task(cfg, "asr")


@register_task(config=StConfig)
def speecht5_st(cfg: StConfig) -> Task:
    return speech_to_text_task(cfg, "st")
