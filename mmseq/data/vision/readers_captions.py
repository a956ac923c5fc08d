"""Readers of the public image-text datasets, in their official layouts: COCO captions, NoCaps, CC3M, VQAv2.

Every reader is a map-style dataset whose items are plain dicts; images are decoded on access to ``uint8 [3, H, W]``
(``load_images=False`` leaves them out, for text-only passes such as vocabulary building). Nothing is downloaded.

Layouts (``root`` is the folder the dataset was unpacked into)::

    COCO captions   annotations/captions_{train,val}{2014,2017}.json     (pycocotools; images, annotations)
                    {train,val}2017/000000XXXXXX.jpg  |  {train,val}2014/COCO_val2014_000000XXXXXX.jpg
    NoCaps          nocaps_val_4500_captions.json (10 captions per image) | nocaps_test_image_info.json
                    images carry ``domain`` in in-domain / near-domain / out-domain and ``open_images_id``
    CC3M            Train_GCC-training.tsv, Validation_GCC-1.1.0-Validation.tsv: "caption<TAB>url", no header;
                    images fetched separately, one per row (see :class:`ConceptualCaptions` for the mapping)
    img2dataset     the downloader's ``files`` output (CC3M and other url-caption lists): shard folders
                    00000/000000123.jpg beside 000000123.txt (the caption) and 000000123.json (metadata)
    VQAv2           Questions/v2_OpenEnded_mscoco_<subtype>_questions.json
                    Annotations/v2_mscoco_<subtype>_annotations.json      (train2014, val2014 only)
                    Images/mscoco/<subtype>/COCO_<subtype>_<image_id:012d>.jpg

The accuracy of VQA answers is in :mod:`mmseq.data.vision.vqa_eval`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmseq.data.vision.readers_common import (
    check_choice, expect_keys, load_image, read_json, require_dir, require_file,
)
from mmseq.errors import InputError

__all__ = ["COCO_SPLITS", "NOCAPS_DOMAINS", "VQA_SUBTYPES", "CocoCaptions", "NoCaps", "ConceptualCaptions",
           "Img2DatasetCaptions", "VQAv2"]

COCO_SPLITS = ("train2017", "val2017", "train2014", "val2014")
NOCAPS_DOMAINS = ("in-domain", "near-domain", "out-domain")
NOCAPS_FILES = {"val": "nocaps_val_4500_captions.json", "test": "nocaps_test_image_info.json"}
VQA_SUBTYPES = ("train2014", "val2014", "test2015", "test-dev2015")
CC3M_FILES = {"train": "Train_GCC-training.tsv", "val": "Validation_GCC-1.1.0-Validation.tsv"}


def _load_coco(path: Path, what: str):
    """A ``pycocotools.coco.COCO`` index of a COCO-style caption file, after checking the fields readers use."""
    from pycocotools.coco import COCO

    data = expect_keys(read_json(path, what), ["images"], str(path))
    if not isinstance(data["images"], list):
        raise InputError(f"{path}: 'images' must be a list")
    for i, image in enumerate(data["images"]):
        expect_keys(image, ["id", "file_name"], f"{path}: images[{i}]")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise InputError(f"{path}: 'annotations' must be a list")
    ids = {image["id"] for image in data["images"]}
    for i, ann in enumerate(annotations):
        expect_keys(ann, ["image_id", "caption"], f"{path}: annotations[{i}]")
        if ann["image_id"] not in ids:
            raise InputError(f"{path}: annotations[{i}] refers to image_id {ann['image_id']!r}, not in 'images'")
        ann.setdefault("id", i)  # pycocotools indexes annotations by id
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


class CocoCaptions(Dataset):
    """COCO captions (2014 or 2017) read in place with ``pycocotools``.

    Items, one per image (``per_caption=False``): ``image`` (``uint8 [3, H, W]``, unless ``load_images=False``),
    ``image_id`` (int), ``path`` (str), ``height``, ``width``, ``captions`` (list of str, in annotation order,
    usually 5 or more). With ``per_caption=True`` one item per caption, with ``caption`` and ``caption_id`` in
    place of ``captions``.

    Args:
        root: The COCO folder holding ``annotations/`` and the image folders.
        split: ``train2017``, ``val2017``, ``train2014`` or ``val2014``.
        annotation_file: Overrides ``root/annotations/captions_<split>.json`` (e.g. a synthetic set's file).
        image_dir: Overrides ``root/<split>``.
        per_caption: One item per caption instead of one per image.
        load_images: Decode images on access.

    Raises:
        InputError: Unknown split, missing annotation file or image folder, or a malformed annotation file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train2017", annotation_file: str | None = None,
                 image_dir: str | None = None, per_caption: bool = False, load_images: bool = True) -> None:
        root = Path(root)
        if annotation_file is None:
            check_choice("COCO split", split, COCO_SPLITS, root)
        ann_path = Path(annotation_file) if annotation_file else root / "annotations" / f"captions_{split}.json"
        self.image_dir = require_dir(Path(image_dir) if image_dir else root / split, "COCO image folder")
        self.coco = _load_coco(ann_path, "COCO captions file")
        self.per_caption, self.load_images = per_caption, load_images
        self.image_ids = sorted(self.coco.imgs)
        self.caption_ids = [ann["id"] for image_id in self.image_ids for ann in self.coco.imgToAnns[image_id]]

    def __len__(self) -> int:
        return len(self.caption_ids) if self.per_caption else len(self.image_ids)

    def _image_item(self, image_id: int) -> dict[str, Any]:
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        item: dict[str, Any] = {"image_id": image_id, "path": str(path), "height": info.get("height"),
                                "width": info.get("width")}  # fmt: skip
        if self.load_images:
            item["image"] = load_image(path)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.per_caption:
            ann = self.coco.anns[self.caption_ids[index]]
            item = self._image_item(ann["image_id"])
            item.update(caption=ann["caption"], caption_id=ann["id"])
            return item
        image_id = self.image_ids[index]
        item = self._image_item(image_id)
        item["captions"] = [ann["caption"] for ann in self.coco.imgToAnns[image_id]]
        return item


