"""Captioning and VQA metrics: CIDEr-D and BLEU-4 as coco-caption computes them, CLIPScore with an open_clip model
the user names, VQAv2 accuracy, and per-attribute accuracy of captions of the synthetic captioned images.

CIDEr-D and BLEU-4 are pycocoevalcap's own scorers (``Cider``: df from the scored images' references, sigma 6,
clipped tf-idf, x10; ``Bleu(4)``: corpus-level, closest reference length). Their inputs are PTB-tokenised text, and
pycocoevalcap's ``PTBTokenizer`` runs Stanford CoreNLP under Java; :func:`ptb_tokenize` is a pure-Python
equivalent that needs no Java:

1. lower-case; newlines become spaces;
2. split clitics off as PTB does (``dog's`` -> ``dog 's``, ``don't`` -> ``do n't``, also ``'re 've 'll 'd 'm``);
3. tokens are numbers with inner ``.`` / ``,`` (``3.5``, ``1,000``), words and numbers joined by ``-``, ``&`` or
   ``/`` (``1,000-year-old``, ``at&t``, ``and/or``), ``...``, ``--``, and single non-word characters;
4. brackets become PTB's escapes ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` (pycocoevalcap's list names them in upper
   case, so after PTB's ``-lowerCase`` they are *kept*);
5. drop the tokens pycocoevalcap drops after PTB (``'' ' `` ` . ? ! , : - -- ... ;``) and ``"`` (which PTB turns
   into quote tokens).

Other characters stay tokens of their own (``$``, ``%``, a lone ``/`` or ``&``). The one case PTB treats otherwise:
abbreviation periods (``p.m.``, ``ft.``: PTB keeps them inside the token, here they are dropped). The test suite
checks this against the Java tokenizer on COCO-style captions where Java is installed, and the scores against
pycocoevalcap's scorers on pre-tokenised text everywhere.

VQA accuracy is the official VQAv2 formula with its answer normalisation, from
:mod:`mmseq.data.vision.vqa_eval` (re-exported here).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmseq.data.vision.synth_captions import CAPTION_COLOURS, COLOUR_SYNONYMS, NUMBER_WORDS, SHAPE_WORDS
from mmseq.data.vision.vqa_eval import normalize_answer, vqa_accuracy, vqa_evaluate
from mmseq.errors import InputError

__all__ = ["PTB_DROPPED_TOKENS", "CLIPScorer", "attribute_accuracy", "bleu4", "caption_scores", "cider_d",
           "clip_score", "normalize_answer", "ptb_tokenize", "vqa_accuracy", "vqa_evaluate"]

# What pycocoevalcap removes after PTB tokenisation, plus the raw characters PTB escapes into removed tokens.
PTB_DROPPED_TOKENS = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", '"'})
# PTB writes brackets as -LRB- etc.; lower-cased, they no longer match pycocoevalcap's upper-case list and stay.
PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CLITIC_NT = re.compile(r"(\w)n't\b")
_CLITIC = re.compile(r"(\w)'(s|re|ve|ll|d|m)\b")
_PART = r"(?:\d+(?:[.,]\d+)+|\w+)"
_TOKEN = re.compile(rf"n't\b|'(?:s|re|ve|ll|d|m)\b|{_PART}(?:[-&/]{_PART})*|\.\.\.|--|[^\w\s]")


def ptb_tokenize(text: str) -> str:
    """``text`` as space-joined tokens, the Java-free equivalent of pycocoevalcap's PTB step (module notes)."""
    text = text.replace("\n", " ").lower()
    text = _CLITIC.sub(r"\1 '\2", _CLITIC_NT.sub(r"\1 n't", text))
    tokens = (PTB_BRACKETS.get(t, t) for t in _TOKEN.findall(text))
    return " ".join(t for t in tokens if t not in PTB_DROPPED_TOKENS)


