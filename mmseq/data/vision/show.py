"""A viewer for vision datasets: PNG grids a person can look at, read through the dataset readers.

``mmseq data show DIR`` finds which layouts ``DIR`` holds (itself or its direct sub-folders) and writes one grid per
layout and split:

==============================  ========================================  ===========================================
layout (how it is recognised)    reader                                    grid
==============================  ========================================  ===========================================
ModelNet40 ``ply_hdf5_2048``     :class:`~.readers_points.ModelNet40H5`     point clouds from three views, class names
(``ply_data_<split>*.h5``)
ModelNet40 resampled txt         :class:`~.readers_points.ModelNet40`       same
(``modelnet40_shape_names.txt``)
ScanObjectNN ``h5_files``        :class:`~.readers_points.ScanObjectNN`     same, background points (mask -1) in grey
(``main_split*/``)
ShapeNet-55 (``shapenet_pc/`` +  :class:`~.readers_points.ShapeNet55`       same, synset names where a
``ShapeNet-55/``)                                                           ``shapenet_synset_dict.json`` is found
COCO captions                    :class:`~.readers_captions.CocoCaptions`   images with their reference captions
(``annotations/captions_*.json``)
VQAv2 (``Questions/``)           :class:`~.readers_captions.VQAv2`          images with their questions and answers
                                                                            (one grid with the captions where a COCO
                                                                            split of the same name has the images)
Cityscapes (``leftImg8bit/`` +   :class:`~.readers_rgbd.Cityscapes`         RGB, depth, labels over RGB, class legend
``gtFine/``)
==============================  ========================================  ===========================================

Class names come from the files beside the data where the layout has them (``shape_names.txt``). A synthetic
product's own lists override ScanObjectNN's 15 names (``h5_files/shape_names.txt``) and Cityscapes' 19 train ids
(``scenes.json`` ``classes``: the label maps are then read as label ids, 0 = void).
Figures are drawn with matplotlib's Agg canvas (no display, no global backend change) at a fixed size, so a grid
of ``rows`` samples is always the same number of pixels.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmseq.data.vision.readers_common import require_dir
from mmseq.errors import InputError

__all__ = ["DPI", "POINT_PANEL", "IMAGE_CELL", "RGBD_PANEL", "LEGEND_WIDTH", "detect_layouts", "show"]

DPI = 100
POINT_PANEL = 2.4  # inches per (square) point-cloud view
IMAGE_CELL = (3.2, 4.4)  # inches (width, height) of an image with its text
IMAGE_COLUMNS = 4
RGBD_PANEL = (3.2, 1.9)  # inches per RGB / depth / label panel
LEGEND_WIDTH = 2.0  # inches
_SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------ detection
def detect_layouts(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """The dataset layouts in ``root`` or its direct sub-folders, as ``(kind, folder)`` pairs.

    Kinds: ``modelnet40_h5``, ``modelnet40_txt``, ``scanobjectnn``, ``shapenet55``, ``coco_captions``, ``vqav2``,
    ``cityscapes``.
    """
    root = Path(root)
    found: list[tuple[str, Path]] = []
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        if any(folder.glob("ply_data_*.h5")):
            found.append(("modelnet40_h5", folder))
        if (folder / "modelnet40_shape_names.txt").is_file():
            found.append(("modelnet40_txt", folder))
        if any(folder.glob("main_split*/*_objectdataset*.h5")):
            found.append(("scanobjectnn", folder))
        if (folder / "shapenet_pc").is_dir() and (folder / "ShapeNet-55").is_dir():
            found.append(("shapenet55", folder))
        if any(folder.glob("annotations/captions_*.json")):
            found.append(("coco_captions", folder))
        if any(folder.glob("Questions/v2_OpenEnded_mscoco_*_questions.json")):
            found.append(("vqav2", folder))
        if (folder / "leftImg8bit").is_dir() and (folder / "gtFine").is_dir():
            found.append(("cityscapes", folder))
    return found


def _class_names(folder: Path) -> list[str] | None:
    """The lines of ``folder/shape_names.txt`` (a synthetic product's own class list), when there is one."""
    path = folder / "shape_names.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else None


def _one_per_class(labels: Sequence, count: int) -> list[int]:
    """Indices of the first sample of each label in order, then further samples, ``count`` in all."""
    first: dict = {}
    for i, label in enumerate(labels):
        first.setdefault(label, i)
    picks = list(first.values())[:count]
    taken = set(picks)
    rest = [i for i in range(len(labels)) if i not in taken][: max(0, count - len(picks))]
    return sorted(picks + rest)


# --------------------------------------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _title(fig, title: str) -> None:
    fig.suptitle(title, fontsize=9, y=1 - 0.06 / fig.get_figheight(), va="top")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


_VIEWS = (("top (x-y)", 0, 1, 2), ("front (x-z)", 0, 2, 1), ("side (y-z)", 1, 2, 0))


def point_grid(samples: Sequence[dict], title: str, path: Path) -> Path:
    """Draw clouds from three orthographic views, one sample per row.

    Args:
        samples: Dicts with ``points`` (``[N, >=3]``), ``name`` (row label) and optionally ``mask`` (``[N]``,
            -1 on background points, drawn grey).
        title: Figure title.
        path: PNG to write; its size is ``(3 * POINT_PANEL, len(samples) * POINT_PANEL)`` inches at :data:`DPI`.
    """
    fig = _figure(3 * POINT_PANEL, len(samples) * POINT_PANEL)
    _title(fig, title)
    for row, sample in enumerate(samples):
        xyz = np.asarray(sample["points"], dtype=np.float64)[:2048, :3]
        mask = sample.get("mask")
        background = np.zeros(len(xyz), bool) if mask is None else np.asarray(mask)[:2048] == -1
        reach = float(np.abs(xyz).max()) * 1.05 or 1.0
        for col, (name, a, b, depth) in enumerate(_VIEWS):
            ax = fig.add_subplot(len(samples), 3, row * 3 + col + 1)
            order = np.argsort(xyz[:, depth])  # far first, so near points are drawn on top
            fg = order[~background[order]]
            bg = order[background[order]]
            ax.scatter(xyz[bg, a], xyz[bg, b], s=0.6, c="0.7", linewidths=0)
            ax.scatter(xyz[fg, a], xyz[fg, b], s=0.6, c=xyz[fg, depth], cmap="viridis", linewidths=0)
            ax.set_xlim(-reach, reach)
            ax.set_ylim(-reach, reach)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=7)
            if col == 0:
                ax.set_ylabel(sample["name"], fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.01, top=1 - 0.6 / fig.get_figheight(), wspace=0.05,
                        hspace=0.12)  # fmt: skip
    return _save(fig, path)