class NoCaps(Dataset):
    """NoCaps validation or test images with their domain (and, for val, the 10 reference captions).

    NoCaps ships annotation files only; its images come from Open Images, and where a user keeps them is not
    fixed by the release. This reader expects ``<image_dir>/<file_name>`` with ``file_name`` as in the JSON
    (``<open_images_id>.jpg``), ``image_dir`` defaulting to ``root/<split>``.

    Items: ``image`` (``uint8 [3, H, W]``), ``image_id``, ``open_images_id``, ``domain``, ``path``, ``captions``
    (list of str, empty for test).

    Args:
        root: Folder holding the annotation file.
        split: ``val`` (``nocaps_val_4500_captions.json``) or ``test`` (``nocaps_test_image_info.json``; this test
            file name is the usual one but [unverified]; pass ``annotation_file`` when yours differs).
        annotation_file: Overrides the annotation file.
        image_dir: Overrides ``root/<split>``.
        domains: Keep only these domains (default all three).
        load_images: Decode images on access.

    Raises:
        InputError: Unknown split or domain, a missing file or folder, or an image without a valid ``domain``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", annotation_file: str | None = None,
                 image_dir: str | None = None, domains: Sequence[str] | None = None,
                 load_images: bool = True) -> None:
        root = Path(root)
        check_choice("NoCaps split", split, NOCAPS_FILES, root)
        ann_path = Path(annotation_file) if annotation_file else root / NOCAPS_FILES[split]
        self.image_dir = require_dir(Path(image_dir) if image_dir else root / split, "NoCaps image folder")
        self.coco = _load_coco(ann_path, f"NoCaps {split} file")
        keep = set(domains) if domains is not None else set(NOCAPS_DOMAINS)
        for domain in keep:
            check_choice("NoCaps domain", domain, NOCAPS_DOMAINS)
        for image_id, info in self.coco.imgs.items():
            if info.get("domain") not in NOCAPS_DOMAINS:
                raise InputError(f"{ann_path}: image {image_id} has domain {info.get('domain')!r}, "
                                 f"expected one of {list(NOCAPS_DOMAINS)}")  # fmt: skip
        self.image_ids = sorted(i for i, info in self.coco.imgs.items() if info["domain"] in keep)
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def domains(self) -> list[str]:
        """The domain of every item, in item order (for per-domain scores as the EvalAI scorer reports them)."""
        return [self.coco.imgs[i]["domain"] for i in self.image_ids]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        item: dict[str, Any] = {
            "image_id": image_id, "open_images_id": info.get("open_images_id"), "domain": info["domain"],
            "path": str(path), "captions": [ann["caption"] for ann in self.coco.imgToAnns[image_id]],
        }  # fmt: skip
        if self.load_images:
            item["image"] = load_image(path)
        return item


def _read_tsv_pairs(path: Path, what: str) -> list[tuple[str, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise InputError(f"{path}:{number}: a {what} line must be two tab-separated fields, got {len(row)}")
            rows.append((row[0], row[1]))
    return rows


class ConceptualCaptions(Dataset):
    """Conceptual Captions (CC3M) rows whose image is on disk.

    The tsv files hold ``caption<TAB>url`` and no images; users fetch the images themselves and many URLs are dead.
    How a downloaded image is found, in this order:

    * ``mapping``: a tsv of ``url<TAB>path`` lines (paths relative to ``image_dir``) or a dict ``{url: path}``;
    * otherwise a file in ``image_dir`` whose name without extension is the row number (0-based line index of the
      tsv, e.g. ``00001234.jpg`` or ``1234``), the naming of the common downloader scripts.

    Rows without an image are left out (counted in :attr:`missing`), so item ``i`` is the ``i``-th row that has one.

    Items: ``image`` (``uint8 [3, H, W]``), ``caption``, ``url``, ``row`` (the tsv line index), ``path``.

    Args:
        root: Folder with the tsv files; or give ``tsv_file``.
        split: ``train`` (``Train_GCC-training.tsv``) or ``val`` (``Validation_GCC-1.1.0-Validation.tsv``).
        image_dir: Folder with the downloaded images (default ``root/<split>``).
        tsv_file: Overrides the tsv file.
        mapping: A ``url<TAB>path`` tsv file or a dict from url to path.
        load_images: Decode images on access.

    Raises:
        InputError: Unknown split, a missing file or folder, or a tsv line that is not two fields.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_dir: str | None = None,
                 tsv_file: str | None = None, mapping: str | os.PathLike | Mapping[str, str] | None = None,
                 load_images: bool = True) -> None:
        root = Path(root)
        if tsv_file is None:
            check_choice("Conceptual Captions split", split, CC3M_FILES, root)
        tsv = require_file(Path(tsv_file) if tsv_file else root / CC3M_FILES[split], "Conceptual Captions tsv")
        self.image_dir = require_dir(Path(image_dir) if image_dir else root / split, "Conceptual Captions images")
        rows = _read_tsv_pairs(tsv, "Conceptual Captions")
        if mapping is None:
            by_row = {}
            for p in self.image_dir.iterdir():
                if p.is_file() and p.stem.isdigit():
                    by_row[int(p.stem)] = p
            found = {row: by_row.get(row) for row in range(len(rows))}
        else:
            if not isinstance(mapping, Mapping):
                mapping = dict(_read_tsv_pairs(require_file(mapping, "Conceptual Captions mapping"), "mapping"))
            found = {row: (self.image_dir / mapping[url]) if url in mapping else None
                     for row, (_, url) in enumerate(rows)}  # fmt: skip
        self.rows = [(row, caption, url, found[row]) for row, (caption, url) in enumerate(rows)
                     if found[row] is not None and found[row].is_file()]  # fmt: skip
        self.missing = len(rows) - len(self.rows)
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, caption, url, path = self.rows[index]
        item: dict[str, Any] = {"caption": caption, "url": url, "row": row, "path": str(path)}
        if self.load_images:
            item["image"] = load_image(path)
        return item


