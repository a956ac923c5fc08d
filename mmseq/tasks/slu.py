"""Sequence-to-sequence spoken language understanding: speech in, ``"<label> | <transcript>"`` out.

The decoder generates an utterance's label (its intent, or SLURP's scenario: any manifest field) followed by its
transcript, as the seq2seq SLU models of COCONUT and the authors' SLURP code do; the label accuracy is read off
the generated text before the separator, and the WER from the rest. The model is any SpeechT5-style
encoder-decoder with a text decoder (``speecht5_asr_*`` variants, log-mel or waveform front-end).

For continual learning, the task can keep only some labels (``keep_labels``: a class-incremental task's classes),
add rehearsal utterances by id (``rehearsal_ids``) and test on other labels (``test_labels``: every class seen so
far). The character vocabulary is trained on the *whole* training split whatever is kept, so every task of a
stream has the same one.

With a ``teacher`` (the previous task's model, a checkpoint folder; frozen, run once per batch) the loss adds the
distillation and contrastive terms of the continual strategies, each with its weight (0: off):

* ``audio_kd``: MSE between the student's and the teacher's encoder outputs (valid frames);
* ``token_kd``: ``T^2 KL(teacher || student)`` of the teacher-forced token distributions at temperature
  ``kd_temperature`` (valid target tokens);
  both on the rehearsal utterances (``kd_on: rehearsal``, as CL_SLU's ``only_rehe``) or on every item (``all``);
* ``seq_kd``: the rehearsal utterances' targets are the teacher's own generated outputs (beam search,
  ``seq_kd_beams``), decoded once when the task is built;
* ``nspt``: COCONUT's negative-student positive-teacher loss (:func:`mmseq.nn.contrastive.nspt_loss`) on the audio
  projections of student and teacher, the rehearsal utterances as anchors, each one's own teacher projection among
  its positives (``nspt_self_positive``);
* ``mm``: COCONUT's multimodal loss between the audio projection and the text projection of the mean token
  embedding of the target (decoder embedding table), on the current task's utterances (``mm_on: new``) or all.

The projections need a model with ``projection_heads`` (``model_args.projection_dim``).

With ``upstream`` (a checkpoint with ``forward_features``: a TERA run's ``best/``, a SpeechT5 model, an s3prl file)
the model reads that frozen model's hidden states (``upstream_layer``) instead of waveforms: a
``speech_frontend="features"`` SpeechT5 whose ``feature_dim`` is the upstream's width (the task reports it as
``info["feature_dim"]``), i.e. the upper, trained part of an encoder whose lower layers are frozen. The frames are
computed once per utterance and cached in memory and beside the manifests (``cache_upstream``; off: the upstream
runs whenever an item is read), which is what makes a whole continual stream cheap: every task, the teacher and the
memory's selection read the same cached frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mmseq.checkpoint import load
from mmseq.data.manifest import Utterance
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError
from mmseq.metrics import word_error_rate
from mmseq.tasks.base import Task, register_task
from mmseq.nn.contrastive import multimodal_contrastive_loss, nspt_loss
from mmseq.tasks.speecht5.data import (FrameItems, SpeechItem, SpeechItems, UpstreamFrames, bind_tokenizer,
                                       duration_plan, manifest_path, read_split, unwrap)
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
    max_train_seconds: float = 0.0  # > 0: longer training utterances are left out
    num_beams: int = 1
    max_new_tokens: int = 0  # 0: 1.5 x the longest training target + 10
    decode_batch_size: int = 16
    teacher: str | None = None  # the previous task's model (a checkpoint folder), for the terms below
    kd_on: str = "rehearsal"  # rehearsal | all
    audio_kd: float = 0.0
    token_kd: float = 0.0
    kd_temperature: float = 2.0
    seq_kd: bool = False
    seq_kd_beams: int = 5
    nspt: float = 0.0
    nspt_temperature: float = 0.1
    nspt_self_positive: bool = True  # the anchor's own teacher embedding is a positive (mmseq.nn.contrastive)
    mm: float = 0.0
    mm_temperature: float = 0.1
    mm_on: str = "new"  # new | all
    upstream: str | None = None  # a frozen upstream checkpoint: the model reads its hidden states, not waveforms
    upstream_layer: int = -1
    cache_upstream: bool = True  # its frames computed once per utterance and cached beside the manifests

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"task_args.target {self.target!r}: expected one of {', '.join(TARGETS)}")
        if self.kd_on not in ("rehearsal", "all") or self.mm_on not in ("new", "all"):
            raise ConfigError("task_args.kd_on must be rehearsal | all and mm_on new | all")
        for key in ("audio_kd", "token_kd", "nspt", "mm"):
            if getattr(self, key) < 0:
                raise ConfigError(f"task_args.{key} must be >= 0, got {getattr(self, key)}")
        if (self.audio_kd or self.token_kd or self.seq_kd or self.nspt) and not self.teacher:
            raise ConfigError("task_args.audio_kd / token_kd / seq_kd / nspt need task_args.teacher (the previous "
                              "task's model)")
        if self.num_beams < 1 or self.decode_batch_size < 1:
            raise ConfigError("task_args.num_beams and decode_batch_size must be >= 1")


def utterance_label(u: Utterance, field_name: str) -> str:
    """The ``field_name`` value of ``u`` (an attribute, else a key of ``extra``), as a string."""
    value = u.field(field_name)
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

    def decode(self, model: nn.Module, split: str, positions: Sequence[int] | None = None) -> list[tuple[str, str]]:
        """``(label, transcript)`` the model generates for each item of ``split`` (all, or those at
        ``positions``)."""
        dataset = self.items[split]
        positions = range(len(dataset)) if positions is None else positions
        texts = transcribe(model, [dataset[i] for i in positions], self.tokenizer, num_beams=self.cfg.num_beams,
                           ctc_weight=0.0, max_new_tokens=self.max_new_tokens, batch_size=self.cfg.decode_batch_size)
        return [split_output(t) for t in texts]

    def predict(self, model: nn.Module, split: str, positions: Sequence[int] | None = None) -> list[str]:
        """The label the model generates for each item of ``split`` (all, or those at ``positions``)."""
        return [label for label, _ in self.decode(model, split, positions)]


def load_teacher(path: str) -> nn.Module:
    """The previous task's model, frozen and in eval mode."""
    teacher = load(path).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _rows(select: Tensor, lengths: Tensor, width: int) -> Tensor:
    """``[B, width]`` bool: the valid steps of the selected rows."""
    steps = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    return steps & select[:, None]


