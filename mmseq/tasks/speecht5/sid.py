"""``speecht5_sid``: speaker identification with a ``speecht5_sid_*`` model, as SpeechT5's SID fine-tuning.

* **Model**: the speech encoder, then either the official pooling -- the decoder run on one zero query,
  mean-pooled, a bias-free linear layer (``model_args.sid_pooling: decoder``) -- or mean pooling of the encoder
  output and a linear layer (``encoder``, the builder's default).
* **Loss**: plain cross-entropy over the speakers (mean over the batch); ``accuracy`` is exact (top-1 correct over
  utterances of the split).
* **Crops**: training utterances are cut to a random window of ``train_crop_seconds`` (SpeechT5: 51200 samples,
  3.2 s), drawn from the global RNG the loop checkpoints; validation and test utterances to their first
  ``eval_crop_seconds`` (76800 samples, 4.8 s). 0 keeps whole utterances.
* **Splits**: ``split: given`` takes the three manifests as they are (VoxCeleb1's ``iden_split``: the same 1251
  speakers in each). ``split: by_speaker`` pools the utterances of ``manifests`` and holds out, for every speaker,
  a fixed share of its utterances for validation and test -- what a corpus split by speaker (the synthetic one:
  14 / 2 / 4 voices) needs, since identification is over speakers seen in training. The held-out utterances are
  chosen by a seeded shuffle of each speaker's utterance ids (sorted first), so the split depends only on the
  manifests and ``seed``.

The classes are the speakers of the training split, sorted; ``info.labels`` in ``metrics.json`` lists them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.manifest import Utterance
from mmseq.errors import ConfigError
from mmseq.tasks.base import Ratio, Task, register_task
from mmseq.tasks.speecht5.data import SAMPLE_RATE, SpeechItem, SpeechItems, duration_plan, pad_waveforms, random_crop, \
    read_split, unwrap


@dataclass
class SpeakerIdConfig:
    corpus: str = "data/synth_speech"
    split: str = "by_speaker"  # by_speaker | given
    manifests: list[str] = field(default_factory=lambda: ["train.jsonl", "dev.jsonl", "test.jsonl"])  # by_speaker
    train_manifest: str = "train.jsonl"  # given
    val_manifest: str = "dev.jsonl"  # given
    test_manifest: str = "test.jsonl"  # given
    val_fraction: float = 0.1  # by_speaker: share of each speaker's utterances held out for validation
    test_fraction: float = 0.1  # ... and for test
    seed: int = 0  # the split's own seed
    train_crop_seconds: float = 3.2
    eval_crop_seconds: float = 4.8
    max_batch_seconds: float = 0.0  # > 0: length-bucketed batches of at most this much padded audio

    def __post_init__(self) -> None:
        if self.split not in ("by_speaker", "given"):
            raise ConfigError(f"task_args.split must be 'by_speaker' or 'given', got {self.split!r}")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("task_args.val_fraction and test_fraction must be >= 0 with a sum below 1")
        if self.train_crop_seconds < 0 or self.eval_crop_seconds < 0:
            raise ConfigError("task_args.train_crop_seconds and eval_crop_seconds must be >= 0")


def split_by_speaker(utterances: list[Utterance], val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, list[Utterance]]:
    """Every speaker's utterances (ids sorted, then shuffled with ``seed`` and the speaker's name) cut into
    train / val / test: ``round(n * fraction)`` for val and test each, at least one of each when the speaker has
    three or more utterances and the fraction is > 0, the rest for training."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        by_speaker[utt.speaker].append(utt)
    parts: dict[str, list[Utterance]] = {"train": [], "val": [], "test": []}
    for speaker in sorted(by_speaker):
        mine = sorted(by_speaker[speaker], key=lambda u: u.id)
        random.Random(f"{seed}:{speaker}").shuffle(mine)
        n = len(mine)
        n_val = max(round(n * val_fraction), 1 if val_fraction > 0 and n >= 3 else 0)
        n_test = max(round(n * test_fraction), 1 if test_fraction > 0 and n >= 3 else 0)
        parts["val"] += mine[:n_val]
        parts["test"] += mine[n_val : n_val + n_test]
        parts["train"] += mine[n_val + n_test :]
    return parts


