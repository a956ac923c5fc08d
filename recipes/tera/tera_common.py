"""TERA recipe tasks on a speech manifest corpus (the synthetic corpus, or LibriSpeech through its preparer).

Registers three tasks with the shared training loop:

* ``tera_pretrain``: reconstruct log-mel frames from altered ones (time / frequency / magnitude, any ablation);
* ``tera_frame_labels``: frame-level phone classification from the manifests' phone times;
* ``tera_utterance_labels``: utterance classification of ``speaker`` or ``intent``.

Features are TERA's log-mel (RMS -25 dB, 25/10 ms, 80 mel, log, per-utterance CMVN), computed once per split when
the task is built. Downstream models (``tera_downstream``) take these frames, so a TERA upstream and the log-mel
baseline see exactly the same input.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.data.audio import load_audio
from mmseq.data.features import TeraLogMel
from mmseq.data.manifest import Utterance, read_manifest
from mmseq.errors import ConfigError, InputError
from mmseq.models.tera_alteration import AlterationConfig, alter
from mmseq.postnets.spectrogram import masked_reconstruction_loss
from mmseq.train.tasks import Task, register_task

HOP_SECONDS = 0.01
IGNORE = -100


# --- features ---------------------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], list[Tensor]] = {}


def manifest_path(corpus: str, name: str) -> Path:
    path = Path(corpus) / name
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist; build the corpus with "
                          "`mmseq data synth speech --out data/synth_speech --profile quick` or set task_args.corpus")
    return path


def log_mel_features(utterances: list[Utterance], key: str) -> list[Tensor]:
    """TERA log-mel frames ``[T_i, 80]`` of every utterance of manifest ``key``.

    Cached in memory for this process and on disk beside the manifest (``<manifest>.tera_logmel.pt``, rebuilt when
    the manifest is newer), so the several runs of a recipe extract features once.
    """
    cache_key = (key, str(len(utterances)))
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    manifest = Path(key)
    disk = manifest.with_name(manifest.name + ".tera_logmel.pt")
    feats = None
    if disk.is_file() and disk.stat().st_mtime >= manifest.stat().st_mtime:
        cached = torch.load(disk, weights_only=True)
        if isinstance(cached, list) and len(cached) == len(utterances):
            feats = cached
    if feats is None:
        extractor = TeraLogMel()
        feats = []
        with torch.no_grad():
            for utt in utterances:
                frames, _ = extractor(load_audio(utt.audio, 16000)[None, :])
                feats.append(frames[0].clone())
        try:
            tmp = disk.with_name(disk.name + ".tmp")
            torch.save(feats, tmp)
            tmp.replace(disk)
        except OSError:
            pass  # a read-only corpus: extract again next time
    _CACHE[cache_key] = feats
    return feats


def pad_frames(frames: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-padded ``[B, T, F]`` and lengths ``[B]``."""
    lengths = torch.tensor([f.shape[0] for f in frames])
    out = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        out[i, : f.shape[0]] = f
    return out, lengths