def continual_terms(model: nn.Module, out: Any, teacher: nn.Module | None, batch: dict[str, Tensor],
                    cfg: SluConfig) -> dict[str, Tensor]:
    """The weighted terms' unweighted values (``audio_kd``, ``token_kd``, ``nspt``, ``mm``) on one batch, the
    teacher run once (see the module notes)."""
    terms: dict[str, Tensor] = {}
    rehearsal = batch["rehearsal"].to(out.encoder_hidden.device)
    select = rehearsal if cfg.kd_on == "rehearsal" else torch.ones_like(rehearsal)
    t_out = None
    if teacher is not None and (cfg.audio_kd or cfg.token_kd or cfg.nspt):
        device = out.encoder_hidden.device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        with torch.no_grad():
            t_out = teacher(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
    zero = out.encoder_hidden.sum() * 0.0
    if cfg.audio_kd:
        frames = _rows(select, out.encoder_lengths, out.encoder_hidden.shape[1])
        diff = (out.encoder_hidden.float() - t_out.encoder_hidden.float()).pow(2).mean(-1)
        terms["audio_kd"] = diff[frames].mean() if bool(frames.any()) else zero
    if cfg.token_kd:
        tokens = _rows(select, batch["target_lengths"], out.outputs.shape[1])
        temp = cfg.kd_temperature
        log_s = torch.log_softmax(out.outputs.float() / temp, -1)
        log_t = torch.log_softmax(t_out.outputs.float() / temp, -1)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
        terms["token_kd"] = kl[tokens].mean() * temp**2 if bool(tokens.any()) else zero
    if cfg.nspt or cfg.mm:
        heads = getattr(model, "projection_heads", None)
        if heads is None:
            raise ConfigError("task_args.nspt / mm need a model with projection heads (model_args.projection_dim)")
        audio = heads.audio(out.encoder_hidden, out.encoder_lengths)
        if cfg.nspt:
            t_heads = getattr(teacher, "projection_heads", None)
            if t_heads is None:
                raise ConfigError("task_args.nspt needs a teacher with projection heads")
            with torch.no_grad():
                t_audio = t_heads.audio(t_out.encoder_hidden, t_out.encoder_lengths)
            terms["nspt"] = nspt_loss(audio, t_audio, batch["label"].to(audio.device), rehearsal,
                                      cfg.nspt_temperature, self_positive=cfg.nspt_self_positive)
        if cfg.mm:
            embedded = model.decoder_prenet.embed_tokens(batch["target"])  # padded with pad_id, masked by lengths
            text = heads.text(embedded, (batch["target_lengths"] - 1).clamp(min=1))  # without </s>
            mask = ~rehearsal if cfg.mm_on == "new" else None
            terms["mm"] = multimodal_contrastive_loss(audio, text, cfg.mm_temperature, mask)
    return terms


def _item_maker(cfg: SluConfig, full: dict[str, list[Utterance]]):
    """``(utterances, targets, split) -> dataset``: waveform items, or the upstream's frames (cached per
    manifest)."""
    if not cfg.upstream:
        return lambda utterances, targets, split: SpeechItems(utterances, targets)
    upstream = UpstreamFrames(cfg.upstream, cfg.upstream_layer)
    cached: dict[str, dict[str, Tensor]] = {}
    if cfg.cache_upstream:
        names = {"train": cfg.train_manifest, "val": cfg.val_manifest, "test": cfg.test_manifest}
        for split, utts in full.items():
            if utts:
                frames = upstream.of_split(utts, manifest_path(cfg.corpus, names[split]))
                cached[split] = dict(zip((u.id for u in utts), frames))

    def make(utterances: Sequence[Utterance], targets: Sequence[Any], split: str) -> FrameItems:
        frames = [cached[split][u.id] for u in utterances] if cfg.cache_upstream else None
        return FrameItems(utterances, targets, upstream, frames)

    return make


def build_slu(cfg: SluConfig) -> tuple[Task, SluData]:
    """The task and its data (see the module notes)."""
    full = {"train": read_split(cfg.corpus, cfg.train_manifest, cfg.max_train_seconds),
            "val": read_split(cfg.corpus, cfg.val_manifest),
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
              "test": [u for u in full["test"]
                       if test_keep is None or utterance_label(u, cfg.label_field) in test_keep]}
    if not splits["train"]:
        raise ConfigError("the SLU task has no training utterance (keep_labels selects none)")
    labels = {s: [utterance_label(u, cfg.label_field) for u in us] for s, us in splits.items()}
    targets = {s: [tokenizer.encode(target_text(u, cfg)) for u in us] for s, us in splits.items()}
    n_kept = len(train) - sum(1 for i in cfg.rehearsal_ids if i not in chosen)
    make_items = _item_maker(cfg, full)
    teacher = load_teacher(cfg.teacher) if cfg.teacher else None
    if cfg.seq_kd and n_kept < len(train):  # the rehearsal utterances learn what the teacher says about them
        rehearsal_items = make_items(train[n_kept:], targets["train"][n_kept:], "train")
        said = transcribe(teacher, [rehearsal_items[i] for i in range(len(rehearsal_items))], tokenizer,
                          num_beams=cfg.seq_kd_beams, ctc_weight=0.0,
                          max_new_tokens=int(1.5 * max(len(t) for t in targets["train"])) + 10,
                          batch_size=cfg.decode_batch_size)
        targets["train"][n_kept:] = [tokenizer.encode(t) for t in said]
    label_ids = {lab: i for i, lab in enumerate(sorted(train_labels))}
    items = {s: make_items(splits[s], [(t, label_ids.get(lab, -1), s == "train" and i >= n_kept)
                                       for i, (t, lab) in enumerate(zip(targets[s], labels[s]))], s)
             for s in splits}
    longest = int(1.5 * max(len(t) for t in targets["train"])) + 10
    data = SluData(splits, labels, items, tokenizer, cfg, cfg.max_new_tokens or longest)

    def collate(batch: list[SpeechItem]) -> dict[str, Tensor]:
        out = collate_text([SpeechItem(b.audio, b.target[0], b.index) for b in batch], tokenizer.pad_id,
                           tokenizer.eos_id)
        out["label"] = torch.tensor([b.target[1] for b in batch])
        out["rehearsal"] = torch.tensor([b.target[2] for b in batch])
        return out

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        out = model(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
        total, metrics = speech_to_text_loss(model, batch, ce_weight=cfg.ce_weight, ctc_weight=cfg.ctc_weight,
                                             label_smoothing=cfg.label_smoothing, pad_id=tokenizer.pad_id,
                                             eos_id=tokenizer.eos_id, blank_id=tokenizer.ctc_blank_id, outputs=out)
        if teacher is None and not cfg.mm:
            return total, metrics
        extra = continual_terms(unwrap(model), out, teacher, batch, cfg)
        for name, value in extra.items():
            metrics[name] = float(value.detach())
            total = total + getattr(cfg, name) * value
        return total, metrics

    @torch.no_grad()
    def evaluate(model: nn.Module, split: str) -> dict[str, Any]:
        if not len(items[split]):
            return {}
        outputs = data.decode(model, split)
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
                      "labels": sorted(set(labels["train"])),
                      **({"feature_dim": items["train"].upstream.dim} if cfg.upstream else {})})
    return task, data


@register_task(config=SluConfig)
def slu_seq2seq(cfg: SluConfig) -> Task:
    return build_slu(cfg)[0]