IMG2DATASET_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class Img2DatasetCaptions(Dataset):
    """Image-caption pairs in img2dataset's ``files`` output format (``--output_format files``), as CC3M is
    usually downloaded: shard folders (``00000/``, ``00001/`` ...) each holding ``<key>.jpg`` (or ``.jpeg``,
    ``.png``, ``.webp``) beside ``<key>.txt``, the caption (UTF-8, surrounding whitespace stripped); the
    ``<key>.json`` metadata and the ``<shard>_stats.json`` / ``.parquet`` files beside the shards are not read.

    Pairs are in shard order, then key order. An image without a caption file (or with an empty one) is left out and
    counted in :attr:`missing` (a caption without an image, a failed download, is not an item at all).

    Items: ``image`` (``uint8 [3, H, W]``, unless ``load_images=False``), ``caption``, ``key`` (the file stem),
    ``path``.

    Raises:
        InputError: The folder is missing, has no shard folders, or no image with a caption.
    """

    def __init__(self, root: str | os.PathLike, load_images: bool = True) -> None:
        root = require_dir(Path(root), "img2dataset folder")
        shards = sorted(p for p in root.iterdir() if p.is_dir())
        if not shards:
            raise InputError(f"{root}: no shard folders; img2dataset's files layout is <shard>/<key>.jpg beside "
                             "<shard>/<key>.txt, e.g. 00000/000000123.jpg and 00000/000000123.txt")
        self.pairs: list[tuple[str, Path, str]] = []
        self.missing = 0
        for shard in shards:
            for path in sorted(shard.iterdir()):
                if path.suffix.lower() not in IMG2DATASET_IMAGE_SUFFIXES or not path.is_file():
                    continue
                text = path.with_suffix(".txt")
                caption = text.read_text(encoding="utf-8").strip() if text.is_file() else ""
                if caption:
                    self.pairs.append((path.stem, path, caption))
                else:
                    self.missing += 1
        if not self.pairs:
            raise InputError(f"{root}: no image with a caption in {len(shards)} shard folders "
                             f"({self.missing} images without a <key>.txt caption)")
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, path, caption = self.pairs[index]
        item: dict[str, Any] = {"caption": caption, "key": key, "path": str(path)}
        if self.load_images:
            item["image"] = load_image(path)
        return item