class SortedBuckets:
    """s3prl's bucketing: items sorted by length, cut into runs of ``batch_size``; batch order shuffled per epoch
    (seeded), so little of a batch is padding."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        self.buckets = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.seed = seed

    def batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return [self.buckets[i] for i in torch.randperm(len(self.buckets), generator=g).tolist()]


class ListDataset(Dataset):
    def __init__(self, items: list[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


# --- pretraining ------------------------------------------------------------------------------------------------

@dataclass
class PretrainConfig:
    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    ablation: str = "T-F"  # which alterations: T, F, M or a combination (the paper's ablations)
    time_proportion: float = 0.15
    span: int = 7
    frequency_proportion: float = 0.2
    noise_probability: float = 0.15  # used when the ablation has M
    sequence_length: int = 1500  # random crop of longer utterances (s3prl: 1500 frames)
    min_frames: int = 0  # utterances with fewer frames are left out (s3prl drops <= 200 on LibriSpeech)
    loss: str = "l1"  # l1 | mse


def alteration_config(cfg: PretrainConfig) -> AlterationConfig:
    return AlterationConfig.ablation(cfg.ablation, time_proportion=cfg.time_proportion, span_min=cfg.span,
                                     span_max=cfg.span, frequency_proportion=cfg.frequency_proportion,
                                     noise_probability=cfg.noise_probability)


def make_pretrain_loss(alteration: AlterationConfig, kind: str, crop: int):
    def collate(items: list[Tensor]) -> dict[str, Tensor]:
        cropped = []
        for f in items:
            if crop and f.shape[0] > crop:  # the crop is drawn from the global RNG (checkpointed by the loop)
                start = int(torch.randint(0, f.shape[0] - crop + 1, ()))
                f = f[start : start + crop]
            cropped.append(f)
        frames, lengths = pad_frames(cropped)
        return {"frames": frames, "lengths": lengths}

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        altered = alter(batch["frames"], batch["lengths"], alteration)
        prediction = model(altered.inputs, batch["lengths"])
        value = masked_reconstruction_loss(prediction, altered.target, altered.mask, kind)
        return value, {"scored_fraction": altered.mask.float().mean().item()}

    return collate, loss


@register_task(config=PretrainConfig)
def tera_pretrain(cfg: PretrainConfig) -> Task:
    alteration = alteration_config(cfg)
    splits = {}
    for name in (cfg.train_manifest, cfg.val_manifest):
        utts = read_manifest(manifest_path(cfg.corpus, name))
        feats = log_mel_features(utts, str(Path(cfg.corpus) / name))
        splits[name] = [f for f in feats if f.shape[0] >= max(cfg.min_frames, 1)]
    collate, loss = make_pretrain_loss(alteration, cfg.loss, cfg.sequence_length)
    train = splits[cfg.train_manifest]
    lengths = [min(f.shape[0], cfg.sequence_length or f.shape[0]) for f in train]
    return Task(ListDataset(train), ListDataset(splits[cfg.val_manifest]), collate, loss,
                train_plan=lambda batch_size, seed: SortedBuckets(lengths, batch_size, seed),
                batch_size_of=lambda b: len(b["lengths"]))


# --- downstream -------------------------------------------------------------------------------------------------

def frame_labels(utt: Utterance, num_frames: int, vocab: dict[str, int]) -> Tensor:
    """Phone id of every 10 ms frame (frame i is centred at i * 10 ms); frames past the last phone get its id."""
    if not utt.phones:
        raise InputError(f"utterance {utt.id!r} has no phone times")
    ends = torch.tensor([p.end for p in utt.phones])
    ids = torch.tensor([vocab.get(p.label, IGNORE) for p in utt.phones])
    centres = torch.arange(num_frames) * HOP_SECONDS
    index = torch.searchsorted(ends, centres, right=True).clamp(max=len(ends) - 1)
    return ids[index]


@dataclass
class DownstreamConfig:
    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    test_manifest: str = "test.jsonl"
    label: str = "phone"  # phone (frame level) | speaker | intent (utterance level)
    speaker_split: str = "utterance"  # speaker ID: train/val/test are utterances of the training speakers
    seed: int = 0  # the split's own seed
    cache_upstream: bool = True  # frozen upstream: keep every utterance's hidden states after their first pass


def _labelled(cfg: DownstreamConfig, name: str) -> tuple[list[Utterance], list[Tensor]]:
    utts = read_manifest(manifest_path(cfg.corpus, name))
    feats = log_mel_features(utts, str(Path(cfg.corpus) / name))
    if cfg.label == "intent":
        keep = [i for i, u in enumerate(utts) if u.intent is not None]
        utts, feats = [utts[i] for i in keep], [feats[i] for i in keep]
    return utts, feats


def downstream_splits(cfg: DownstreamConfig) -> dict[str, tuple[list[Utterance], list[Tensor]]]:
    """train / val / test utterances and features. Phones and intents: the corpus splits (test = unseen
    speakers). Speakers: the training speakers' utterances, 80 / 10 / 10 at random (seeded)."""
    if cfg.label not in ("phone", "speaker", "intent"):
        raise ConfigError(f"task_args.label must be phone, speaker or intent, got {cfg.label!r}")
    if cfg.label != "speaker":
        return {s: _labelled(cfg, m) for s, m in
                (("train", cfg.train_manifest), ("val", cfg.val_manifest), ("test", cfg.test_manifest))}
    utts, feats = _labelled(cfg, cfg.train_manifest)
    order = list(range(len(utts)))
    random.Random(cfg.seed).shuffle(order)
    cut1, cut2 = int(0.8 * len(order)), int(0.9 * len(order))
    parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    return {s: ([utts[i] for i in idx], [feats[i] for i in idx]) for s, idx in parts.items()}