def _coco_inputs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]):
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise InputError("captions and references must be lists (one hypothesis and one list of references per image)")
    if len(hypotheses) != len(references):
        raise InputError(f"{len(hypotheses)} captions but {len(references)} reference lists")
    if not hypotheses:
        raise InputError("no captions to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise InputError(f"image {i}: references must be a non-empty list of captions")
    gts = {i: [ptb_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(hypotheses)}
    return gts, res


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (coco-caption reports it as "CIDEr") of one caption per image against its references."""
    from pycocoevalcap.cider.cider import Cider

    gts, res = _coco_inputs(hypotheses, references)
    return float(Cider().compute_score(gts, res)[0])


def bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 as coco-caption's ``Bleu(4)`` (closest reference length)."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _coco_inputs(hypotheses, references)
    with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its length statistics
        scores, _ = Bleu(4).compute_score(gts, res)
    return float(scores[3])


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"cider_d": ..., "bleu4": ...}`` of the same captions."""
    return {"cider_d": cider_d(hypotheses, references), "bleu4": bleu4(hypotheses, references)}


# ---------------------------------------------------------------------------------------------------- CLIPScore
def clip_score(image_features: Any, text_features: Any, weight: float = 2.5) -> float:
    """Mean CLIPScore (Hessel et al. 2021) of paired embeddings ``[N, E]``: ``weight * max(cos(image, text), 0)``
    per pair, ``weight`` 2.5 as in the paper (torchmetrics' ``CLIPScore`` reports ``100 * max(cos, 0)``)."""
    import torch

    image_features, text_features = torch.as_tensor(image_features).float(), torch.as_tensor(text_features).float()
    if image_features.dim() != 2 or image_features.shape != text_features.shape:
        raise InputError(f"clip_score needs paired [N, E] embeddings, got {list(image_features.shape)} and "
                         f"{list(text_features.shape)}")
    cos = torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
    return float((weight * cos.clamp(min=0)).mean())


class CLIPScorer:
    """CLIPScore of captions against their images with an open_clip model the user names, weights from a local
    file: ``CLIPScorer("ViT-B-32", pretrained="/models/clip_vit_b32.pt")`` (None: random weights, for tests).

    ``scorer(images, captions)``: images as paths or PIL images, one caption each; returns the mean score.
    """

    def __init__(self, name: str, pretrained: str | None = None, device: str = "cpu", weight: float = 2.5):
        import open_clip

        self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained,
                                                                               device=device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.device, self.weight = device, weight

    def embed(self, images: Sequence[Any], captions: Sequence[str]):
        """Image and text embeddings ``[N, E]`` of the pairs."""
        import torch
        from PIL import Image

        if isinstance(captions, str) or len(images) != len(captions):
            raise InputError(f"{len(images)} images but {1 if isinstance(captions, str) else len(captions)} captions")
        pixels = []
        for i, image in enumerate(images):
            if not hasattr(image, "convert"):
                try:
                    image = Image.open(image)
                except (OSError, TypeError) as e:
                    raise InputError(f"image {i}: cannot read {image!r} ({e})") from None
            pixels.append(self.preprocess(image.convert("RGB")))
        with torch.no_grad():
            image_features = self.model.encode_image(torch.stack(pixels).to(self.device))
            text_features = self.model.encode_text(self.tokenizer(list(captions)).to(self.device))
        return image_features, text_features

    def __call__(self, images: Sequence[Any], captions: Sequence[str]) -> float:
        return clip_score(*self.embed(images, captions), weight=self.weight)


# --------------------------------------------------------------------------------- synthetic-caption attributes
def _phrases() -> tuple[dict[tuple[str, ...], str], dict[tuple[str, ...], str], dict[tuple[str, ...], bool]]:
    """Word sequences -> the colour / shape they name, and whether a shape phrase is plural."""
    colours = {(c,): c for c in CAPTION_COLOURS}
    colours.update({(s,): c for c, syns in COLOUR_SYNONYMS.items() for s in syns})
    shapes, plural = {}, {}
    for cls, forms in SHAPE_WORDS.items():
        for singular, many in forms:
            shapes[tuple(singular.split())], plural[tuple(singular.split())] = cls, False
            shapes[tuple(many.split())], plural[tuple(many.split())] = cls, True
    return colours, shapes, plural


_COLOURS, _SHAPES, _PLURAL = _phrases()
_COUNT_WORDS = {**{w: n for n, w in enumerate(NUMBER_WORDS)}, "a": 1, "an": 1, "single": 1}


def _find(words: list[str], table: dict[tuple[str, ...], Any]) -> list[tuple[int, int, Any]]:
    """Non-overlapping matches ``(start, end, value)`` of the table's word sequences, longest first."""
    out, i, longest = [], 0, max(len(k) for k in table)
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            if key in table:
                out.append((i, i + n, table[key]))
                i += n
                break
        else:
            i += 1
    return out


def _stated_count(words: list[str]) -> int | None:
    """The number of objects a caption states: ``"<n> objects"`` / ``"a single object"``, else the sum of the
    counts in front of its shape phrases (an article counts one), None when it states none."""
    for i, word in enumerate(words[:-1]):
        if word in _COUNT_WORDS and words[i + 1] in ("object", "objects"):
            return _COUNT_WORDS[word]
        if word == "single" and words[i + 1].startswith("object"):
            return 1
    total, found = 0, False
    for start, _, _ in _find(words, _SHAPES):
        for back in range(start - 1, max(-1, start - 5), -1):  # "two small shiny red cubes": up to 4 words back
            if words[back] in _COUNT_WORDS:
                total, found = total + _COUNT_WORDS[words[back]], True
                break
    return total if found else None


def attribute_accuracy(captions: Sequence[str], objects: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """How often captions of synthetic images name the right shapes, colours and object count.

    Args:
        captions: one generated caption per image.
        objects: per image, its objects' attribute dicts (``colour``, ``shape``; the ``objects`` field the
            synthetic COCO-layout annotation files keep per image).

    Returns:
        Shares in ``[0, 1]`` over images: ``shape_accuracy`` / ``colour_accuracy``: the caption names at least one
        shape (colour) and every one it names is in the image; ``shape_recall`` / ``colour_recall``: the mean
        share of the image's distinct shapes (colours) the caption names; ``count_accuracy``: the count it
        states (``"three objects"``, or the counts of its phrases summed) equals the number of objects.
    """
    if len(captions) != len(objects):
        raise InputError(f"{len(captions)} captions but object lists for {len(objects)} images")
    if not captions:
        raise InputError("no captions to score")
    sums = dict.fromkeys(("shape_accuracy", "shape_recall", "colour_accuracy", "colour_recall", "count_accuracy"),
                         0.0)
    for caption, objs in zip(captions, objects):
        words = ptb_tokenize(caption).split()
        for attr, key, table in (("shape", "shape", _SHAPES), ("colour", "colour", _COLOURS)):
            named = {value for _, _, value in _find(words, table)}
            present = {obj[key] for obj in objs}
            sums[f"{attr}_accuracy"] += float(bool(named) and named <= present)
            sums[f"{attr}_recall"] += len(named & present) / max(len(present), 1)
        sums["count_accuracy"] += float(_stated_count(words) == len(objs))
    return {k: v / len(captions) for k, v in sums.items()}