def image_grid(samples: Sequence[dict], title: str, path: Path) -> Path:
    """Draw images with text under each (captions, or questions and answers).

    Args:
        samples: Dicts with ``image`` (``uint8 [3, H, W]``), ``heading`` and ``lines`` (list of str).
        title: Figure title.
        path: PNG to write: ``min(n, 4)`` columns of :data:`IMAGE_CELL` inches, ``ceil(n / 4)`` rows.
    """
    cols = min(len(samples), IMAGE_COLUMNS)
    rows = math.ceil(len(samples) / IMAGE_COLUMNS)
    fig = _figure(cols * IMAGE_CELL[0], rows * IMAGE_CELL[1])
    _title(fig, title)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.4, 1.7] * rows, left=0.01, right=0.99, bottom=0.01,
                            top=1 - 0.45 / fig.get_figheight(), hspace=0.08, wspace=0.04)  # fmt: skip
    for k, sample in enumerate(samples):
        r, c = divmod(k, IMAGE_COLUMNS)
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(np.asarray(sample["image"]).transpose(1, 2, 0))
        ax.set_title(sample["heading"], fontsize=7)
        ax.axis("off")
        text = fig.add_subplot(grid[2 * r + 1, c])
        text.axis("off")
        wrapped = "\n".join(textwrap.fill(line, 46, subsequent_indent="  ") for line in sample["lines"])
        text.text(0.0, 1.0, wrapped, fontsize=6.5, va="top", ha="left", family="DejaVu Sans", wrap=False)
    return _save(fig, path)


