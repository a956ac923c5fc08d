"""The viewer: PNG grids of the synthetic products and of the public layouts, read through the readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_readers_captions import coco, vqa
from test_readers_points import modelnet_h5, scanobjectnn, shapenet
from test_readers_rgbd import cityscapes

from mmseq.cli import main
from mmseq.data.vision import show as viewer
from mmseq.data.vision.objects import CLASS_NAMES
from mmseq.errors import InputError

POINTS_3 = (720, 720)  # 3 views of 2.4 in by 3 rows of 2.4 in, at 100 dpi
IMAGES_2 = (640, 440)  # 2 cells of 3.2 x 4.4 in
RGBD_2 = (1160, 380)  # 3 panels of 3.2 in + a 2 in legend, by 2 rows of 1.9 in


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, Path]:
    from mmseq.data.vision.synth_captions import build_captions
    from mmseq.data.vision.synth_points import build_points
    from mmseq.data.vision.synth_scenes import build_scenes

    root = tmp_path_factory.mktemp("products")
    build_points(root / "points", "tiny", seed=0)
    build_captions(root / "captions", "tiny", seed=0)
    build_scenes(root / "scenes", "tiny", seed=0)
    return {name: root / name for name in ("points", "captions", "scenes")}


def check_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        assert im.size == size
        pixels = np.asarray(im.convert("RGB")).astype(np.int64)
    drawn = (pixels.sum(-1) < 3 * 230).mean()  # not white
    assert 0.01 < drawn < 0.95, f"{path} looks empty or solid ({drawn:.3f} drawn)"


@pytest.fixture
def recorded(monkeypatch) -> list:
    """The samples every grid function receives (the original still draws)."""
    calls: list = []
    for name in ("point_grid", "image_grid", "rgbd_grid"):
        original = getattr(viewer, name)

        def record(samples, *args, _original=original, _name=name, **kwargs):
            title = args[2] if _name == "rgbd_grid" else args[0]
            calls.append((_name, list(samples), args, title.split(":")[0]))
            return _original(samples, *args, **kwargs)

        monkeypatch.setattr(viewer, name, record)
    return calls


def test_points_product(products, tmp_path, recorded):
    written = viewer.show(products["points"], tmp_path, count=3)
    assert sorted(p.name for p in written) == sorted(f"{kind}_{split}.png" for split in ("train", "test")
                                                     for kind in ("modelnet40_h5", "scanobjectnn_pb_t50_rs",
                                                                  "shapenet55"))  # fmt: skip
    for path in written:
        check_png(path, POINTS_3)
    names = {title: [s["name"] for s in samples] for _, samples, _, title in recorded}
    expected = [f"{c} #{i}" for i, c in enumerate(CLASS_NAMES[:3])]  # one per class, this product's names
    assert names["ModelNet40 h5 train"] == names["ScanObjectNN pb_t50_rs test"] == expected
    assert names["ShapeNet-55 train"] == expected  # synset -> name from shapenet_synset_dict.json
    hard = next(samples for _, samples, _, title in recorded if title.startswith("ScanObjectNN"))
    assert any((s["mask"] == -1).any() for s in hard)  # background points reach the viewer (drawn grey)


def test_captions_and_scenes_products(products, tmp_path, recorded):
    written = viewer.show(products["captions"], tmp_path / "captions", count=2)
    # the questions ask about the images of the caption split of the same name: one grid of both per split
    assert sorted(p.name for p in written) == ["captions_vqa_train2014.png", "captions_vqa_val2014.png"]
    for path in written:
        check_png(path, IMAGES_2)
    cells = next(samples for _, samples, _, title in recorded if title.startswith("COCO captions + VQAv2 val2014"))
    lines = cells[0]["lines"]
    assert [line[:2] for line in lines] == ["- "] * 3 + ["Q:", "A:"] * ((len(lines) - 3) // 2) and len(lines) > 3
    assert {c["heading"].split("(")[-1] for c in cells} == {"in-domain)", "out-domain)"}  # spread over the split
    written = viewer.show(products["scenes"], tmp_path / "scenes", count=2)
    splits = json.loads((products["scenes"] / "scenes.json").read_text())["splits"]
    assert sorted(p.name for p in written) == sorted(f"cityscapes_{s}.png" for s, v in splits.items() if v["frames"])
    for path in written:
        rows = min(2, splits[path.stem.split("_")[1]]["frames"])
        check_png(path, (RGBD_2[0], RGBD_2[1] * rows // 2))
    _, samples, (classes, ignore, *_), _ = next(c for c in recorded if c[0] == "rgbd_grid")
    assert classes[:4] == ["void", "sky", "ground", "wall"] and ignore == 0  # the product's own label ids
    assert all(s["name"].endswith(")") for s in samples)  # "<frame> (<condition>)"
    assert all(s["depth"].max() > 0 and s["label"].max() >= 4 for s in samples)


def test_public_layouts(tmp_path, recorded):
    root = tmp_path / "data"
    modelnet_h5(root / "modelnet40_ply_hdf5_2048")
    scanobjectnn(root / "h5_files")
    for path in (root / "h5_files" / "main_split").glob("*_augmented*.h5"):  # keep OBJ_BG, OBJ_ONLY, PB_T50_RS
        if "augmentedrot_scale75" not in path.name:
            path.unlink()
    shapenet(root / "ShapeNet55-34")
    cityscapes(root / "cityscapes")
    coco(root / "coco")
    vqa(root / "vqa")
    kinds = {kind for kind, _ in viewer.detect_layouts(root)}
    assert kinds == {"modelnet40_h5", "scanobjectnn", "shapenet55", "cityscapes", "coco_captions", "vqav2"}
    written = viewer.show(root, tmp_path / "out", count=2)
    names = {p.name for p in written}
    assert {"modelnet40_h5_train.png", "scanobjectnn_obj_only_test.png", "scanobjectnn_pb_t50_rs_train.png",
            "shapenet55_test.png", "cityscapes_val.png", "coco_captions_val2017.png", "vqav2_val2014.png"} <= names
    assert all(p.stat().st_size > 1000 for p in written)
    by_title = {title: samples for _, samples, _, title in recorded}
    assert [s["name"] for s in by_title["ModelNet40 h5 train"]] == ["airplane #0", "bathtub #1"]
    assert by_title["ScanObjectNN obj_bg train"][0]["name"] == "cabinet #0"  # ScanObjectNN's own names here
    _, _, (classes, ignore, *_), _ = next(c for c in recorded if c[0] == "rgbd_grid")
    assert classes[0] == "road" and ignore == 255


def test_errors_name_the_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing to see")
    with pytest.raises(InputError, match=r"notes: no dataset layout recognised"):
        viewer.show(tmp_path / "notes", tmp_path / "out")
    with pytest.raises(InputError, match="dataset folder not found: .*missing"):
        viewer.show(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(InputError, match="--count must be at least 1"):
        viewer.show(tmp_path / "notes", tmp_path / "out", count=0)


def test_cli(tmp_path, capsys):
    modelnet_h5(tmp_path / "mn")
    assert main(["data", "show", str(tmp_path / "mn"), "--out", str(tmp_path / "png"), "--count", "2"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "png" / f"modelnet40_h5_{split}.png") for split in ("train", "test")]
    check_png(Path(printed[0]), (720, 480))
