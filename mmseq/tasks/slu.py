"""Sequence-to-sequence spoken language understanding: speech in, ``"<label> | <transcript>"`` out.

The decoder generates an utterance's label (its intent, or SLURP's scenario: any manifest field) followed by its
transcript, as the seq2seq SLU models of COCONUT and the authors' SLURP code do; the label accuracy is read off
the generated text before the separator, and the WER from the rest. The model is any SpeechT5-style
encoder-decoder with a text decoder (``speecht5_asr_*`` variants, log-mel or waveform front-end).

For continual learning, the task can keep only some labels (``keep_labels``: a class-incremental task's classes),
add rehearsal utterances by id (``rehearsal_ids``) and test on other labels (``test_labels``: every class seen so
far). The character vocabulary is trained on the *whole* training split whatever is kept, so every task of a
stream has the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mmseq.data.manifest import Utterance
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError
from mmseq.metrics import word_error_rate
from mmseq.tasks.base import Task, register_task
from mmseq.tasks.speecht5.data import SpeechItems, bind_tokenizer, duration_plan, read_split
from mmseq.tasks.speecht5.text import collate_text, normalize_text, speech_to_text_loss, transcribe

SEPARATOR = " | "
TARGETS = ("label_transcript", "label")


@dataclass
class SluConfig:
    corpus: str = "data/synth_speech/slu"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    test_manifest: str = "test.jsonl"
    label_field: str = "intent"  # an utterance attribute or a key of its ``extra`` (SLURP: "scenario")
    target: str = "label_transcript"  # or "label": the decoder generates the label alone
    lowercase: bool = True
    keep_labels: list[str] | None = None  # train / validate on these labels only (None: all)
    test_labels: list[str] | None = None  # test on these (None: keep_labels, or all)
    rehearsal_ids: list[str] = field(default_factory=list)  # training-split utterance ids added to training
    ce_weight: float = 1.0
    ctc_weight: float = 0.0  # on the encoder, over the whole target text (needs model_args.ctc)
    label_smoothing: float = 0.0
    max_batch_seconds: float = 0.0
    num_beams: int = 1
    max_new_tokens: int = 0  # 0: 1.5 x the longest training target + 10
    decode_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"task_args.target {self.target!r}: expected one of {', '.join(TARGETS)}")
        if self.num_beams < 1 or self.decode_batch_size < 1:
            raise ConfigError("task_args.num_beams and decode_batch_size must be >= 1")


def utterance_label(u: Utterance, field_name: str) -> str:
    """The ``field_name`` value of ``u`` (an attribute, else a key of ``extra``), as a string."""
    value = getattr(u, field_name, None)
    if value is None:
        value = (u.extra or {}).get(field_name)
    if value is None:
        raise ConfigError(f"utterance {u.id}: no label field {field_name!r} (neither an attribute nor in extra)")
    return str(value)


def target_text(u: Utterance, cfg: SluConfig) -> str:
    label = utterance_label(u, cfg.label_field)
    if cfg.target == "label" or not u.text:
        return label
    return label + SEPARATOR + normalize_text(u.text, cfg.lowercase)


def split_output(text: str) -> tuple[str, str]:
    """Generated text -> ``(label, transcript)``."""
    label, _, rest = text.partition(SEPARATOR.strip())
    return label.strip(), " ".join(rest.split())


@dataclass
class SluData:
    """What a continual-learning runner needs besides the :class:`Task`: the splits' utterances and labels, and
    the tokenizer for decoding."""

    utterances: dict[str, list[Utterance]]
    labels: dict[str, list[str]]
    items: dict[str, SpeechItems]
    tokenizer: SpeechT5CharTokenizer
    cfg: SluConfig
    max_new_tokens: int

    def predict(self, model: nn.Module, split: str, positions: Sequence[int] | None = None) -> list[str]:
        """The label the model generates for each item of ``split`` (all, or those at ``positions``)."""
        dataset = self.items[split]
        positions = range(len(dataset)) if positions is None else positions
        items = [dataset[i] for i in positions]
        texts = transcribe(model, items, self.tokenizer, num_beams=self.cfg.num_beams, ctc_weight=0.0,
                           max_new_tokens=self.max_new_tokens, batch_size=self.cfg.decode_batch_size)
        return [split_output(t)[0] for t in texts]


def build_slu(cfg: SluConfig) -> tuple[Task, SluData]:
    """The task and its data (see the module notes)."""
    full = {"train": read_split(cfg.corpus, cfg.train_manifest), "val": read_split(cfg.corpus, cfg.val_manifest),
            "test": read_split(cfg.corpus, cfg.test_manifest) if cfg.test_manifest else []}
    train_labels = {utterance_label(u, cfg.label_field) for u in full["train"]}
    for name, wanted in (("keep_labels", cfg.keep_labels), ("test_labels", cfg.test_labels)):
        unknown = sorted(set(wanted or ()) - train_labels)
        if unknown:
            raise ConfigError(f"task_args.{name}: {unknown[:5]} are not labels of the training split")
    tokenizer = SpeechT5CharTokenizer.train([target_text(u, cfg) for u in full["train"]])

    keep = set(cfg.keep_labels) if cfg.keep_labels is not None else None
    test_keep = set(cfg.test_labels) if cfg.test_labels is not None else keep
    by_id = {u.id: u for u in full["train"]}
    missing = [i for i in cfg.rehearsal_ids if i not in by_id]
    if missing:
        raise ConfigError(f"task_args.rehearsal_ids: {missing[:5]} are not utterances of the training split")
    train = [u for u in full["train"] if keep is None or utterance_label(u, cfg.label_field) in keep]
    chosen = {u.id for u in train}
    train += [by_id[i] for i in cfg.rehearsal_ids if i not in chosen]
    splits = {"train": train,
              "val": [u for u in full["val"] if keep is None or utterance_label(u, cfg.label_field) in keep],
              "test": [u for u in full["test"] if test_keep is None or utterance_label(u, cfg.label_field) in test_keep]}
    if not splits["train"]:
        raise ConfigError("the SLU task has no training utterance (keep_labels selects none)")
    labels = {s: [utterance_label(u, cfg.label_field) for u in us] for s, us in splits.items()}
    targets = {s: [tokenizer.encode(target_text(u, cfg)) for u in us] for s, us in splits.items()}
    items = {s: SpeechItems(splits[s], targets[s]) for s in splits}
    longest = int(1.5 * max(len(t) for t in targets["train"])) + 10
    data = SluData(splits, labels, items, tokenizer, cfg, cfg.max_new_tokens or longest)

    def collate(batch: list) -> dict[str, Tensor]:
        return collate_text(batch, tokenizer.pad_id, tokenizer.eos_id)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        return speech_to_text_loss(model, batch, ce_weight=cfg.ce_weight, ctc_weight=cfg.ctc_weight,
                                   label_smoothing=cfg.label_smoothing, pad_id=tokenizer.pad_id,
                                   eos_id=tokenizer.eos_id, blank_id=tokenizer.ctc_blank_id)

    @torch.no_grad()
    def evaluate(model: nn.Module, split: str) -> dict[str, Any]:
        if not len(items[split]):
            return {}
        dataset = items[split]
        texts = transcribe(model, [dataset[i] for i in range(len(dataset))], tokenizer, num_beams=cfg.num_beams,
                           ctc_weight=0.0, max_new_tokens=data.max_new_tokens, batch_size=cfg.decode_batch_size)
        outputs = [split_output(t) for t in texts]
        right = sum(p == y for (p, _), y in zip(outputs, labels[split]))
        metrics: dict[str, Any] = {"label_accuracy": right / len(outputs)}
        if cfg.target == "label_transcript":
            refs = [normalize_text(u.text or "", cfg.lowercase) for u in splits[split]]
            pairs = [(h, r) for (_, h), r in zip(outputs, refs) if r]
            if pairs:
                metrics["wer"] = word_error_rate([h for h, _ in pairs], [r for _, r in pairs]).rate
        return metrics

    task = Task(items["train"], items["val"], collate, loss, test_set=items["test"] if len(items["test"]) else None,
                train_plan=duration_plan(items["train"].durations, cfg.max_batch_seconds),
                batch_size_of=lambda b: len(b["audio_lengths"]), evaluate=evaluate,
                prepare_model=lambda model: bind_tokenizer(model, tokenizer),
                info={"vocab_size": len(tokenizer), "label_field": cfg.label_field,
                      "train_utterances": len(items["train"]), "rehearsal_utterances": len(cfg.rehearsal_ids),
                      "labels": sorted(set(labels["train"]))})
    return task, data


@register_task(config=SluConfig)
def slu_seq2seq(cfg: SluConfig) -> Task:
    return build_slu(cfg)[0]