def _palette(n: int) -> np.ndarray:
    from matplotlib import colormaps

    tab = colormaps["tab20"](np.linspace(0, 1, 20))[:, :3]
    return np.array([tab[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20] for i in range(n)])


def depth_for_display(depth: np.ndarray) -> tuple[np.ma.MaskedArray, float]:
    """``depth`` with its invalid (0) pixels masked, and the 99th percentile of the valid ones (the colour scale's
    far end; 1 when none is valid)."""
    seen = depth > 0
    far = float(np.percentile(depth[seen], 99)) if seen.any() else 1.0
    return np.ma.masked_where(~seen, depth), far


def draw_panel(ax, image: np.ndarray, title: str, fontsize: float, depth_far: float | None = None) -> None:
    """One image on ``ax`` without ticks; with ``depth_far``, a depth map in turbo from 0 to it over black."""
    if depth_far is not None:
        ax.set_facecolor("black")
        ax.imshow(image, cmap="turbo", vmin=0, vmax=depth_far, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)


def rgbd_grid(samples: Sequence[dict], classes: Sequence[str], ignore_index: int, title: str, path: Path,
              colours: np.ndarray | None = None) -> Path:  # fmt: skip
    """Draw RGB, depth and the label map over the RGB, one sample per row, with a legend of the classes shown.

    Args:
        samples: Dicts with ``image`` (``uint8 [3, H, W]``), ``depth`` (``[H, W]`` metres, 0 invalid), ``label``
            (``[H, W]`` ints indexing ``classes``) and ``name``.
        classes: Label names.
        ignore_index: Label drawn transparent (void).
        title: Figure title.
        path: PNG to write: ``3 * RGBD_PANEL[0] + LEGEND_WIDTH`` by ``rows * RGBD_PANEL[1]`` inches.
        colours: ``[len(classes), 3]`` RGB in [0, 1] per class (default: a tab20 palette).
    """
    fig = _figure(3 * RGBD_PANEL[0] + LEGEND_WIDTH, len(samples) * RGBD_PANEL[1])
    _title(fig, title)
    colours = _palette(len(classes)) if colours is None else np.asarray(colours, dtype=np.float64)
    shown: set[int] = set()
    right = 3 * RGBD_PANEL[0] / fig.get_figwidth()
    for row, sample in enumerate(samples):
        rgb = np.asarray(sample["image"]).transpose(1, 2, 0)
        depth = np.asarray(sample["depth"], dtype=np.float64)
        label = np.asarray(sample["label"]).astype(np.int64)
        valid = (label != ignore_index) & (label >= 0) & (label < len(classes))
        shown |= set(np.unique(label[valid]).tolist())
        overlay = rgb / 255.0
        overlay[valid] = 0.4 * overlay[valid] + 0.6 * colours[label[valid]]
        shown_depth, far = depth_for_display(depth)
        for col, (image, name) in enumerate(((rgb, "RGB"), (shown_depth, f"depth (0-{far:.0f} m)"),
                                             (overlay, "labels"))):  # fmt: skip
            draw_panel(fig.add_subplot(len(samples), 3, row * 3 + col + 1), image,
                       f"{sample['name']}  {name}" if col == 0 else name, 6.5, far if col == 1 else None)
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[i], label=f"{i} {classes[i]}") for i in sorted(shown)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right + 0.01, 0.5), fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.01, right=right, bottom=0.01, top=1 - 0.5 / fig.get_figheight(), wspace=0.04,
                        hspace=0.25)  # fmt: skip
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------- per layout
def _points_modelnet_h5(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_points import ModelNet40H5

    written = []
    for split in ("train", "test"):
        if not any(folder.glob(f"ply_data_{split}*.h5")):
            continue
        ds = ModelNet40H5(folder, split)
        labels = [int(x) for x in np.asarray(ds.rows.column("label")).reshape(-1)]
        samples = []
        for i in _one_per_class(labels, count):
            item = ds[i]
            samples.append({"points": item["points"].numpy(),
                            "name": f"{item['class_name'] or item['label']} #{i}"})  # fmt: skip
        if samples:
            written.append(point_grid(samples, f"ModelNet40 h5 {split}: {folder}",
                                      out / f"modelnet40_h5_{split}.png"))  # fmt: skip
    return written


def _points_modelnet_txt(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_points import ModelNet40

    written = []
    for split in ("train", "test"):
        if not (folder / f"modelnet40_{split}.txt").is_file():
            continue
        ds = ModelNet40(folder, split)
        samples = [{"points": ds[i]["points"].numpy(), "name": f"{ds[i]['id']}"}
                   for i in _one_per_class(ds.labels, count)]  # fmt: skip
        if samples:
            written.append(point_grid(samples, f"ModelNet40 {split}: {folder}", out / f"modelnet40_{split}.png"))
    return written


def _points_scanobjectnn(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_points import SCANOBJECTNN_VARIANTS, ScanObjectNN

    names = _class_names(folder)
    written = []
    for variant, (suffix, background) in SCANOBJECTNN_VARIANTS.items():
        sub = "main_split" if background else "main_split_nobg"
        for split, prefix in (("train", "training"), ("test", "test")):
            if not (folder / sub / f"{prefix}_objectdataset{suffix}.h5").is_file():
                continue
            ds = ScanObjectNN(folder, split, variant)
            labels = [int(x) for x in np.asarray(ds.rows.column("label")).reshape(-1)]
            samples = []
            for i in _one_per_class(labels, count):
                item = ds[i]
                name = names[item["label"]] if names and item["label"] < len(names) else item["class_name"]
                samples.append({"points": item["points"].numpy(), "name": f"{name} #{i}",
                                "mask": item["mask"].numpy() if "mask" in item else None})  # fmt: skip
            if samples:
                written.append(point_grid(samples, f"ScanObjectNN {variant} {split}: {folder}",
                                          out / f"scanobjectnn_{variant}_{split}.png"))  # fmt: skip
    return written


def _points_shapenet(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_points import ShapeNet55

    synsets: dict = {}
    for where in (folder, folder.parent):
        if (where / "shapenet_synset_dict.json").is_file():
            synsets = json.loads((where / "shapenet_synset_dict.json").read_text())
            break
    written = []
    for split in ("train", "test"):
        if not (folder / "ShapeNet-55" / f"{split}.txt").is_file():
            continue
        ds = ShapeNet55(folder, split)
        picks = _one_per_class([name.partition("-")[0] for name in ds.files], count)
        samples = []
        for i in picks:
            item = ds[i]
            samples.append({"points": item["points"].numpy(),
                            "name": f"{synsets.get(item['taxonomy_id'], item['taxonomy_id'])} #{i}"})  # fmt: skip
        if samples:
            written.append(point_grid(samples, f"ShapeNet-55 {split}: {folder}", out / f"shapenet55_{split}.png"))
    return written


def _spread(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(n)`` (a grid then shows more than the first few files)."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(count, n)).round()}) if n else []


def _vqa_sets(folder: Path):
    """``(subtype, VQAv2 reader)`` for every questions file; images in ``Images/mscoco/<subtype>`` or, as a
    product may keep them, in a COCO-style ``<subtype>/`` folder beside the questions."""
    from mmseq.data.vision.readers_captions import VQAv2

    for q in sorted(folder.glob("Questions/v2_OpenEnded_mscoco_*_questions.json")):
        subtype = q.name[len("v2_OpenEnded_mscoco_"): -len("_questions.json")]
        image_subtype = "test2015" if subtype == "test-dev2015" else subtype
        image_dir = folder / "Images" / "mscoco" / image_subtype
        if not image_dir.is_dir() and (folder / image_subtype).is_dir():
            image_dir = folder / image_subtype
        yield subtype, VQAv2(folder, subtype, image_dir=str(image_dir), load_images=False)


def _qa_lines(ds, indices: Sequence[int]) -> list[str]:
    lines = []
    for i in indices:
        item = ds[i]
        kind = f" [{item['answer_type']}]" if item.get("answer_type") else ""
        lines += [f"Q: {item['question']}", f"A: {item.get('multiple_choice_answer') or '?'}{kind}"]
    return lines


def _by_image(ds) -> dict[int, list[int]]:
    by_image: dict[int, list[int]] = {}
    for i, question in enumerate(ds.questions):
        by_image.setdefault(question["image_id"], []).append(i)
    return by_image


def _coco_ids(folder: Path, split: str) -> set | None:
    """The image ids of the COCO captions split ``split`` when its file and image folder are there."""
    ann = folder / "annotations" / f"captions_{split}.json"
    if not ann.is_file() or not (folder / split).is_dir():
        return None
    return {image["id"] for image in json.loads(ann.read_text()).get("images", []) if isinstance(image, dict)}


def _drawn_with_captions(folder: Path, split: str, by_image: dict) -> bool:
    ids = _coco_ids(folder, split)
    return bool(by_image) and ids is not None and set(by_image) <= ids


def _coco(folder: Path, out: Path, count: int) -> list[Path]:
    """COCO captions; where VQAv2 questions of the same split ask about the same images, one grid of both."""
    from mmseq.data.vision.readers_captions import CocoCaptions

    vqa = dict(_vqa_sets(folder)) if any(folder.glob("Questions/*_questions.json")) else {}
    written = []
    for ann in sorted(folder.glob("annotations/captions_*.json")):
        split = ann.stem[len("captions_"):]
        if not (folder / split).is_dir():
            continue
        ds = CocoCaptions(folder, split, annotation_file=str(ann), image_dir=str(folder / split))
        questions = _by_image(vqa[split]) if split in vqa else {}
        joint = _drawn_with_captions(folder, split, questions)
        samples = []
        for i in _spread(len(ds), count):
            item = ds[i]
            domain = ds.coco.imgs[item["image_id"]].get("domain")
            heading = f"image {item['image_id']}" + (f" ({domain})" if domain else "")
            lines = [f"- {c}" for c in item["captions"][: 3 if joint else 5]]
            if joint:
                lines += _qa_lines(vqa[split], questions.get(item["image_id"], [])[:3])
            samples.append({"image": item["image"].numpy(), "heading": heading, "lines": lines})
        if samples:
            name, what = ("captions_vqa", "COCO captions + VQAv2") if joint else ("coco_captions", "COCO captions")
            written.append(image_grid(samples, f"{what} {split}: {folder}", out / f"{name}_{split}.png"))
    return written


def _vqa(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_common import load_image

    written = []
    for subtype, ds in _vqa_sets(folder):
        by_image = _by_image(ds)
        if _drawn_with_captions(folder, subtype, by_image):
            continue  # in the captions grid of the same images
        ids = list(by_image)
        samples = [{"image": load_image(ds.image_path(ids[k])).numpy(), "heading": f"image {ids[k]}",
                    "lines": _qa_lines(ds, by_image[ids[k]][:4])} for k in _spread(len(ids), count)]  # fmt: skip
        if samples:
            written.append(image_grid(samples, f"VQAv2 {subtype}: {folder}", out / f"vqav2_{subtype}.png"))
    return written


def _scene_classes(folder: Path) -> tuple[list[str], np.ndarray] | None:
    """Class names and colours from a synthetic scenes product's ``scenes.json`` (``classes``: id, name, color)."""
    marker = folder / "scenes.json"
    if not marker.is_file():
        return None
    classes = json.loads(marker.read_text()).get("classes")
    if not classes or not all(isinstance(c, dict) and "id" in c and "name" in c for c in classes):
        return None
    names = [""] * (max(c["id"] for c in classes) + 1)
    colours = np.zeros((len(names), 3))
    for c in classes:
        names[c["id"]] = c["name"]
        colours[c["id"]] = np.asarray(c.get("color", (0, 0, 0))) / 255.0
    return names, colours


def _cityscapes(folder: Path, out: Path, count: int) -> list[Path]:
    from mmseq.data.vision.readers_rgbd import CITYSCAPES_CLASSES, Cityscapes

    own = _scene_classes(folder)  # a product with its own label ids reads them unmapped
    classes, colours = own if own else (list(CITYSCAPES_CLASSES), None)
    conditions = {}  # frame id -> adverse condition, where a synthetic product lists them
    if own:
        frames = json.loads((folder / "scenes.json").read_text()).get("frames", [])
        conditions = {f["id"]: f["condition"] for f in frames if isinstance(f, dict) and "condition" in f}
    written = []
    for split in _SPLITS:
        if not (folder / "leftImg8bit" / split).is_dir() or not any((folder / "leftImg8bit" / split).glob("*/*")):
            continue
        ds = Cityscapes(folder, split, label_set="label_ids" if own else "train_ids")
        samples = []
        for i in _spread(len(ds), count):
            item = ds[i]
            name = f"{item['id']} ({conditions[item['id']]})" if item["id"] in conditions else item["id"]
            samples.append({"image": item["image"].numpy(), "depth": item["depth"].numpy(),
                            "label": item["label"].numpy(), "name": name})  # fmt: skip
        written.append(rgbd_grid(samples, classes, ds.ignore_index, f"Cityscapes layout {split}: {folder}",
                                 out / f"cityscapes_{split}.png", colours))  # fmt: skip
    return written


_DRAW: dict[str, Callable[[Path, Path, int], list[Path]]] = {
    "modelnet40_h5": _points_modelnet_h5, "modelnet40_txt": _points_modelnet_txt,
    "scanobjectnn": _points_scanobjectnn, "shapenet55": _points_shapenet, "coco_captions": _coco, "vqav2": _vqa,
    "cityscapes": _cityscapes,
}  # fmt: skip


def show(root: str | os.PathLike, out: str | os.PathLike, count: int = 8) -> list[Path]:
    """Write PNG grids of every dataset layout found in ``root`` (see the module docstring).

    Args:
        root: A dataset folder, or a folder holding several (a synthetic product's output).
        out: Folder for the PNGs (created); names are ``<layout>_<split>.png``.
        count: Samples per grid (one per class first, where the layout has labels).

    Returns:
        The PNG files written.

    Raises:
        InputError: ``root`` is not a folder, no layout is recognised in it, or ``count`` is below 1.
    """
    root = require_dir(root, "dataset folder")
    if count < 1:
        raise InputError(f"--count must be at least 1, got {count}")
    layouts = detect_layouts(root)
    if not layouts:
        raise InputError(f"{root}: no dataset layout recognised (looked in it and its sub-folders for ModelNet40 "
                         "ply_data_*.h5 or modelnet40_shape_names.txt, ScanObjectNN main_split*/, ShapeNet-55 "
                         "shapenet_pc/ + ShapeNet-55/, COCO annotations/captions_*.json, VQAv2 Questions/, "
                         "Cityscapes leftImg8bit/ + gtFine/)")  # fmt: skip
    out = Path(out)
    written: list[Path] = []
    for kind, folder in layouts:
        written += _DRAW[kind](folder, out, count)
    return written
