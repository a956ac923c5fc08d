"""TERA tasks on a speech manifest corpus (the synthetic corpus, or LibriSpeech through its preparer).

* ``tera_pretrain``: reconstruct log-mel frames from altered ones (time / frequency / magnitude, any of the paper's
  ablations; :mod:`mmseq.tasks.tera_alteration`), L1 on the altered positions. At the end it draws
  ``alteration.png`` (original / altered / reconstructed log-mel of a validation utterance) and exports the best
  model in s3prl's format (``states-s3prl.ckpt``).
* ``tera_downstream``: a probe (the ``tera_downstream`` model: frozen upstream, weighted sum of its layers, linear
  or one-hidden-layer head) on frame-level phone labels (from the manifests' phone times) or utterance-level
  ``speaker`` / ``intent`` labels; accuracy is exact (correct labelled frames or utterances over all of them), and
  for phones and intents also given per held-out speaker (``accuracy/<speaker>``).

Features are TERA's log-mel (RMS -25 dB, 25/10 ms, 80 mel, log, per-utterance CMVN), extracted once per manifest
and cached beside it (:mod:`mmseq.data.feature_cache`). The probe takes these frames, so a TERA upstream and the
log-mel baseline see exactly the same input. Batches are s3prl's buckets: utterances sorted by length, cut into runs
of ``trainer.batch_size``, the runs in a new order every epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.feature_cache import manifest_features
from mmseq.data.features import TeraLogMel
from mmseq.data.manifest import Utterance, read_manifest
from mmseq.data.samplers import LengthBucketBatches
from mmseq.errors import ConfigError, InputError
from mmseq.interop.s3prl import save_s3prl
from mmseq.postnets.spectrogram import masked_reconstruction_loss
from mmseq.tasks.base import Callback, ListDataset, Ratio, RunContext, Task, register_task
from mmseq.tasks.tera_alteration import AlterationConfig, alter

HOP_SECONDS = 0.01
IGNORE = -100
FEATURE_TAG = "tera_logmel"


# --- features ---------------------------------------------------------------------------------------------------

def manifest_path(corpus: str, name: str) -> Path:
    path = Path(corpus) / name
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist; build the corpus with "
                          "`mmseq data synth speech --out data/synth_speech --profile quick` or set task_args.corpus")
    return path


def log_mel_features(corpus: str, name: str) -> tuple[list[Utterance], list[Tensor]]:
    """The utterances of manifest ``corpus/name`` and their TERA log-mel frames ``[T_i, 80]``."""
    path = manifest_path(corpus, name)
    utterances = read_manifest(path)
    return utterances, manifest_features(utterances, path, TeraLogMel(), FEATURE_TAG)


def pad_frames(frames: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-padded ``[B, T, F]`` and lengths ``[B]``."""
    lengths = torch.tensor([f.shape[0] for f in frames])
    out = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        out[i, : f.shape[0]] = f
    return out, lengths


def length_buckets(lengths: list[int]):
    """s3prl's bucketing as a batch plan builder ``(batch_size, seed) -> plan``."""
    return lambda batch_size, seed: LengthBucketBatches(lengths, float("inf"), seed=seed, max_items=batch_size,
                                                        shuffle_ties=False)


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
    export_s3prl: bool = True  # write the best model as states-s3prl.ckpt at the end


def alteration_config(cfg: PretrainConfig) -> AlterationConfig:
    return AlterationConfig.ablation(cfg.ablation, time_proportion=cfg.time_proportion, span_min=cfg.span,
                                     span_max=cfg.span, frequency_proportion=cfg.frequency_proportion,
                                     noise_probability=cfg.noise_probability)


def crop_and_pad(items: list[Tensor], crop: int) -> dict[str, Tensor]:
    """Random crops of at most ``crop`` frames (drawn from the global RNG, which the loop checkpoints), padded."""
    cropped = []
    for f in items:
        if crop and f.shape[0] > crop:
            start = int(torch.randint(0, f.shape[0] - crop + 1, ()))
            f = f[start : start + crop]
        cropped.append(f)
    frames, lengths = pad_frames(cropped)
    return {"frames": frames, "lengths": lengths}