def speaker_splits(cfg: SpeakerIdConfig) -> dict[str, list[Utterance]]:
    if cfg.split == "given":
        return {"train": read_split(cfg.corpus, cfg.train_manifest, need="speaker"),
                "val": read_split(cfg.corpus, cfg.val_manifest, need="speaker"),
                "test": read_split(cfg.corpus, cfg.test_manifest, need="speaker") if cfg.test_manifest else []}
    pooled: list[Utterance] = []
    seen: set[str] = set()
    for name in cfg.manifests:
        for utt in read_split(cfg.corpus, name, need="speaker"):
            if utt.id in seen:
                raise ConfigError(f"utterance id {utt.id!r} is in more than one of task_args.manifests")
            seen.add(utt.id)
            pooled.append(utt)
    return split_by_speaker(pooled, cfg.val_fraction, cfg.test_fraction, cfg.seed)


def collate_speakers(items: list[SpeechItem], crop_samples: int) -> dict[str, Tensor]:
    """Waveforms (each cut to a random window of ``crop_samples``, 0: whole) and speaker ids."""
    wav, lengths = pad_waveforms([random_crop(item.audio, crop_samples) for item in items])
    return {"audio": wav, "audio_lengths": lengths, "labels": torch.tensor([item.target for item in items])}


def collate_eval_speakers(items: list[SpeechItem], crop_samples: int) -> dict[str, Tensor]:
    """As :func:`collate_speakers`, with the first ``crop_samples`` of each utterance (no randomness)."""
    waves = [item.audio[:crop_samples] if crop_samples > 0 else item.audio for item in items]
    wav, lengths = pad_waveforms(waves)
    return {"audio": wav, "audio_lengths": lengths, "labels": torch.tensor([item.target for item in items])}


def speaker_id_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
    """Cross-entropy of the model's speaker logits (mean over utterances) and exact top-1 ``accuracy``."""
    logits = model(batch["audio"], batch["audio_lengths"]).float()
    labels = batch["labels"]
    value = F.cross_entropy(logits, labels)
    correct = logits.argmax(-1).eq(labels).sum()
    return value, {"accuracy": Ratio(float(correct), float(labels.numel()))}


@register_task(config=SpeakerIdConfig)
def speecht5_sid(cfg: SpeakerIdConfig) -> Task:
    splits = speaker_splits(cfg)
    speakers = sorted({u.speaker for u in splits["train"]})
    if not speakers:
        raise ConfigError("the training split has no utterance with a speaker")
    index = {s: i for i, s in enumerate(speakers)}
    unseen = sorted({u.speaker for s in ("val", "test") for u in splits[s]} - set(index))
    if unseen:
        raise ConfigError(f"held-out speakers {unseen[:5]} are not in the training split: speaker identification "
                          "needs held-out utterances of the training speakers (task_args.split: by_speaker)")
    data = {s: SpeechItems(utts, [index[u.speaker] for u in utts]) for s, utts in splits.items()}
    train_crop, eval_crop = (round(cfg.train_crop_seconds * SAMPLE_RATE), round(cfg.eval_crop_seconds * SAMPLE_RATE))

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        inner = unwrap(model)
        classes = getattr(inner.postnet, "output", None)
        if classes is not None and classes.out_features != len(speakers):
            raise ConfigError(f"the training split has {len(speakers)} speakers but the model has "
                              f"{classes.out_features} classes; set model_args.num_classes={len(speakers)}")
        inner.labels = speakers  # what mmseq.pipeline("sid") names its answers with
        return speaker_id_loss(model, batch)

    durations = [min(d, cfg.train_crop_seconds) if cfg.train_crop_seconds else d for d in data["train"].durations]
    return Task(data["train"], data["val"], lambda items: collate_speakers(items, train_crop), loss,
                test_set=data["test"] if len(data["test"]) else None,
                eval_collate=lambda items: collate_eval_speakers(items, eval_crop),
                train_plan=duration_plan(durations, cfg.max_batch_seconds),
                batch_size_of=lambda b: len(b["labels"]),
                info={"classes": len(speakers), "labels": speakers,
                      "utterances": {s: len(d) for s, d in data.items()}})