class VQAv2(Dataset):
    """VQAv2 questions with their COCO image and, for train/val, the 10 human answers.

    Items: ``question_id``, ``image_id``, ``question``, ``path``, ``image`` (``uint8 [3, H, W]``), and for subtypes
    with annotations ``answers`` (10 str, in ``answer_id`` order), ``answer_confidences`` (``yes``/``maybe``/``no``),
    ``multiple_choice_answer``, ``question_type``, ``answer_type`` (e.g. ``yes/no``, ``number``, ``other``).

    ``test-dev2015`` questions use the ``test2015`` images.

    Args:
        root: Folder holding ``Questions/``, ``Annotations/`` and ``Images/mscoco/``.
        subtype: ``train2014``, ``val2014``, ``test2015`` or ``test-dev2015``.
        image_dir: Overrides ``root/Images/mscoco/<image subtype>``.
        load_images: Decode images on access.

    Raises:
        InputError: Unknown subtype, a missing file or folder, a malformed file, or questions and annotations that
            do not pair up.
    """

    def __init__(self, root: str | os.PathLike, subtype: str = "val2014", image_dir: str | None = None,
                 load_images: bool = True) -> None:
        root = Path(root)
        check_choice("VQAv2 subtype", subtype, VQA_SUBTYPES, root)
        self.image_subtype = "test2015" if subtype == "test-dev2015" else subtype
        q_path = root / "Questions" / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        questions = expect_keys(read_json(q_path, "VQAv2 questions file"), ["questions"], str(q_path))["questions"]
        for i, q in enumerate(questions):
            expect_keys(q, ["question_id", "image_id", "question"], f"{q_path}: questions[{i}]")
        self.questions = sorted(questions, key=lambda q: q["question_id"])
        self.annotations: dict[int, dict] = {}
        if subtype in ("train2014", "val2014"):
            a_path = root / "Annotations" / f"v2_mscoco_{subtype}_annotations.json"
            anns = expect_keys(read_json(a_path, "VQAv2 annotations file"), ["annotations"], str(a_path))
            for i, ann in enumerate(anns["annotations"]):
                where = f"{a_path}: annotations[{i}]"
                expect_keys(ann, ["question_id", "image_id", "answers"], where)
                if not isinstance(ann["answers"], list) or not ann["answers"]:
                    raise InputError(f"{where}: 'answers' must be a non-empty list")
                for j, answer in enumerate(ann["answers"]):
                    expect_keys(answer, ["answer"], f"{where}.answers[{j}]")
                self.annotations[ann["question_id"]] = ann
            unpaired = [q["question_id"] for q in self.questions if q["question_id"] not in self.annotations]
            if unpaired:
                raise InputError(f"{a_path}: no annotation for {len(unpaired)} questions of {q_path}, "
                                 f"e.g. question_id {unpaired[0]}")  # fmt: skip
        self.image_dir = require_dir(Path(image_dir) if image_dir else root / "Images" / "mscoco" / self.image_subtype,
                                     "VQAv2 image folder")  # fmt: skip
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.questions)

    def image_path(self, image_id: int) -> Path:
        """``COCO_<subtype>_<image_id:012d>.jpg`` in the image folder."""
        return self.image_dir / f"COCO_{self.image_subtype}_{int(image_id):012d}.jpg"

    def __getitem__(self, index: int) -> dict[str, Any]:
        q = self.questions[index]
        path = self.image_path(q["image_id"])
        item: dict[str, Any] = {"question_id": q["question_id"], "image_id": q["image_id"],
                                "question": q["question"], "path": str(path)}  # fmt: skip
        ann = self.annotations.get(q["question_id"])
        if ann is not None:
            answers = sorted(ann["answers"], key=lambda a: a.get("answer_id", 0))
            item.update(
                answers=[a["answer"] for a in answers],
                answer_confidences=[a.get("answer_confidence") for a in answers],
                multiple_choice_answer=ann.get("multiple_choice_answer"),
                question_type=ann.get("question_type"),
                answer_type=ann.get("answer_type"),
            )
        if self.load_images:
            item["image"] = load_image(path)
        return item
