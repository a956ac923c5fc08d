"""``speaker_embedding``: train an x-vector speaker encoder (``xvector_*``) on a corpus' speakers, as SpeechBrain's
VoxCeleb x-vector recipe (``train_x_vectors.yaml``) does, for the 512-d embeddings SpeechT5's TTS and VC take.

* **Objective**: a softmax classifier over the training speakers, cross-entropy on its logits (SpeechBrain: NLL of
  the classifier's log-softmax, the same loss); ``accuracy`` is exact top-1 over utterances. The embedding is the
  layer before the classifier; ``mmseq data embed-speakers`` writes it, L2-normalised.
* **Crops**: every training utterance is cut to a random window of ``crop_seconds`` (SpeechBrain: 3 s random
  chunks), the start drawn from the global RNG the loop checkpoints; shorter utterances are taken whole (padded;
  the model pools and batch-normalises over valid frames only). Validation and test read the first
  ``eval_crop_seconds`` (0: whole utterances).
* **Splits**: the utterances of ``manifests`` (default the training manifest only, so the corpus' dev and test
  speakers stay unseen) pooled, and for every speaker a seeded share held out for validation and test
  (:func:`mmseq.tasks.speecht5.sid.split_by_speaker`: validation accuracy is on held-out utterances of the
  training speakers).
* **Unseen speakers**: ``evaluate`` embeds every utterance of ``unseen_manifests`` (the corpus' dev and test
  speakers, none of them trained on) and scores all pairs by cosine: ``unseen_eer`` is the equal error rate of
  same- against different-speaker pairs (from torchmetrics' ROC), what a speaker encoder is for beyond its
  training speakers.

``info.labels`` in ``metrics.json`` names the classes (the training speakers, sorted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.manifest import Utterance
from mmseq.data.samplers import BatchPlan, FixedSizeBatches, LengthBucketBatches
from mmseq.errors import ConfigError
from mmseq.tasks.base import Ratio, Task, register_task
from mmseq.tasks.speecht5.data import SAMPLE_RATE, SpeechItems, model_device, read_split, unwrap
from mmseq.tasks.speecht5.sid import collate_eval_speakers, collate_speakers, split_by_speaker


@dataclass
class SpeakerEmbeddingConfig:
    corpus: str = "data/synth_speech"
    manifests: list[str] = field(default_factory=lambda: ["train.jsonl"])  # pooled, then split per speaker
    val_fraction: float = 0.1  # share of each speaker's utterances held out for validation
    test_fraction: float = 0.1  # ... and for test
    seed: int = 0  # the split's own seed
    crop_seconds: float = 3.0  # SpeechBrain's x-vector recipe: random 3 s chunks
    eval_crop_seconds: float = 0.0  # 0: whole utterances
    max_batch_seconds: float = 0.0  # > 0: length-bucketed batches of at most this much padded audio
    unseen_manifests: list[str] = field(default_factory=lambda: ["dev.jsonl", "test.jsonl"])  # [] : no unseen EER
    eval_batch_size: int = 16  # utterances per batch when embedding the unseen speakers

    def __post_init__(self) -> None:
        if not self.manifests:
            raise ConfigError("task_args.manifests names no manifest")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("task_args.val_fraction and test_fraction must be >= 0 with a sum below 1")
        if self.crop_seconds < 0 or self.eval_crop_seconds < 0:
            raise ConfigError("task_args.crop_seconds and eval_crop_seconds must be >= 0")
        if self.eval_batch_size < 1:
            raise ConfigError(f"task_args.eval_batch_size must be >= 1, got {self.eval_batch_size}")


def pooled_utterances(corpus: str, names: list[str]) -> list[Utterance]:
    """The utterances (with a speaker) of every manifest in ``names``; an id in two of them is an error."""
    pooled: list[Utterance] = []
    seen: set[str] = set()
    for name in names:
        for utt in read_split(corpus, name, need="speaker"):
            if utt.id in seen:
                raise ConfigError(f"utterance id {utt.id!r} is in more than one of {names}")
            seen.add(utt.id)
            pooled.append(utt)
    return pooled


def training_plan(durations: list[float], max_batch_seconds: float):
    """Batch plan builder ``(batch_size, seed) -> plan`` whose batches hold at least two utterances (the
    classifier's batch normalisation needs two in training): ``batch_size`` random utterances (a last batch of one
    is dropped), or with ``max_batch_seconds > 0`` utterances of similar duration under that padded budget."""
    if max_batch_seconds < 0:
        raise ConfigError(f"task_args.max_batch_seconds must be >= 0, got {max_batch_seconds}")
    if len(durations) < 2:
        raise ConfigError(f"speaker_embedding needs at least 2 training utterances, got {len(durations)}")

    def plan(batch_size: int, seed: int) -> BatchPlan:
        if batch_size < 2:
            raise ConfigError("speaker_embedding needs trainer.batch_size >= 2 (the classifier's batch norm)")
        if max_batch_seconds == 0:
            return FixedSizeBatches(len(durations), batch_size, shuffle=True, seed=seed,
                                    drop_last=len(durations) % batch_size == 1)
        return LengthBucketBatches(durations, max_batch_seconds, shuffle=True, seed=seed, padded=True,
                                   max_items=batch_size, min_items=2)

    return plan


def equal_error_rate(scores: Tensor, same: Tensor) -> float:
    """The rate where false acceptances equal false rejections, from torchmetrics' ROC of ``scores [N]`` against
    ``same [N]`` (True for target pairs): the mean of the two rates at the threshold where they are closest."""
    from torchmetrics.functional.classification import binary_roc  # here: torchmetrics takes seconds to import

    fpr, tpr, _ = binary_roc(scores.float(), same.long())
    fnr = 1 - tpr
    i = int(torch.argmin((fpr - fnr).abs()))
    return float((fpr[i] + fnr[i]) / 2)


@torch.no_grad()
def unseen_speaker_eer(model: nn.Module, items: SpeechItems, speakers: list[str], batch_size: int) -> float:
    """EER of cosine scores over all pairs of ``items``' L2-normalised embeddings (speakers in ``speakers``)."""
    inner = unwrap(model)
    was_training = inner.training
    inner.eval()
    device = model_device(inner)
    embeddings = []
    for start in range(0, len(items), batch_size):
        batch = collate_eval_speakers([items[i] for i in range(start, min(start + batch_size, len(items)))], 0)
        embeddings.append(inner.embed(batch["audio"].to(device), batch["audio_lengths"].to(device)).float().cpu())
    inner.train(was_training)
    x = torch.cat(embeddings)
    ids = torch.tensor([sorted(set(speakers)).index(s) for s in speakers])
    upper = torch.triu_indices(len(x), len(x), offset=1)
    scores = (x @ x.T)[upper[0], upper[1]]
    return equal_error_rate(scores, ids[upper[0]] == ids[upper[1]])