def spectrogram_triple(model: nn.Module, frames: Tensor, alteration: AlterationConfig, out_png: Path) -> None:
    """Original, altered and reconstructed log-mel of one utterance ``frames [T, 80]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = torch.tensor([frames.shape[0]])
    altered = alter(frames[None], lengths, alteration, torch.Generator().manual_seed(3))
    device = next(model.parameters()).device
    with torch.no_grad():
        recon = model.eval()(altered.inputs.to(device), lengths.to(device))[0].cpu()
    panels = [("original", frames), ("altered (model input)", altered.inputs[0]), ("reconstructed", recon)]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    vmin, vmax = frames.min().item(), frames.max().item()
    for ax, (title, x) in zip(axes, panels):
        ax.imshow(x.T.numpy(), origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    spans = altered.mask[0].all(-1).float()  # time-altered frames are scored in every bin
    axes[1].plot(spans.nonzero().flatten().numpy(), [frames.shape[1] - 1] * int(spans.sum()), "c|", markersize=8)
    axes[-1].set_xlabel("frame (10 ms)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


class PretrainOutputs(Callback):
    """At the end: ``alteration.png`` from the best model, and the best model as ``states-s3prl.ckpt``."""

    def __init__(self, alteration: AlterationConfig, example: Tensor | None, export: bool):
        self.alteration, self.example, self.export = alteration, example, export

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        model = run.best_model if run.best_model is not None else run.model
        if self.example is not None:
            spectrogram_triple(model, self.example, self.alteration, run.out_dir / "alteration.png")
        if self.export:
            save_s3prl(model.cpu(), run.out_dir / "states-s3prl.ckpt")


@register_task(config=PretrainConfig)
def tera_pretrain(cfg: PretrainConfig) -> Task:
    if cfg.loss not in ("l1", "mse"):
        raise ConfigError(f"task_args.loss must be 'l1' or 'mse', got {cfg.loss!r}")
    alteration = alteration_config(cfg)
    splits = {}
    for name in (cfg.train_manifest, cfg.val_manifest):
        _, feats = log_mel_features(cfg.corpus, name)
        splits[name] = [f for f in feats if f.shape[0] >= max(cfg.min_frames, 1)]

    def collate(items: list[Tensor]) -> dict[str, Tensor]:
        return crop_and_pad(items, cfg.sequence_length)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        # Training draws alterations from the global RNG (checkpointed by the loop); evaluation from a generator
        # seeded by the batch, so every validation scores the same altered positions and takes nothing from the
        # training stream.
        generator = None if model.training else torch.Generator().manual_seed(int(batch["lengths"].sum()))
        altered = alter(batch["frames"], batch["lengths"], alteration, generator)
        prediction = model(altered.inputs, batch["lengths"])
        value = masked_reconstruction_loss(prediction, altered.target, altered.mask, cfg.loss)
        return value, {"scored_fraction": altered.mask.float().mean().item()}

    train, val = splits[cfg.train_manifest], splits[cfg.val_manifest]
    lengths = [min(f.shape[0], cfg.sequence_length or f.shape[0]) for f in train]
    example = val[0] if val else None
    return Task(ListDataset(train), ListDataset(val), collate, loss, eval_collate=lambda items: crop_and_pad(items, 0),
                train_plan=length_buckets(lengths),
                batch_size_of=lambda b: len(b["lengths"]),
                callbacks=[PretrainOutputs(alteration, example, cfg.export_s3prl)],
                info={"ablation": cfg.ablation, "train_utterances": len(train)})


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
    seed: int = 0  # the speaker split's own seed
    cache_upstream: bool = True  # frozen upstream: keep every utterance's hidden states after their first pass

    def __post_init__(self) -> None:
        if self.label not in ("phone", "speaker", "intent"):
            raise ConfigError(f"task_args.label must be phone, speaker or intent, got {self.label!r}")


def _labelled(cfg: DownstreamConfig, name: str) -> tuple[list[Utterance], list[Tensor]]:
    utts, feats = log_mel_features(cfg.corpus, name)
    if cfg.label == "intent":
        keep = [i for i, u in enumerate(utts) if u.intent is not None]
        utts, feats = [utts[i] for i in keep], [feats[i] for i in keep]
    return utts, feats


def downstream_splits(cfg: DownstreamConfig) -> dict[str, tuple[list[Utterance], list[Tensor]]]:
    """train / val / test utterances and features. Phones and intents: the corpus splits (test = unseen
    speakers). Speakers: the training speakers' utterances, 80 / 10 / 10 at random (seeded)."""
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
                first_key: int = 0) -> list[tuple[Tensor, Tensor, int]]:
    """``(frames, labels, key)`` per utterance; ``key`` (``first_key``, ``first_key + 1``, ...) names the utterance
    in the frozen-upstream cache, so the splits of one task take disjoint ranges."""
    if cfg.label == "phone":
        labels = [frame_labels(u, f.shape[0], vocab) for u, f in zip(utts, feats)]
    else:
        labels = [torch.tensor(vocab.get(getattr(u, cfg.label), IGNORE)) for u in utts]
    return [(f, y, first_key + i) for i, (f, y) in enumerate(zip(feats, labels))]