def label_ids(cfg: DownstreamConfig, train: list[Utterance]) -> dict[str, int]:
    """Class id of every label seen in the training utterances (phones, speakers or intents, sorted)."""
    if cfg.label == "phone":
        labels = {p.label for u in train for p in (u.phones or [])}
    else:
        labels = {getattr(u, cfg.label) for u in train}
    return {label: i for i, label in enumerate(sorted(labels))}


def build_items(cfg: DownstreamConfig, utts: list[Utterance], feats: list[Tensor], vocab: dict[str, int],
                first_key: int = 0) -> list:
    """``(frames, labels, key)`` per utterance; ``key`` (``first_key``, ``first_key + 1``, ...) names the utterance
    in the frozen-upstream cache, so the splits of one task take disjoint ranges."""
    if cfg.label == "phone":
        labels = [frame_labels(u, f.shape[0], vocab) for u, f in zip(utts, feats)]
    else:
        labels = [torch.tensor(vocab.get(getattr(u, cfg.label), IGNORE)) for u in utts]
    return [(f, y, first_key + i) for i, (f, y) in enumerate(zip(feats, labels))]


def collate_labelled(items: list[tuple]) -> dict[str, Tensor]:
    """Padded frames, lengths, labels (``IGNORE`` on padding) and, when the items carry them, cache keys."""
    frames, lengths = pad_frames([item[0] for item in items])
    if items[0][1].dim() == 0:
        labels = torch.stack([item[1] for item in items])
    else:
        labels = torch.full((len(items), frames.shape[1]), IGNORE, dtype=torch.long)
        for i, item in enumerate(items):
            labels[i, : len(item[1])] = item[1]
    batch = {"frames": frames, "lengths": lengths, "labels": labels}
    if len(items[0]) > 2:
        batch["keys"] = torch.tensor([item[2] for item in items])
    return batch


