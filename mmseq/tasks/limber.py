"""LiMBeR captioning (``limber_caption``) and generation over :class:`~mmseq.models.limber.LimberModel`.

**Training.** Only the linear map trains, on the causal LM loss of caption tokens: the sequence is
``[image prompts] + prompt tokens + caption tokens + EOS``, and only caption and EOS positions are scored (image
and prompt positions are ignored, as the official labels set them to -100). A batch item's loss is the mean over
its scored tokens, the batch loss the mean over items. LiMBeR's optimiser (for the recipe's run config): AdamW,
lr 8e-4, betas (0.9, 0.95), 100 warmup steps, gradient clipping 1.0.

**Frozen features: cached, or encoded per batch** (``feature_store``). The encoder is frozen, so its features of
an image never change; where they come from:

* ``memory`` (the default): every image of a split is encoded once (on the split's first batch or evaluation, so
  after any ``init_from`` that loads the encoder), kept in memory as one fp32 tensor and stored on disk
  (``<feature_cache>/<split>.<fingerprint>.pt``; the conventions of :mod:`mmseq.data.feature_cache`: atomic write,
  ``torch.load(weights_only=True)``, a read-only folder just means computing again). For splits that fit in memory.
* ``disk``: encoded once the same way, into fp16 shards of ``feature_shard_size`` images
  (:class:`~mmseq.data.feature_cache.ShardedFeatures` in ``<feature_cache>/<split>.<fingerprint>/``), read through
  memory maps a shard at a time when a batch needs its images: memory holds what was read, the disk half of fp32.
  A shard whose images changed is encoded again, the others are kept (an interrupted encoding resumes).
* ``none``: nothing is stored. The data loader's workers read and transform each batch's images and the training
  step runs the frozen encoder on them (no gradients, eval mode): memory is one batch's, and nothing is encoded
  before training. Evaluation encodes its images the same way, batch by batch.

The fingerprint hashes the encoder (its class, feature kind, output width, and every weight) and the image
transform (size, normalisation), so a changed encoder or transform never reads another's features.

**Generation.** Prompts interleave images and text (``[image, "A picture of"]``; few-shot VQA:
``[image, "Q: ... A: ...\\n", image, "Q: ... A:"]``). :class:`LimberDecoding` runs the prompt through the LM once
into its KV cache and then steps one token at a time; it has the interface of :mod:`mmseq.generation.engine`'s
decodings, so :mod:`mmseq.generation.text`'s greedy, beam and nucleus searches drive it. VQA answers are cut at
the first newline or period.

**Evaluation** (val / test): greedy captions of the images after ``caption_prompt``: CIDEr-D and BLEU-4
(:mod:`mmseq.metrics.captioning`), on the synthetic set also shape / colour / count accuracy; CLIPScore when
``clip_score`` names a CLIP (:func:`clip_scorer`); and, where the folder has VQAv2 files for the split, zero-shot
and few-shot VQA accuracy.

**The LM** (``limber_text_lm``): an mmseq decoder-only LM pre-trained on the captions' (and VQA questions') text
only, with a character tokenizer trained on it; its checkpoint carries the tokenizer, which a LiMBeR model built
on it (``limber(lm=<checkpoint>)``) takes over.

**The encoders of the paper's comparison**, one timm backbone trained three ways on the synthetic images:
``limber_encoder_labels`` (attribute labels, binary cross-entropy), ``limber_encoder_contrastive`` (image-caption
pairs, open_clip's ``ClipLoss``) and ``limber_encoder_mim`` (masked patches, SimMIM's L1 on masked pixels only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.atomic import atomic_file
from mmseq.data.feature_cache import ShardedFeatures
from mmseq.data.vision.readers_captions import CocoCaptions, Img2DatasetCaptions, VQAv2
from mmseq.data.vision.objects import CLASS_NAMES
from mmseq.data.vision.readers_common import load_image
from mmseq.data.vision.synth_captions import CAPTION_COLOURS
from mmseq.data.tokenizers import SpeechT5CharTokenizer, pad_id_lists
from mmseq.data.vision.transforms import CenterCrop, Compose, Normalize, Resize
from mmseq.errors import ConfigError, InputError
from mmseq.generation.mode import generation_mode
from mmseq.generation.text import beam_search, greedy_search, sample
from mmseq.checkpoint import load as load_checkpoint
from mmseq.metrics.captioning import CLIPScorer, attribute_accuracy, caption_scores, clip_score, vqa_accuracy
from mmseq.models.compose import DecoderOnlyModel
from mmseq.models.limber import (ContrastiveImageTextEncoder, LabelSupervisedEncoder, LimberModel,
                                 MaskedImageEncoder, patch_mask_pixels)
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.postnets.spectrogram import masked_reconstruction_loss
from mmseq.tasks.base import ListDataset, Ratio, Task, register_task

CAPTION_PROMPT = "A picture of"
BASE_ALPHABET = "abcdefghijklmnopqrstuvwxyz 0123456789 . , : ; ? ! ' - Q A"


# ----------------------------------------------------------------------------------------------- images
def image_transform(model: LimberModel) -> Compose:
    """The encoder's eval transform: shorter side to its input size, centre crop, its normalisation."""
    enc = model.encoder
    return Compose([Resize(enc.image_size), CenterCrop(enc.image_size), Normalize(enc.mean, enc.std)])


def transform_description(model: LimberModel) -> dict[str, Any]:
    enc = model.encoder
    return {"resize": enc.image_size, "crop": enc.image_size, "mean": list(enc.mean), "std": list(enc.std)}


def prepare_images(model: LimberModel, images: Sequence[Any]) -> Tensor:
    """Paths, PIL images, ``uint8`` arrays / tensors ``[H, W, 3]`` or ``[3, H, W]`` -> ``[B, 3, S, S]``
    normalised for the model's encoder."""
    transform = image_transform(model)
    out = []
    for i, image in enumerate(images):
        out.append(transform({"image": as_image_tensor(image, f"image {i}")}, torch.Generator())["image"])
    return torch.stack(out)


def as_image_tensor(image: Any, name: str) -> Tensor:
    """One image as ``uint8 [3, H, W]``: a path, a PIL image, or an array / tensor ``[H, W, 3]`` / ``[3, H, W]``."""
    import numpy as np

    if isinstance(image, (str, Path)):
        return load_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise InputError(f"{name}: expected a path, PIL image, numpy array or tensor, got {type(image).__name__}")
    if image.dim() == 3 and image.shape[-1] == 3 and image.shape[0] != 3:
        image = image.permute(2, 0, 1)
    if image.dim() != 3 or image.shape[0] != 3:
        raise InputError(f"{name}: expected an RGB image [H, W, 3] or [3, H, W], got {list(image.shape)}")
    if image.dtype != torch.uint8:
        if not image.is_floating_point():
            raise InputError(f"{name}: expected uint8 or float pixels in [0, 1], got {image.dtype}")
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return image.contiguous()


# ------------------------------------------------------------------------------------------ feature cache
_MEMORY: dict[tuple[str, str], Tensor] = {}