@register_task(config=SpeakerEmbeddingConfig)
def speaker_embedding(cfg: SpeakerEmbeddingConfig) -> Task:
    splits = split_by_speaker(pooled_utterances(cfg.corpus, cfg.manifests), cfg.val_fraction, cfg.test_fraction,
                              cfg.seed)
    speakers = sorted({u.speaker for u in splits["train"]})
    if len(speakers) < 2:
        raise ConfigError(f"speaker_embedding needs at least 2 training speakers, {cfg.manifests} have "
                          f"{len(speakers)}")
    index = {s: i for i, s in enumerate(speakers)}
    data = {s: SpeechItems(utts, [index[u.speaker] for u in utts]) for s, utts in splits.items()}
    crop, eval_crop = round(cfg.crop_seconds * SAMPLE_RATE), round(cfg.eval_crop_seconds * SAMPLE_RATE)

    unseen_utts = pooled_utterances(cfg.corpus, cfg.unseen_manifests) if cfg.unseen_manifests else []
    overlap = sorted({u.speaker for u in unseen_utts} & set(speakers))
    if overlap:
        raise ConfigError(f"speakers {overlap[:5]} of task_args.unseen_manifests are training speakers; the unseen "
                          "EER needs speakers the encoder never saw")
    unseen = SpeechItems(unseen_utts, [0] * len(unseen_utts))
    unseen_speakers = [u.speaker for u in unseen_utts]

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        inner = unwrap(model)
        classes = getattr(getattr(inner, "classifier", None), "num_classes", None)
        if classes != len(speakers):
            raise ConfigError(f"the training split has {len(speakers)} speakers but the model has {classes} classes; "
                              f"set model_args.num_classes={len(speakers)}")
        inner.labels = speakers  # what a caller names the classes with
        logits = model(batch["audio"], batch["audio_lengths"]).float()
        labels = batch["labels"]
        correct = logits.argmax(-1).eq(labels).sum()
        return F.cross_entropy(logits, labels), {"accuracy": Ratio(float(correct), float(labels.numel()))}

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        if len(set(unseen_speakers)) < 2:
            return {}
        return {"unseen_eer": unseen_speaker_eer(model, unseen, unseen_speakers, cfg.eval_batch_size)}

    durations = [min(d, cfg.crop_seconds) if cfg.crop_seconds else d for d in data["train"].durations]
    return Task(data["train"], data["val"], lambda items: collate_speakers(items, crop), loss,
                test_set=data["test"] if len(data["test"]) else None,
                eval_collate=lambda items: collate_eval_speakers(items, eval_crop),
                train_plan=training_plan(durations, cfg.max_batch_seconds),
                batch_size_of=lambda b: len(b["labels"]), evaluate=evaluate,
                info={"classes": len(speakers), "labels": speakers,
                      "utterances": {s: len(d) for s, d in data.items()},
                      "unseen_speakers": sorted(set(unseen_speakers))})