def collate_labelled(items: list[tuple]) -> dict[str, Tensor]:
    """Padded frames, lengths, labels (``IGNORE`` on padding) and cache keys."""
    frames, lengths = pad_frames([item[0] for item in items])
    if items[0][1].dim() == 0:
        labels = torch.stack([item[1] for item in items])
    else:
        labels = torch.full((len(items), frames.shape[1]), IGNORE, dtype=torch.long)
        for i, item in enumerate(items):
            labels[i, : len(item[1])] = item[1]
    return {"frames": frames, "lengths": lengths, "labels": labels,
            "keys": torch.tensor([item[2] for item in items])}


class FrozenUpstreamCache:
    """Hidden states of a frozen upstream, computed once per utterance and kept in memory (as computed).

    The upstream of a frozen probe (:class:`~mmseq.models.downstream.UpstreamClassifier`) runs in eval mode without
    gradients, so its output for an utterance never changes during probe training: the first batch holding an
    utterance computes its hidden states (all of them, since the layer weights are learned) as the model would, and
    later batches re-pad the stored frames. Padding positions then hold zeros instead of the upstream's output at
    padding; frame heads score labelled frames only and utterance heads pool valid frames only, so the logits equal
    recomputing them (tested).
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
    """The probe's logits for a batch; through ``cache`` when it is given and the upstream is frozen."""
    if cache is None or not cache.applies(model):
        return model(batch["frames"], batch["lengths"])
    states, lengths = cache.hidden_states(model, batch)
    return model.classify(states, lengths)


def classification_loss(model: nn.Module, batch: dict[str, Tensor],
                        cache: FrozenUpstreamCache | None = None) -> tuple[Tensor, dict[str, Ratio]]:
    """Cross-entropy over labelled frames (or utterances), and exact accuracy."""
    logits = classifier_logits(model, batch, cache)
    labels = batch["labels"]
    if int(labels.max()) >= logits.shape[-1]:
        raise ConfigError(f"the data has label id {int(labels.max())} but the model has {logits.shape[-1]} "
                          "classes; raise model_args.num_classes")
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    value = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE)
    valid = flat_labels != IGNORE
    correct = (flat_logits.argmax(-1)[valid] == flat_labels[valid]).sum()
    return value, {"accuracy": Ratio(float(correct), float(valid.sum()))}


@register_task(config=DownstreamConfig)
def tera_downstream(cfg: DownstreamConfig) -> Task:
    splits = downstream_splits(cfg)
    vocab = label_ids(cfg, splits["train"][0])
    train = build_items(cfg, *splits["train"], vocab)
    val = build_items(cfg, *splits["val"], vocab, first_key=len(train))
    test = build_items(cfg, *splits["test"], vocab, first_key=len(train) + len(val))
    cache = FrozenUpstreamCache() if cfg.cache_upstream else None

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Ratio]]:
        return classification_loss(model, batch, cache)

    held_out = {name: (items, [u.speaker for u in splits[name][0]]) for name, items in (("val", val), ("test", test))}

    @torch.no_grad()
    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        """Accuracy over each held-out speaker's frames (or utterances): ``accuracy/<speaker>``. The speaker task's
        held-out utterances come from the training speakers, so it has none."""
        if cfg.label == "speaker":
            return {}
        items, speakers = held_out[split]
        device = next(model.parameters(), torch.zeros(())).device
        out = {}
        for speaker in sorted(set(speakers)):
            mine = [item for item, s in zip(items, speakers) if s == speaker]
            correct = total = 0.0
            for start in range(0, len(mine), 32):
                batch = {k: v.to(device) for k, v in collate_labelled(mine[start : start + 32]).items()}
                ratio = classification_loss(model, batch, cache)[1]["accuracy"]
                correct, total = correct + ratio.numerator, total + ratio.denominator
            out[f"accuracy/{speaker}"] = correct / max(total, 1.0)
        return out

    return Task(ListDataset(train), ListDataset(val), collate_labelled, loss, test_set=ListDataset(test),
                evaluate=evaluate,
                train_plan=length_buckets([item[0].shape[0] for item in train]),
                batch_size_of=lambda b: len(b["lengths"]),
                info={"label": cfg.label, "classes": len(vocab), "labels": list(vocab)})