class FrozenUpstreamCache:
    """Hidden states of a frozen upstream, computed once per utterance and kept in memory (as computed).

    The upstream of a frozen ``UpstreamClassifier`` runs in eval mode without gradients, so its output for an
    utterance never changes during probe training: the first batch holding an utterance computes its hidden
    states (all of them, since the layer weights are learned) as the model would, and later batches re-pad the
    stored frames. Padding positions then hold zeros instead of the upstream's output at padding; frame heads
    score labelled frames only and utterance heads pool valid frames only, so logits and loss are unchanged.
    Training buckets and validation batches are the same every epoch, so each stored state comes from the very
    batch it is later used in.
    """

    def __init__(self) -> None:
        self.states: dict[int, list[Tensor]] = {}
        self.owner: int | None = None  # id() of the upstream the states belong to

    @staticmethod
    def applies(model: nn.Module) -> bool:
        return bool(getattr(model, "freeze_upstream", False)) and hasattr(model, "upstream_features")

    def hidden_states(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[list[Tensor], Tensor]:
        if self.owner != id(model.upstream):
            self.states, self.owner = {}, id(model.upstream)
        keys = batch["keys"].tolist()
        if any(k not in self.states for k in keys):
            features = model.upstream_features(batch["frames"], batch["lengths"])
            for i, k in enumerate(keys):
                n = int(features.lengths[i])
                self.states[k] = [h[i, :n].detach().clone() for h in features.hidden_states]
        rows = [self.states[k] for k in keys]
        lengths = torch.tensor([r[0].shape[0] for r in rows], device=batch["frames"].device)
        width = int(lengths.max())
        hidden = []
        for layer in range(len(rows[0])):
            out = rows[0][layer].new_zeros(len(rows), width, rows[0][layer].shape[-1])
            for i, r in enumerate(rows):
                out[i, : r[layer].shape[0]] = r[layer]
            hidden.append(out)
        return hidden, lengths


def classifier_logits(model: nn.Module, batch: dict[str, Tensor], cache: FrozenUpstreamCache | None) -> Tensor:
    """The model's logits for a batch; through ``cache`` when it is given, the upstream is frozen and the batch
    has cache keys (what ``UpstreamClassifier.forward`` computes, without re-running the upstream)."""
    if cache is None or "keys" not in batch or not cache.applies(model):
        return model(batch["frames"], batch["lengths"])
    states, lengths = cache.hidden_states(model, batch)
    hidden = states[model.layer] if model.layer_sum is None else model.layer_sum(states)
    return model.head(hidden, lengths)


def classification_loss(model: nn.Module, batch: dict[str, Tensor],
                        cache: FrozenUpstreamCache | None = None) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy over labelled frames (or utterances) and accuracy."""
    logits = classifier_logits(model, batch, cache)
    labels = batch["labels"]
    if int(labels.max()) >= logits.shape[-1]:
        raise ConfigError(f"the data has label id {int(labels.max())} but the model has {logits.shape[-1]} "
                          "classes; raise model_args.num_classes")
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    value = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE)
    valid = flat_labels != IGNORE
    accuracy = (flat_logits.argmax(-1)[valid] == flat_labels[valid]).float().mean().item()
    return value, {"accuracy": accuracy}


@register_task(config=DownstreamConfig)
def tera_downstream_task(cfg: DownstreamConfig) -> Task:
    splits = downstream_splits(cfg)
    vocab = label_ids(cfg, splits["train"][0])
    train = build_items(cfg, *splits["train"], vocab)
    val = build_items(cfg, *splits["val"], vocab, first_key=len(train))
    lengths = [item[0].shape[0] for item in train]
    cache = FrozenUpstreamCache() if cfg.cache_upstream else None

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return classification_loss(model, batch, cache)

    task = Task(ListDataset(train), ListDataset(val), collate_labelled, loss,
                train_plan=lambda batch_size, seed: SortedBuckets(lengths, batch_size, seed),
                batch_size_of=lambda b: len(b["lengths"]))
    test = build_items(cfg, *splits["test"], vocab, first_key=len(train) + len(val))
    task.test_set = ListDataset(test)  # type: ignore[attr-defined]
    task.vocabulary = list(vocab)  # type: ignore[attr-defined]
    return task


# --- running a recipe -------------------------------------------------------------------------------------------

def run_recipe(config_path: str, overrides: list[str]) -> tuple[Any, dict[str, Any], float]:
    """Train with the shared loop; returns ``(config, final validation metrics, seconds)``."""
    from mmseq.config import load_config
    from mmseq.train.config import RunConfig
    from mmseq.train.loop import train

    cfg = load_config(RunConfig, config_path, overrides)
    start = time.time()
    metrics = train(cfg)
    return cfg, metrics, time.time() - start


@torch.no_grad()
def evaluate_split(dataset: Dataset, model: nn.Module, batch_size: int = 32) -> dict[str, float]:
    """Exact accuracy (correct labelled frames or utterances over all of them) and mean cross-entropy."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for start in range(0, len(dataset), batch_size):
        batch = collate_labelled([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits = model(batch["frames"], batch["lengths"])
        flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1)
        valid = flat_labels != IGNORE
        loss_sum += F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum").item()
        correct += int((flat_logits.argmax(-1)[valid] == flat_labels[valid]).sum())
        total += int(valid.sum())
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "count": total}


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def loss_curve(metrics_jsonl: Path, out_png: Path, title: str, metric: str = "loss") -> None:
    """Train and validation curves of ``metric`` from the loop's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmseq.train.log import read_metrics

    records = read_metrics(metrics_jsonl)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for split in ("train", "val"):
        points = [(r["step"], r[metric]) for r in records if r["split"] == split and metric in r]
        if points:
            ax.plot(*zip(*points), marker="o" if split == "val" else None, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from a recipe's train.py")