def encoder_fingerprint(model: LimberModel) -> str:
    """A hash of the encoder (class, feature kind, width, every weight) and the image transform."""
    enc = model.encoder
    digest = hashlib.sha1()
    digest.update(json.dumps({"class": type(enc.backbone).__name__, "features": enc.features,
                              "dim": enc.output_dim, "transform": transform_description(model)},
                             sort_keys=True).encode())
    for name, tensor in sorted(enc.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def compute_features(model: LimberModel, paths: Sequence[str], batch_size: int = 32,
                     device: torch.device | None = None) -> Tensor:
    """Frozen encoder features ``[len(paths), N, C]`` of image files, in order."""
    enc = model.encoder
    home = next(enc.backbone.parameters()).device
    device = device or home
    enc.to(device)
    try:
        pieces = []
        for start in range(0, len(paths), batch_size):
            images = prepare_images(model, paths[start : start + batch_size]).to(device)
            pieces.append(model.encode_images(images).cpu())
    finally:
        enc.to(home)
    return torch.cat(pieces)


def cached_features(model: LimberModel, paths: Sequence[str], cache_file: str | Path | None, batch_size: int = 32,
                    device: torch.device | None = None) -> Tensor:
    """:func:`compute_features`, read from ``cache_file`` when it holds the same images for the same encoder.

    The file name gets the :func:`encoder_fingerprint` (``<stem>.<fingerprint>.pt``), so another encoder or
    transform never reads this one's features; a file for other images (paths, sizes or dates) is recomputed.
    """
    paths = [str(p) for p in paths]
    fingerprint = encoder_fingerprint(model)
    stamps = [[p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]
    if cache_file is None:
        return compute_features(model, paths, batch_size, device)
    cache_file = Path(cache_file)
    disk = cache_file.with_name(f"{cache_file.name}.{fingerprint}.pt")
    key = (str(disk.resolve()), json.dumps(stamps))
    if key in _MEMORY:
        return _MEMORY[key]
    features = None
    if disk.is_file():
        cached = torch.load(disk, weights_only=True)
        if isinstance(cached, dict) and cached.get("images") == stamps:
            features = cached["features"]
    if features is None:
        features = compute_features(model, paths, batch_size, device)
        try:
            disk.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(disk) as f:
                torch.save({"images": stamps, "features": features}, f)
        except OSError:
            pass  # a read-only folder: compute again next time
    _MEMORY[key] = features
    return features


def image_stamps(paths: Sequence[str]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each image: what a cached feature is valid for."""
    stamps = []
    for p in paths:
        stat = Path(p).stat()
        stamps.append([str(p), stat.st_size, stat.st_mtime_ns])
    return stamps


def sharded_features(model: LimberModel, paths: Sequence[str], cache_folder: str | Path, shard_size: int = 4096,
                     batch_size: int = 32, device: torch.device | None = None,
                     dtype: str = "float16") -> ShardedFeatures:
    """:func:`compute_features` stored in shards of ``shard_size`` images on disk and read lazily.

    The folder is ``<cache_folder>.<fingerprint>`` (:func:`encoder_fingerprint`): another encoder or transform
    never reads these features. Shards that are missing, or whose images changed (path, size or date), are
    encoded now; reading a feature later opens only its shard's memory map.
    """
    paths = [str(p) for p in paths]
    cache_folder = Path(cache_folder)
    store = ShardedFeatures(cache_folder.with_name(f"{cache_folder.name}.{encoder_fingerprint(model)}"),
                            image_stamps(paths), shard_size, dtype)
    store.fill(lambda rows: compute_features(model, [paths[i] for i in rows], batch_size, device))
    return store


FEATURE_STORES = ("memory", "disk", "none")


def load_transformed(transform: Compose, paths: Sequence[str]) -> Tensor:
    """``[B, 3, S, S]``: image files through the encoder's :func:`image_transform`."""
    return torch.stack([transform({"image": load_image(p)}, torch.Generator())["image"] for p in paths])


class ImagePieces(Sequence):
    """The prompt pieces of some of a split's images, made when a slice of them is read: :class:`ImageFeatures`
    from a feature store (one read per slice), or normalised image tensors, which :func:`prompt_embeddings` then
    encodes a batch at a time. Evaluation reads its images through this, so it never holds a split's features."""

    def __init__(self, indices: Sequence[int], features: Any = None, paths: Sequence[str] = (),
                 transform: Compose | None = None):
        self.indices, self.features, self.paths, self.transform = list(indices), features, paths, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            rows = self.indices[i]
            if not rows:
                return []
            if self.features is None:
                return list(load_transformed(self.transform, [self.paths[r] for r in rows]))
            return [ImageFeatures(f) for f in self.features[torch.tensor(rows)]]
        return self[i : i + 1 if i != -1 else None][0]


# ------------------------------------------------------------------------------------------------ decoding
@dataclass
class ImageFeatures:
    """An image given by its cached encoder features ``[N, C]`` in a prompt."""

    features: Tensor


def _tokenizer_of(model: nn.Module, tokenizer: Any) -> Any:
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError("LiMBeR needs the LM's tokenizer: pass tokenizer= or set model.tokenizer")
    return tokenizer


def prompt_embeddings(model: LimberModel, tokenizer: Any, prompts: Sequence[Sequence[Any]]) -> tuple[Tensor, Tensor]:
    """Interleaved prompts -> right-padded input embeddings ``[B, T, D]`` and lengths ``[B]``.

    Each prompt is a list of pieces: text (``str``), a normalised image ``[3, S, S]``, or :class:`ImageFeatures`.
    All images of the batch go through the encoder together.
    """
    device = model.prefix.proj.weight.device
    images = [p for prompt in prompts for p in prompt if isinstance(p, Tensor)]
    feats = [p.features for prompt in prompts for p in prompt if isinstance(p, ImageFeatures)]
    image_embeds = iter(model.image_embeddings(images=torch.stack(images).to(device)) if images else [])
    feature_embeds = iter(model.image_embeddings(features=torch.stack(feats).to(device)) if feats else [])
    rows = []
    for i, prompt in enumerate(prompts):
        pieces = []
        for piece in prompt:
            if isinstance(piece, str):
                ids = tokenizer.encode(piece, add_eos=False)
                if ids:
                    pieces.append(model.embed_tokens(torch.tensor([ids], device=device))[0])
            elif isinstance(piece, Tensor):
                pieces.append(next(image_embeds))
            elif isinstance(piece, ImageFeatures):
                pieces.append(next(feature_embeds))
            else:
                raise InputError(f"prompt {i}: a piece must be text, an image tensor or ImageFeatures, "
                                 f"got {type(piece).__name__}")
        if not pieces:
            raise InputError(f"prompt {i} is empty")
        rows.append(torch.cat([p.to(model.lm.weight_dtype) for p in pieces]))
    lengths = torch.tensor([len(r) for r in rows], device=device)
    out = rows[0].new_zeros(len(rows), int(lengths.max()), rows[0].shape[-1])
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


class LimberDecoding:
    """Token decoding of a :class:`LimberModel` after interleaved prompts, with the LM's KV cache.

    The interface of :mod:`mmseq.generation.engine`'s decodings (``first_logits``, ``step``, ``select``,
    ``repeat``), so the searches of :mod:`mmseq.generation.text` run on it. Prompts are right-padded: a row's
    padded positions stay masked, and its new tokens take the positions after its own prompt.
    """

    initial_tokens: list[int] = []

    def __init__(self, model: LimberModel, embeds: Tensor, lengths: Tensor):
        self.model, self.device = model, embeds.device
        self.batch_size = embeds.shape[0]
        self.cache = model.lm.new_cache()
        total = embeds.shape[1]
        self.padding = None if bool((lengths == total).all()) else lengths_to_padding_mask(lengths, total)
        positions = torch.arange(total, device=self.device)[None].expand(self.batch_size, -1)
        # the next-token logits at each row's last prompt step only (the LM head over every step is wasted work)
        keep, row = torch.unique(lengths - 1, return_inverse=True)
        logits = model.lm(embeds, positions, self.padding, self.cache, keep=keep)
        self._first = logits[torch.arange(self.batch_size, device=self.device), row].float()
        self.next_position = lengths.clone()

    def first_logits(self) -> Tensor:
        return self._first

    def step(self, tokens: Tensor) -> Tensor:
        """``tokens [N]`` -> next-token logits ``[N, V]``."""
        embeds = self.model.embed_tokens(tokens[:, None])
        if self.padding is not None:
            self.padding = torch.cat([self.padding, tokens.new_zeros(len(tokens), 1, dtype=torch.bool)], dim=1)
        logits = self.model.lm(embeds, self.next_position[:, None], self.padding, self.cache)
        self.next_position = self.next_position + 1
        return logits[:, -1].float()

    def select(self, index: Tensor, same_inputs: bool = False) -> None:
        self.model.lm.select_cache(self.cache, index)
        self.next_position = self.next_position.index_select(0, index)
        self._first = self._first.index_select(0, index)
        if self.padding is not None:
            self.padding = self.padding.index_select(0, index)
        self.batch_size = len(index)

    def repeat(self, times: int) -> None:
        self.select(torch.arange(self.batch_size, device=self.device).repeat_interleave(times))

    def ctc_log_probs(self) -> Tensor:
        raise InputError("joint CTC scoring needs an encoder-decoder model with a CTC head")


@generation_mode
def generate_text(model: LimberModel, prompts: Sequence[Sequence[Any]], tokenizer: Any = None, *,
                  num_beams: int = 1, do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9,
                  top_k: int = 0, max_new_tokens: int = 30, length_penalty: float = 1.0,
                  generator: torch.Generator | None = None) -> list[str]:
    """Continue interleaved image / text prompts (see :func:`prompt_embeddings`): greedy (default), beam search
    (``num_beams > 1``) or nucleus sampling (``do_sample``: LiMBeR's temperature 0.7, top-p 0.9). Returns the
    new text of each prompt, up to its EOS."""
    if num_beams > 1 and do_sample:
        raise InputError("choose beam search (num_beams > 1) or sampling (do_sample=True), not both")
    tokenizer = _tokenizer_of(model, tokenizer)
    embeds, lengths = prompt_embeddings(model, tokenizer, prompts)
    decoding = LimberDecoding(model, embeds, lengths)
    eos, pad = tokenizer.eos_id, tokenizer.pad_id
    if num_beams > 1:
        rows = beam_search(decoding, num_beams=num_beams, max_new_tokens=max_new_tokens,
                           length_penalty=length_penalty, eos_id=eos, pad_id=pad)
    elif do_sample:
        rows = sample(decoding, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                      generator=generator, eos_id=eos, pad_id=pad)
    else:
        rows = greedy_search(decoding, max_new_tokens=max_new_tokens, eos_id=eos, pad_id=pad)
    texts = []
    for row in rows.tolist():
        if eos in row:
            row = row[: row.index(eos)]
        texts.append(tokenizer.decode(row).strip())
    return texts


def caption_prompts(images: Sequence[Any], prompt: str = CAPTION_PROMPT) -> list[list[Any]]:
    """``[image, prompt]`` per image (a normalised image tensor or :class:`ImageFeatures`)."""
    return [[image, prompt] for image in images]


def vqa_prompts(images: Sequence[Any], questions: Sequence[str],
                shots: Sequence[tuple[Any, str, str]] = ()) -> list[list[Any]]:
    """Per question: the ``shots`` (image, question, answer) as ``[image, "Q: q A: a\\n"]`` then
    ``[image, "Q: question A:"]`` (zero-shot without shots)."""
    if len(images) != len(questions):
        raise InputError(f"{len(images)} images but {len(questions)} questions")
    context: list[Any] = []
    for image, question, answer in shots:
        context += [image, f"Q: {question} A: {answer}\n"]
    return [context + [image, f"Q: {question} A:"] for image, question in zip(images, questions)]


def truncate_answer(text: str) -> str:
    """A generated answer up to its first newline or period, stripped."""
    return text.split("\n", 1)[0].split(".", 1)[0].strip()


# --------------------------------------------------------------------------------------------------- task
@dataclass
class LimberCaptionConfig:
    root: str = "data/synth_captions"  # a COCO-layout folder (annotations/captions_<split>.json, images)
    train_split: str = "train2014"
    val_split: str = "val2014"
    test_split: str = ""  # "" : no test split
    # "coco" (root/annotations/captions_<split>.json, root/<split>/) or "img2dataset": the split is an img2dataset
    # "files" folder (<shard>/<key>.jpg + <key>.txt, e.g. CC3M), relative to root or absolute
    train_format: str = "coco"
    val_format: str = "coco"
    # a COCO-format val split elsewhere: its caption file (e.g. NoCaps' nocaps_val_4500_captions.json, whose
    # images' domain gives per-domain scores; a Karpathy test subset) and its image folder; "" : the layout's own.
    # VQAv2 files of the val split are still looked for under root, their images in this folder.
    val_annotations: str = ""
    val_images: str = ""
    # where the frozen encoder's features come from: "memory" (every image of a split encoded once, held in memory
    # and cached on disk), "disk" (encoded once into fp16 shards on disk, read lazily), "none" (each batch's images
    # encoded in the training step; nothing stored)
    feature_store: str = "memory"
    feature_cache: str = ""  # folder of cached encoder features; "" : <root>/limber_features
    feature_shard_size: int = 4096  # images per shard of the "disk" store
    feature_shard_dtype: str = "float16"  # or "float32"
    encode_batch_size: int = 32
    encode_device: str = ""  # where features are computed once; "" : the model's device
    train_prompt: str = ""  # text between the image and the caption in training (not scored)
    caption_prompt: str = CAPTION_PROMPT
    max_caption_tokens: int = 64
    eval_images: int = 64  # images captioned per evaluation (0: all)
    eval_questions: int = 64  # VQA questions answered per evaluation (0: all; none without VQA files)
    max_new_tokens: int = 30
    num_beams: int = 1
    vqa_shots: list[int] = field(default_factory=lambda: [0])  # VQA evaluated k-shot for each k (train examples)
    # tokens generated per VQA answer (cut at the first newline or period after): VQAv2's answers are 1-3 words,
    # a few BPE tokens; a character LM needs one per character and one for the space ("cylinder" is 9)
    vqa_max_new_tokens: int = 8
    shuffle_pairs: bool = False  # control: every training caption paired with another (fixed random) image
    # CLIPScore of the evaluated captions: "" none; a limber_contrastive_encoder checkpoint folder; or an open_clip
    # model name, its weights from the local file clip_score_weights ("" : random weights)
    clip_score: str = ""
    clip_score_weights: str = ""


CAPTION_FORMATS = ("coco", "img2dataset")


class CaptionSet(Dataset):
    """One item per caption: ``{"image": index into the split's images, "caption": str, "split": name}``; the
    split's image paths, references, synthetic object lists (empty for real COCO) and domains beside them.
    ``format``: ``"coco"`` (a COCO-layout split of ``root``) or ``"img2dataset"`` (``root / split`` is an
    img2dataset ``files`` folder, see :class:`~mmseq.data.vision.readers_captions.Img2DatasetCaptions`).
    ``annotation_file`` / ``image_dir`` replace a COCO split's caption file and image folder. ``shuffle_seed``
    pairs every caption with another image (a fixed random permutation of the images)."""

    def __init__(self, root: Path, split: str, shuffle_seed: int | None = None, format: str = "coco",
                 annotation_file: str = "", image_dir: str = ""):
        if format not in CAPTION_FORMATS:
            raise ConfigError(f"caption split format {format!r}: expected one of {list(CAPTION_FORMATS)}")
        if format == "img2dataset":
            self._from_pairs(Img2DatasetCaptions(root / split, load_images=False), split)
        else:
            reader = CocoCaptions(root, split, annotation_file or None, image_dir or None, per_caption=True,
                                  load_images=False)
            self._from_coco(reader, split)
        if shuffle_seed is not None:
            order = torch.randperm(len(self.image_ids), generator=torch.Generator().manual_seed(shuffle_seed))
            self.items = [{**it, "image": int(order[it["image"]])} for it in self.items]
        # [images, N, C] features, set by the task on first use: a tensor ("memory") or a ShardedFeatures ("disk");
        # None with feature_store "none"
        self.features: Any = None

    def _from_pairs(self, reader: Img2DatasetCaptions, split: str) -> None:
        """One image per pair (img2dataset downloads every url once), its caption the only reference."""
        self.image_ids = list(range(len(reader.pairs)))
        self.paths = [str(path) for _, path, _ in reader.pairs]
        self.objects = [[] for _ in reader.pairs]
        self.references = [[caption] for _, _, caption in reader.pairs]
        self.domains = ["" for _ in reader.pairs]
        self.items = [{"image": i, "caption": caption, "split": split}
                      for i, (_, _, caption) in enumerate(reader.pairs)]

    def _from_coco(self, reader: CocoCaptions, split: str) -> None:
        self.image_ids = list(reader.image_ids)
        index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        self.paths = [str(reader.image_dir / reader.coco.imgs[i]["file_name"]) for i in self.image_ids]
        self.objects = [reader.coco.imgs[i].get("objects", []) for i in self.image_ids]
        self.references = [[a["caption"] for a in reader.coco.imgToAnns[i]] for i in self.image_ids]
        self.domains = [reader.coco.imgs[i].get("domain", "") for i in self.image_ids]
        self.items = [{"image": index[reader.coco.anns[c]["image_id"]], "caption": reader.coco.anns[c]["caption"],
                       "split": split} for c in reader.caption_ids]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def caption_batch(tokenizer: Any, features: Tensor | None, captions: Sequence[str], prompt: str = "",
                  max_caption_tokens: int = 64) -> dict[str, Tensor]:
    """``features [B, N, C]`` as given (None: left out); ``tokens [B, L]`` = prompt + caption + EOS (right-padded
    with the pad id), ``lengths [B]``, and ``scored [B, L]``: True at caption and EOS tokens only."""
    prompt_ids = tokenizer.encode(prompt, add_eos=False) if prompt else []
    rows, scored = [], []
    for caption in captions:
        ids = tokenizer.encode(caption, add_eos=False)[:max_caption_tokens] + [tokenizer.eos_id]
        rows.append(prompt_ids + ids)
        scored.append([False] * len(prompt_ids) + [True] * len(ids))
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (r, s) in enumerate(zip(rows, scored)):
        tokens[i, : len(r)], mask[i, : len(s)] = torch.tensor(r), torch.tensor(s)
    batch = {"tokens": tokens, "lengths": torch.tensor([len(r) for r in rows]), "scored": mask}
    if features is not None:
        batch["features"] = features
    return batch


def limber_caption_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
    """Cross-entropy of the scored (caption + EOS) tokens given the image and the tokens before them: the mean
    over an item's scored tokens, averaged over items; token accuracy over scored tokens."""
    out = model(batch["tokens"], batch["lengths"], features=batch["features"])
    logits, target, scored = out.token_logits().float(), batch["tokens"], batch["scored"]
    token_loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    counts = scored.sum(1).clamp(min=1)
    loss = ((token_loss * scored).sum(1) / counts).mean()
    correct = (logits.argmax(-1) == target) & scored
    return loss, {"token_accuracy": Ratio(float(correct.sum()), float(scored.sum()))}


def _vqa_split(root: Path, split: str, image_dir: str = "") -> VQAv2 | None:
    if not (root / "Questions" / f"v2_OpenEnded_mscoco_{split}_questions.json").is_file():
        return None
    return VQAv2(root, split, image_dir=image_dir or str(root / split), load_images=False)


def _shot_examples(train: CaptionSet | None, root: Path, split: str) -> list[tuple[int, str, str]]:
    """The training split's VQA questions as few-shot examples ``(image index in train, question, answer)``."""
    vqa = _vqa_split(root, split) if train is not None else None
    if vqa is None:
        return []
    index = {image_id: i for i, image_id in enumerate(train.image_ids)}
    return [(index[q["image_id"]], q["question"], vqa.annotations[q["question_id"]]["multiple_choice_answer"])
            for q in vqa.questions if q["image_id"] in index]


class ContrastiveEncoderScorer:
    """CLIPScore with a :class:`~mmseq.models.limber.ContrastiveImageTextEncoder` (``limber_encoder_contrastive``'s
    model, the CLIP trained here): its image tower on the images (its own input transform), its text tower on the
    captions (its tokenizer); the interface of :class:`~mmseq.metrics.captioning.CLIPScorer`."""

    def __init__(self, model: ContrastiveImageTextEncoder, device: str | torch.device = "cpu", weight: float = 2.5,
                 batch_size: int = 64):
        if getattr(model, "tokenizer", None) is None:
            raise ConfigError("the contrastive encoder used for CLIPScore has no tokenizer (a checkpoint of "
                              "limber_encoder_contrastive carries it)")
        self.model, self.device, self.weight, self.batch_size = model.to(device).eval(), device, weight, batch_size
        self.state = {"transform": encoder_input_transform(model)}

    @torch.no_grad()
    def embed(self, images: Sequence[Any], captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Unit-norm image and text embeddings ``[N, E]`` of the pairs (images as paths)."""
        if isinstance(captions, str) or len(images) != len(captions):
            raise InputError(f"{len(images)} images but {1 if isinstance(captions, str) else len(captions)} captions")
        tokenizer, image_out, text_out = self.model.tokenizer, [], []
        for start in range(0, len(images), self.batch_size):
            pixels = load_images(self.state, images[start : start + self.batch_size]).to(self.device)
            tokens, lengths = pad_id_lists([tokenizer.encode(c) for c in captions[start : start + self.batch_size]],
                                           tokenizer.pad_id)
            image_out.append(self.model.encode_image(pixels))
            text_out.append(self.model.encode_text(tokens.to(self.device), lengths.to(self.device)))
        return torch.cat(image_out), torch.cat(text_out)

    def __call__(self, images: Sequence[Any], captions: Sequence[str]) -> float:
        return clip_score(*self.embed(images, captions), weight=self.weight)


def clip_scorer(name: str, weights: str = "", device: str | torch.device = "cpu") -> Any:
    """The CLIPScore scorer ``task_args.clip_score`` names: a ``limber_contrastive_encoder`` checkpoint folder
    (:class:`ContrastiveEncoderScorer`), or an open_clip model name with weights from the local file ``weights``
    (:class:`~mmseq.metrics.captioning.CLIPScorer`; "" keeps random weights)."""
    if check_clip_score(name, weights) == "checkpoint":
        model = load_checkpoint(name)
        if not isinstance(model, ContrastiveImageTextEncoder):
            raise ConfigError(f"task_args.clip_score: {name} is a {type(model).__name__} checkpoint, not a "
                              "limber_contrastive_encoder")
        return ContrastiveEncoderScorer(model, device)
    return CLIPScorer(name, pretrained=weights or None, device=str(device))


def check_clip_score(name: str, weights: str = "") -> str:
    """``"checkpoint"`` or ``"open_clip"``: what ``task_args.clip_score`` names (checked before training, the
    scorer is built at the first evaluation); ConfigError when it is neither or ``weights`` is not a file."""
    if (Path(name) / "config.json").is_file():
        if weights:
            raise ConfigError("task_args.clip_score_weights is for an open_clip model name; the checkpoint "
                              f"{name} holds its own weights")
        return "checkpoint"
    if Path(name).exists():
        raise ConfigError(f"task_args.clip_score: {name} is not an mmseq checkpoint folder (no config.json); name "
                          "an open_clip model and give its weights file as task_args.clip_score_weights")
    import open_clip

    if name not in open_clip.list_models():
        raise ConfigError(f"task_args.clip_score: {name!r} is neither a checkpoint folder nor an open_clip model")
    if weights and not Path(weights).is_file():
        raise ConfigError(f"task_args.clip_score_weights: no file {weights}")
    return "open_clip"


def caption_images(model: LimberModel, tokenizer: Any, images: Sequence[Any], prompt: str = CAPTION_PROMPT,
                   batch_size: int = 16, **generate_kwargs: Any) -> list[str]:
    """The captions the model writes for ``images`` (normalised tensors or :class:`ImageFeatures`) after
    ``prompt``, ``batch_size`` images at a time."""
    captions: list[str] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        captions += generate_text(model, caption_prompts(chunk, prompt), tokenizer, **generate_kwargs)
    return captions


def score_captions(captions: Sequence[str], references: Sequence[Sequence[str]], objects: Sequence[Sequence[dict]] = (),
                   scorer: Any = None, image_paths: Sequence[str] = ()) -> dict[str, float]:
    """CIDEr-D and BLEU-4 of ``captions`` against ``references``, the attribute accuracies when ``objects`` are
    given, and ``clip_score`` when a CLIPScore ``scorer`` and the images' files (``image_paths``) are."""
    captions = list(captions)
    metrics = caption_scores(captions, references)
    if objects and all(objects):
        metrics.update(attribute_accuracy(captions, objects))
    if scorer is not None:
        if len(image_paths) != len(captions):
            raise InputError(f"CLIPScore needs the {len(captions)} images' files, got {len(image_paths)} paths")
        metrics["clip_score"] = scorer(list(image_paths), captions)
    return metrics


def evaluate_captions(model: LimberModel, tokenizer: Any, images: Sequence[Any], references: Sequence[Sequence[str]],
                      objects: Sequence[Sequence[dict]] = (), prompt: str = CAPTION_PROMPT, batch_size: int = 16,
                      scorer: Any = None, image_paths: Sequence[str] = (), **generate_kwargs: Any) -> dict[str, float]:
    """:func:`caption_images` then :func:`score_captions`."""
    captions = caption_images(model, tokenizer, images, prompt, batch_size, **generate_kwargs)
    return score_captions(captions, references, objects, scorer, image_paths)


@register_task(config=LimberCaptionConfig)
def limber_caption(cfg: LimberCaptionConfig) -> Task:
    """LiMBeR's image-caption training on a COCO-layout folder (COCO, or ``mmseq data synth captions``); the
    train or val split may instead be an img2dataset ``files`` folder (``task_args.train_format`` /
    ``val_format``: ``img2dataset``), as CC3M is usually downloaded."""
    root = Path(cfg.root)
    if cfg.max_caption_tokens < 1:
        raise ConfigError(f"task_args.max_caption_tokens must be >= 1, got {cfg.max_caption_tokens}")
    names = {"train": cfg.train_split, "val": cfg.val_split, "test": cfg.test_split}
    formats = {"train": cfg.train_format, "val": cfg.val_format, "test": "coco"}
    for key in ("train", "val"):
        if formats[key] not in CAPTION_FORMATS:
            raise ConfigError(f"task_args.{key}_format: {formats[key]!r} is not one of {list(CAPTION_FORMATS)}")
    if (cfg.val_annotations or cfg.val_images) and cfg.val_format != "coco":
        raise ConfigError("task_args.val_annotations / val_images are for a COCO-format val split")
    given = {"train": ("", ""), "val": (cfg.val_annotations, cfg.val_images), "test": ("", "")}
    splits = {k: CaptionSet(root, v, 0 if (k == "train" and cfg.shuffle_pairs) else None, formats[k], *given[k])
              if v else None for k, v in names.items()}
    if any(k < 0 for k in cfg.vqa_shots):
        raise ConfigError(f"task_args.vqa_shots must be >= 0, got {cfg.vqa_shots}")
    if cfg.vqa_max_new_tokens < 1:
        raise ConfigError(f"task_args.vqa_max_new_tokens must be >= 1, got {cfg.vqa_max_new_tokens}")
    if cfg.feature_store not in FEATURE_STORES:
        raise ConfigError(f"task_args.feature_store: {cfg.feature_store!r} is not one of {list(FEATURE_STORES)}")
    if cfg.feature_shard_size < 1:
        raise ConfigError(f"task_args.feature_shard_size must be >= 1, got {cfg.feature_shard_size}")
    if cfg.feature_shard_dtype not in ("float16", "float32"):
        raise ConfigError(f"task_args.feature_shard_dtype: {cfg.feature_shard_dtype!r} is not float16 or float32")
    per_batch = cfg.feature_store == "none"
    cache_dir = Path(cfg.feature_cache) if cfg.feature_cache else root / "limber_features"
    if cfg.clip_score:
        check_clip_score(cfg.clip_score, cfg.clip_score_weights)
    state: dict[str, Any] = {}

    def prepare_model(model: nn.Module) -> None:
        if not isinstance(model, LimberModel):
            raise ConfigError(f"limber_caption trains a LiMBeR model, got {type(model).__name__}")
        state["tokenizer"] = _tokenizer_of(model, None)
        state["transform"] = image_transform(model)  # fixed by the encoder's spec: init_from does not change it

    def features_of(model: nn.Module, key: str) -> Any:
        """The split's frozen features (a tensor or a lazy store, indexable by image), computed (or read from the
        disk cache) on first use: after the loop's ``init_from``, which runs after ``prepare_model`` and may load
        the encoder's weights. None with ``feature_store`` none."""
        data = splits[key]
        if data.features is None and not per_batch:
            model = getattr(model, "module", model)  # DDP
            device = torch.device(cfg.encode_device) if cfg.encode_device else next(model.parameters()).device
            # the file is named after the split's last path part (an img2dataset split may be an absolute path)
            name = cache_dir / Path(names[key]).name
            if cfg.feature_store == "disk":
                data.features = sharded_features(model, data.paths, name, cfg.feature_shard_size,
                                                 cfg.encode_batch_size, device, cfg.feature_shard_dtype)
            else:
                data.features = cached_features(model, data.paths, name, cfg.encode_batch_size, device)
        return data.features

    def pieces(model: nn.Module, key: str, indices: Sequence[int]) -> ImagePieces:
        """Prompt pieces of the split's images ``indices`` (features, or images to encode per batch)."""
        data = splits[key]
        return ImagePieces(indices, features_of(model, key), data.paths, state.get("transform"))

    split_keys = {names[k]: k for k, data in splits.items() if data is not None}
    split_codes = {k: i for i, k in enumerate(splits)}

    def collate(items: list[dict[str, Any]]) -> dict[str, Tensor]:
        if "tokenizer" not in state:
            raise ConfigError("limber_caption needs its prepare_model run on the model before batching")
        batch = caption_batch(state["tokenizer"], None, [it["caption"] for it in items], cfg.train_prompt,
                              cfg.max_caption_tokens)
        batch["image"] = torch.tensor([it["image"] for it in items])
        batch["split"] = torch.tensor(split_codes[split_keys[items[0]["split"]]])
        if per_batch:  # read and transformed here, in the data loader's workers; encoded in the step
            data = splits[split_keys[items[0]["split"]]]
            batch["images"] = load_transformed(state["transform"], [data.paths[it["image"]] for it in items])
        return batch

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
        if per_batch:
            if "images" not in batch:
                raise InputError("limber_caption with feature_store none needs the batch's images (its collate)")
            # the frozen encoder (no gradients, eval mode) on this batch's images only
            features = getattr(model, "module", model).encode_images(batch["images"])
        else:
            key = list(splits)[int(batch["split"])]
            features = features_of(model, key)[batch["image"].cpu()].to(batch["tokens"].device)
        batch = {k: v for k, v in batch.items() if k != "images"}
        return limber_caption_loss(model, {**batch, "features": features})

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        data = splits[split]
        if data is None:
            return {}
        count = len(data.paths) if cfg.eval_images <= 0 else min(cfg.eval_images, len(data.paths))
        images = pieces(model, split, range(count))
        generate = {"max_new_tokens": cfg.max_new_tokens, "num_beams": cfg.num_beams}
        if cfg.clip_score and "scorer" not in state:  # built once, on the evaluation device
            state["scorer"] = clip_scorer(cfg.clip_score, cfg.clip_score_weights, next(model.parameters()).device)
        captions = caption_images(model, state["tokenizer"], images, cfg.caption_prompt, **generate)
        scorer = state.get("scorer")
        metrics = score_captions(captions, data.references[:count], data.objects[:count], scorer, data.paths[:count])
        domains = sorted(set(data.domains[:count]) - {""})
        if len(domains) > 1:  # the compositional split: each domain's images scored on their own
            for domain in domains:
                keep = [i for i in range(count) if data.domains[i] == domain]
                part = score_captions([captions[i] for i in keep], [data.references[i] for i in keep],
                                      [data.objects[i] for i in keep] if data.objects[0] else (), scorer,
                                      [data.paths[i] for i in keep])
                metrics.update({f"{k}/{domain}": v for k, v in part.items()})
        vqa = _vqa_split(root, names[split], given[split][1])
        if vqa is not None:
            metrics.update(evaluate_vqa(model, split, vqa))
        return metrics

    def evaluate_vqa(model: nn.Module, split: str, vqa: VQAv2) -> dict[str, float]:
        data = splits[split]
        index = {image_id: i for i, image_id in enumerate(data.image_ids)}
        questions = [q for q in vqa.questions if q["image_id"] in index]
        questions = questions if cfg.eval_questions <= 0 else questions[: cfg.eval_questions]
        examples = _shot_examples(splits["train"], root, names["train"]) if max(cfg.vqa_shots, default=0) else []
        metrics = {}
        for shots in cfg.vqa_shots:
            if shots and not examples:
                continue
            scores = []
            for start in range(0, len(questions), 16):
                chunk = questions[start : start + 16]
                answers = []
                for i, q in enumerate(chunk):  # each question gets its own shots (a fixed rotation of the examples)
                    first = (start + i) * shots
                    shot = [examples[(first + j) % len(examples)] for j in range(shots)]
                    shot_images = pieces(model, "train", [row for row, _, _ in shot])[:] if shot else []
                    context = [(image, question, answer) for image, (_, question, answer) in zip(shot_images, shot)]
                    image = pieces(model, split, [index[q["image_id"]]])[:]
                    answers.append(vqa_prompts(image, [q["question"]], context)[0])
                texts = generate_text(model, answers, state["tokenizer"], max_new_tokens=cfg.vqa_max_new_tokens)
                for q, answer in zip(chunk, texts):
                    humans = [a["answer"] for a in vqa.annotations[q["question_id"]]["answers"]]
                    scores.append(vqa_accuracy(truncate_answer(answer), humans))
            if scores:
                metrics[f"vqa_accuracy_{shots}shot"] = 100 * sum(scores) / len(scores)
        return metrics

    return Task(train_set=splits["train"], val_set=splits["val"], test_set=splits["test"], collate=collate,
                loss=loss, evaluate=evaluate, prepare_model=prepare_model,
                batch_size_of=lambda batch: len(batch["tokens"]),
                info={"caption_prompt": cfg.caption_prompt, "train_prompt": cfg.train_prompt})


# ------------------------------------------------------------------------------- the LM's text pre-training
@dataclass
class LimberTextLMConfig:
    root: str = "data/synth_captions"  # a COCO-layout folder, as for limber_caption
    train_split: str = "train2014"
    val_split: str = "val2014"
    questions: bool = True  # also "Q: <question> A: <answer>" texts from the split's VQAv2 files, where present
    # also chains of 2..qa_chains of those question-answer texts, every one but the last ended by a newline: the
    # text of a few-shot VQA prompt (vqa_prompts) without its images, so the LM has seen that format and length
    # (every question once in a chain, beside its text alone); 0: none
    qa_chains: int = 0
    seed: int = 0  # the chains' grouping
    max_tokens: int = 128


def split_texts(root: Path, split: str, questions: bool, qa_chains: int = 0,
                seed: int = 0) -> list[str | tuple[str, ...]]:
    """A split's captions, and with ``questions`` its VQA questions as ``"Q: <question> A: <answer>"`` (the
    prompt format of :func:`vqa_prompts`, answered with the annotators' most common answer). With ``qa_chains``
    >= 2 the questions, in a seeded random order, are also cut into chains of 2 to ``qa_chains`` (the last chain
    may be shorter), each a tuple of pieces ``("Q: q1 A: a1\\n", ..., "Q: qk A: ak")``: a few-shot prompt's text
    pieces, which :func:`text_lm_rows` encodes one by one as :func:`prompt_embeddings` does."""
    if qa_chains == 1 or qa_chains < 0:
        raise ConfigError(f"qa_chains={qa_chains}: 0 (no chains) or the longest chain, at least 2")
    texts: list[str | tuple[str, ...]] = [text for refs in CaptionSet(root, split).references for text in refs]
    vqa = _vqa_split(root, split) if questions else None
    if vqa is not None:
        pairs = [f"Q: {q['question']} A: {vqa.annotations[q['question_id']]['multiple_choice_answer']}"
                 for q in vqa.questions]
        texts += pairs
        if qa_chains:
            generator = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(pairs), generator=generator).tolist()
            start = 0
            while start < len(order):
                size = int(torch.randint(2, qa_chains + 1, (), generator=generator))
                chain = [pairs[i] for i in order[start : start + size]]
                texts.append(tuple(f"{text}\n" for text in chain[:-1]) + (chain[-1],))
                start += size
    return texts


def text_lm_rows(tokenizer: SpeechT5CharTokenizer, texts: Sequence[str | tuple[str, ...]],
                 max_tokens: int) -> list[list[int]]:
    """``BOS text EOS`` ids per text, cut to ``max_tokens``; a tuple of pieces is encoded piece by piece."""
    rows = []
    for text in texts:
        pieces = (text,) if isinstance(text, str) else text
        ids = [i for piece in pieces for i in tokenizer.encode(piece, add_eos=False)] + [tokenizer.eos_id]
        rows.append([tokenizer.bos_id] + ids[: max_tokens - 1])
    return rows


def text_lm_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
    """Next-token cross-entropy over ``BOS text EOS`` rows (the mean over every real target token)."""
    tokens, lengths = batch["tokens"], batch["lengths"]
    logits = model(tokens, lengths).outputs[:, :-1].float()
    target = tokens[:, 1:]
    valid = torch.arange(target.shape[1], device=target.device)[None] < (lengths[:, None] - 1)
    loss = F.cross_entropy(logits[valid], target[valid])
    correct = (logits.argmax(-1) == target) & valid
    return loss, {"token_accuracy": Ratio(float(correct.sum()), float(valid.sum()))}


@register_task(config=LimberTextLMConfig)
def limber_text_lm(cfg: LimberTextLMConfig) -> Task:
    """Pre-train an mmseq decoder-only LM on the captions' (and questions') text only, with a character
    tokenizer trained on the training split; the LM LiMBeR then keeps frozen (``limber(lm=<its checkpoint>)``)."""
    root = Path(cfg.root)
    train = split_texts(root, cfg.train_split, cfg.questions, cfg.qa_chains, cfg.seed)
    val = split_texts(root, cfg.val_split, cfg.questions, cfg.qa_chains, cfg.seed) if cfg.val_split else None
    # the lower-case alphabet, digits and punctuation always, so the vocabulary size does not depend on the split;
    # newlines kept (few-shot prompts end every shot with one; answers are cut at the first one generated)
    tokenizer = SpeechT5CharTokenizer.train([t for t in train if isinstance(t, str)] + [CAPTION_PROMPT, BASE_ALPHABET],
                                            symbols=["\n"])

    def prepare_model(model: nn.Module) -> None:
        if not isinstance(model, DecoderOnlyModel):
            raise ConfigError(f"limber_text_lm trains a decoder-only LM, got {type(model).__name__}")
        size = model.token_prenet.vocab_size
        if size != len(tokenizer):
            raise ConfigError(f"the captions' character vocabulary has {len(tokenizer)} tokens but the LM has "
                              f"{size}; set model_args.vocab_size={len(tokenizer)}")
        model.tokenizer = tokenizer

    def collate(texts: list[str | tuple[str, ...]]) -> dict[str, Tensor]:
        tokens, lengths = pad_id_lists(text_lm_rows(tokenizer, texts, cfg.max_tokens), tokenizer.pad_id)
        return {"tokens": tokens, "lengths": lengths}

    return Task(train_set=ListDataset(train), val_set=None if val is None else ListDataset(val), collate=collate,
                loss=text_lm_loss, prepare_model=prepare_model,
                batch_size_of=lambda batch: len(batch["tokens"]), info={"vocab_size": len(tokenizer)})


# ------------------------------------------------------------------- the label-supervised image encoder
@dataclass
class LimberEncoderLabelsConfig:
    root: str = "data/synth_captions"
    train_split: str = "train2014"
    val_split: str = "val2014"


def attribute_labels(objects: Sequence[dict]) -> Tensor:
    """Multi-hot ``[24]``: the colours present (8), the shapes present (12), the object count 1-4 (one-hot)."""
    target = torch.zeros(len(CAPTION_COLOURS) + len(CLASS_NAMES) + 4)
    for obj in objects:
        target[CAPTION_COLOURS.index(obj["colour"])] = 1
        target[len(CAPTION_COLOURS) + CLASS_NAMES.index(obj["shape"])] = 1
    target[len(CAPTION_COLOURS) + len(CLASS_NAMES) + min(max(len(objects), 1), 4) - 1] = 1
    return target


def encoder_input_transform(model: nn.Module) -> Compose:
    """The input transform of an encoder trained here (``image_size``, ``mean``, ``std``): the one LiMBeR's
    frozen timm encoder of the same backbone applies (:func:`image_transform`)."""
    return Compose([Resize(model.image_size), CenterCrop(model.image_size), Normalize(model.mean, model.std)])


def load_images(state: dict[str, Any], paths: Sequence[str]) -> Tensor:
    """``[B, 3, S, S]``: the images at ``paths`` through ``state["transform"]`` (set by the task's prepare_model)."""
    if "transform" not in state:
        raise ConfigError("the encoder task needs its prepare_model run on the model before batching")
    return torch.stack([state["transform"]({"image": load_image(p)}, torch.Generator())["image"] for p in paths])


@register_task(config=LimberEncoderLabelsConfig)
def limber_encoder_labels(cfg: LimberEncoderLabelsConfig) -> Task:
    """Train an image encoder on the synthetic images' class labels (colours, shapes, count; binary cross-entropy):
    the label-supervised encoder LiMBeR then keeps frozen."""
    root = Path(cfg.root)

    def items(split: str) -> ListDataset:
        data = CaptionSet(root, split)
        if not all(data.objects):
            raise ConfigError(f"limber_encoder_labels needs the synthetic captions' object lists; {split} has none")
        return ListDataset([(p, attribute_labels(o)) for p, o in zip(data.paths, data.objects)])

    train, val = items(cfg.train_split), items(cfg.val_split) if cfg.val_split else None
    state: dict[str, Compose] = {}

    def prepare_model(model: nn.Module) -> None:
        if not isinstance(model, LabelSupervisedEncoder):
            raise ConfigError(f"limber_encoder_labels trains a limber_label_encoder, got {type(model).__name__}")
        state["transform"] = encoder_input_transform(model)

    def collate(batch: list[tuple[str, Tensor]]) -> dict[str, Tensor]:
        return {"images": load_images(state, [p for p, _ in batch]), "labels": torch.stack([t for _, t in batch])}

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
        logits = model(batch["images"]).float()
        value = F.binary_cross_entropy_with_logits(logits, batch["labels"])
        correct = ((logits > 0) == (batch["labels"] > 0.5)).all(-1)
        return value, {"exact_match": Ratio(float(correct.sum()), float(len(correct)))}

    return Task(train_set=train, val_set=val, collate=collate, loss=loss, prepare_model=prepare_model,
                batch_size_of=lambda batch: len(batch["labels"]))


# ----------------------------------------------------------- the image-text contrastive encoder (CLIP's role)
@dataclass
class LimberEncoderContrastiveConfig:
    root: str = "data/synth_captions"
    train_split: str = "train2014"
    val_split: str = "val2014"
    max_tokens: int = 96  # characters of a caption the text tower reads


def clip_loss(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> Tensor:
    """open_clip's ``ClipLoss``: the mean of the image-to-text and text-to-image cross-entropies of the scaled
    cosine similarities, the i-th image paired with the i-th text (single process)."""
    from open_clip.loss import ClipLoss

    return ClipLoss()(image_embeds.float(), text_embeds.float(), logit_scale.float())


def image_caption_items(data: CaptionSet) -> list[tuple[str, list[str]]]:
    """One item per image: its path and all its captions (a batch then never holds one image twice)."""
    return [(path, refs) for path, refs in zip(data.paths, data.references)]


@register_task(config=LimberEncoderContrastiveConfig)
def limber_encoder_contrastive(cfg: LimberEncoderContrastiveConfig) -> Task:
    """Train an image encoder contrastively against a text tower on the image-caption pairs (CLIP's recipe):
    the language-supervised encoder LiMBeR then keeps frozen. Every image appears once per epoch, with one of
    its captions drawn at random in training (the first in evaluation); loss: :func:`clip_loss`."""
    root = Path(cfg.root)
    train = CaptionSet(root, cfg.train_split)
    val = CaptionSet(root, cfg.val_split) if cfg.val_split else None
    # the tokenizer of limber_text_lm, on the captions only
    tokenizer = SpeechT5CharTokenizer.train([t for refs in train.references for t in refs]
                                            + [CAPTION_PROMPT, BASE_ALPHABET])
    state: dict[str, Any] = {}

    def prepare_model(model: nn.Module) -> None:
        if not isinstance(model, ContrastiveImageTextEncoder):
            raise ConfigError(f"limber_encoder_contrastive trains a limber_contrastive_encoder, got "
                              f"{type(model).__name__}")
        size = model.token_prenet.vocab_size
        if size != len(tokenizer) or model.pad_id != tokenizer.pad_id:
            raise ConfigError(f"the captions' character vocabulary has {len(tokenizer)} tokens (pad id "
                              f"{tokenizer.pad_id}) but the text tower has {size} (pad id {model.pad_id}); set "
                              f"model_args.vocab_size={len(tokenizer)} model_args.pad_id={tokenizer.pad_id}")
        model.tokenizer = tokenizer
        state["transform"] = encoder_input_transform(model)

    def collate(items: list[tuple[str, list[str]]]) -> dict[str, Tensor]:
        captions = [tokenizer.encode(c)[: cfg.max_tokens] for _, refs in items for c in refs]
        tokens, lengths = pad_id_lists(captions, tokenizer.pad_id)
        counts = torch.tensor([len(refs) for _, refs in items])
        return {"images": load_images(state, [p for p, _ in items]), "tokens": tokens, "lengths": lengths,
                "caption_counts": counts}

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
        # one caption per image: drawn from the global RNG in training (checkpointed by the loop), the first one
        # in evaluation, so every validation scores the same pairs
        counts = batch["caption_counts"]
        first = torch.cumsum(counts, 0) - counts
        pick = (torch.rand(len(counts)) * counts.cpu()).long().to(counts.device) if model.training else 0
        rows = first + pick
        out = model(batch["images"], batch["tokens"][rows], batch["lengths"][rows])
        value = clip_loss(out.image_embeds, out.text_embeds, out.logit_scale)
        similarity = out.image_embeds @ out.text_embeds.T
        target = torch.arange(len(rows), device=similarity.device)
        return value, {"image_to_text_top1": Ratio(float((similarity.argmax(1) == target).sum()), float(len(rows))),
                       "logit_scale": float(out.logit_scale.detach())}

    return Task(train_set=ListDataset(image_caption_items(train)),
                val_set=None if val is None else ListDataset(image_caption_items(val)), collate=collate, loss=loss,
                prepare_model=prepare_model, batch_size_of=lambda batch: len(batch["images"]),
                info={"vocab_size": len(tokenizer), "pad_id": tokenizer.pad_id})


# ------------------------------------------------------------ the masked-image-modelling encoder (BEiT's role)
@dataclass
class LimberEncoderMIMConfig:
    root: str = "data/synth_captions"
    train_split: str = "train2014"
    val_split: str = "val2014"
    mask_ratio: float = 0.6  # share of the patches masked in every image (SimMIM: 0.6)
    loss: str = "l1"  # "l1" (SimMIM) or "mse", over the masked pixels only


def random_patch_mask(batch_size: int, grid_size: int, ratio: float,
                      generator: torch.Generator | None = None) -> Tensor:
    """``[B, G, G]`` bool, exactly ``round(ratio * G^2)`` patches True (masked) in every image, uniformly at
    random (SimMIM's mask generator at one patch per mask cell)."""
    count = round(ratio * grid_size * grid_size)
    order = torch.rand(batch_size, grid_size * grid_size, generator=generator).argsort(1)
    mask = torch.zeros(batch_size, grid_size * grid_size, dtype=torch.bool)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(batch_size, grid_size, grid_size)


def masked_pixel_loss(prediction: Tensor, images: Tensor, mask: Tensor, patch_size: int, kind: str = "l1") -> Tensor:
    """SimMIM's loss: the mean L1 (or squared) error between ``prediction`` and the (normalised) ``images``, both
    ``[B, 3, S, S]``, over the pixels of masked patches only (``mask [B, S / p, S / p]``, True = masked)."""
    pixels = patch_mask_pixels(mask, patch_size).expand_as(images)
    return masked_reconstruction_loss(prediction, images, pixels, kind)


@register_task(config=LimberEncoderMIMConfig)
def limber_encoder_mim(cfg: LimberEncoderMIMConfig) -> Task:
    """Train an image encoder by masked image modelling (SimMIM on the CNN: random patches masked, their pixels
    predicted): the self-supervised encoder LiMBeR then keeps frozen. Uses the images only."""
    if not 0 < cfg.mask_ratio < 1:
        raise ConfigError(f"task_args.mask_ratio must be in (0, 1), got {cfg.mask_ratio}")
    if cfg.loss not in ("l1", "mse"):
        raise ConfigError(f"task_args.loss must be 'l1' or 'mse', got {cfg.loss!r}")
    root = Path(cfg.root)
    train = ListDataset(CaptionSet(root, cfg.train_split).paths)
    val = ListDataset(CaptionSet(root, cfg.val_split).paths) if cfg.val_split else None
    state: dict[str, Any] = {}

    def prepare_model(model: nn.Module) -> None:
        if not isinstance(model, MaskedImageEncoder):
            raise ConfigError(f"limber_encoder_mim trains a limber_mim_encoder, got {type(model).__name__}")
        state["transform"] = encoder_input_transform(model)
        state["grid"], state["patch"] = model.grid_size, model.patch_size

    def collate(paths: list[str]) -> dict[str, Tensor]:
        return {"images": load_images(state, paths)}

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
        images = batch["images"]
        # masks from the global RNG in training (checkpointed by the loop); in evaluation from a generator seeded
        # by the batch, so every validation scores the same masked patches
        generator = None if model.training else torch.Generator().manual_seed(len(images))
        mask = random_patch_mask(len(images), state["grid"], cfg.mask_ratio, generator).to(images.device)
        prediction = model(images, mask).float()
        value = masked_pixel_loss(prediction, images, mask, state["patch"], cfg.loss)
        pixels = patch_mask_pixels(mask, state["patch"]).expand_as(images)
        visible = F.l1_loss(prediction[~pixels], images[~pixels]).item()
        return value, {"visible_l1": visible}

    return Task(train_set=train, val_set=val, collate=collate, loss=loss, prepare_model=prepare_model,
                batch_size_of=lambda batch: len(batch["images"]))
