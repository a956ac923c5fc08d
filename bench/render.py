"""Throughput of the vision world's ray caster and of the readers over the synthetic products.

``python bench/render.py [--repeats 3] [--threads 1] [--captions DIR] [--scenes DIR]``

* Renderer: batches of captioned-image scenes (1-4 objects) at 224x224 and of street / room scenes (6-12 objects
  and the walls) at 384x768 (height x width), with and without shadow rays, in images per second.
* Loaders: ``CocoCaptions`` (one item: image + 5 captions) and ``Cityscapes`` over the RGB-D product (image +
  disparity -> depth + labelIds) against a plain PIL loop that decodes the same files into the same tensors.
  ``--captions`` / ``--scenes`` name built products (default ``data/synth_captions`` / ``data/synth_scenes`` when
  they exist, else a tiny product built into a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import machine_line, median_times


def _render_rows(repeats: int) -> list[tuple[str, float, float]]:
    from mmseq.data.vision import synth_captions, synth_scenes
    from mmseq.data.vision.render import render

    rng = np.random.default_rng(0)
    cases = [("captions scene, 224x224, batch 16",
              [synth_captions.sample_scene(rng, "in-domain", 224)[0] for _ in range(16)]),
             ("street / room scene, 384x768, batch 4",
              [synth_scenes.sample_scene(rng, ("street", "room")[i % 2], 768, 384) for i in range(4)])]  # fmt: skip
    rows = []
    for name, scenes in cases:
        with_shadows, without = median_times([lambda s=scenes: render(s), lambda s=scenes: render(s, shadows=False)],
                                             repeats)  # fmt: skip
        rows.append((name, len(scenes) / with_shadows, len(scenes) / without))
    return rows


def _pil_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _loader_rows(captions: Path, scenes: Path, repeats: int) -> list[tuple[str, int, float, float]]:
    import json

    from PIL import Image

    from mmseq.data.vision.synth_captions import read_captions
    from mmseq.data.vision.synth_scenes import read_scenes

    coco = read_captions(captions, "val2014")
    files = [coco.image_dir / coco.coco.imgs[i]["file_name"] for i in coco.image_ids]
    by_image: dict[int, list[str]] = {}
    for ann in json.loads((captions / "annotations" / "captions_val2014.json").read_text())["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["caption"])

    def plain_captions():
        return [(_pil_image(f), by_image[i]) for f, i in zip(files, coco.image_ids)]

    rgbd = read_scenes(scenes, "val")

    def plain_rgbd():
        out = []
        for frame in rgbd.frames:
            camera = json.loads(rgbd.path("camera", frame).read_text())
            with Image.open(rgbd.path("disparity", frame)) as im:
                p = np.asarray(im).astype(np.float64)
            d = (p - 1) / 256
            depth = np.where(p > 1, camera["extrinsic"]["baseline"] * camera["intrinsic"]["fx"] / np.maximum(d, 1e-9),
                             0.0).astype(np.float32)  # fmt: skip
            with Image.open(rgbd.path("gtFine", frame)) as im:
                label = torch.from_numpy(np.asarray(im).astype(np.int64))
            out.append((_pil_image(rgbd.path("leftImg8bit", frame)), torch.from_numpy(depth), label))
        return out

    t_reader, t_plain = median_times([lambda: [coco[i] for i in range(len(coco))], plain_captions], repeats)
    s_reader, s_plain = median_times([lambda: [rgbd[i] for i in range(len(rgbd))], plain_rgbd], repeats)
    size = coco[0]["image"].shape[-1]
    h, w = rgbd[0]["image"].shape[-2:]
    return [(f"CocoCaptions, {size}x{size} JPEG + 5 captions", len(coco), len(coco) / t_reader, len(coco) / t_plain),
            (f"Cityscapes (RGB-D product), {h}x{w} PNG x3 + camera", len(rgbd), len(rgbd) / s_reader,
             len(rgbd) / s_plain)]  # fmt: skip


def _points_rows(points: Path, repeats: int) -> list[tuple[str, int, float, float]]:
    """The point-cloud readers over the points product against a plain h5py loop giving the same tensors."""
    import h5py

    from mmseq.data.vision.readers_points import ModelNet40H5, ScanObjectNN

    clean_root, hard_root = points / "modelnet40_ply_hdf5_2048", points / "h5_files"
    clean = ModelNet40H5(clean_root, "test")
    hard = ScanObjectNN(hard_root, "test", "pb_t50_rs")

    def plain(files: list[Path], extra: tuple[str, ...] = ()) -> list[tuple[torch.Tensor, ...]]:
        out = []
        for file in files:
            with h5py.File(file, "r") as f:
                arrays = [f["data"][:], f["label"][:], *(f[k][:] for k in extra)]
            for i in range(len(arrays[0])):
                out.append((torch.from_numpy(arrays[0][i].astype(np.float32)), int(arrays[1][i].reshape(-1)[0]),
                            *(torch.from_numpy(a[i].astype(np.int64)) for a in arrays[2:])))
        return out

    clean_files = [clean_root / Path(line).name for line in (clean_root / "test_files.txt").read_text().split()]
    c_reader, c_plain = median_times([lambda: [clean[i] for i in range(len(clean))], lambda: plain(clean_files)],
                                     repeats)
    s_reader, s_plain = median_times([lambda: [hard[i] for i in range(len(hard))],
                                      lambda: plain([hard.path], ("mask",))], repeats)
    n_clean, n_hard = clean[0]["points"].shape[0], hard[0]["points"].shape[0]
    return [(f"ModelNet40H5 (clean points), {n_clean} points", len(clean), len(clean) / c_reader,
             len(clean) / c_plain),
            (f"ScanObjectNN PB_T50_RS (hard points), {n_hard} points + mask", len(hard), len(hard) / s_reader,
             len(hard) / s_plain)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--captions", type=Path, default=Path("data/synth_captions"))
    parser.add_argument("--scenes", type=Path, default=Path("data/synth_scenes"))
    parser.add_argument("--points", type=Path, default=Path("data/synth_points"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    print("\n| scene | images/s with shadows | images/s without |\n|---|---:|---:|")
    for name, a, b in _render_rows(args.repeats):
        print(f"| {name} | {a:.2f} | {b:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        captions, scenes = args.captions, args.scenes
        if not (captions / "dataset.json").exists():
            from mmseq.data.vision.synth_captions import build_captions

            captions = Path(tmp) / "captions"
            build_captions(captions, "tiny")
        if not (scenes / "scenes.json").exists():
            from mmseq.data.vision.synth_scenes import build_scenes

            scenes = Path(tmp) / "scenes"
            build_scenes(scenes, "tiny")
        torch.set_num_threads(args.threads)
        print(f"\ncaptions product: {captions}, scenes product: {scenes}")
        print("\n| loader | items | reader items/s | plain PIL items/s | reader / plain |\n|---|---:|---:|---:|---:|")
        for name, n, reader, plain in _loader_rows(captions, scenes, args.repeats):
            print(f"| {name} | {n} | {reader:.1f} | {plain:.1f} | {reader / plain:.2f} |")
        points = args.points
        if not (points / "points.json").exists():
            from mmseq.data.vision.synth_points import build_points

            points = Path(tmp) / "points"
            build_points(points, "tiny")
        print(f"\npoints product: {points}")
        print("\n| loader | items | reader items/s | plain h5py items/s | reader / plain |\n|---|---:|---:|---:|---:|")
        for name, n, reader, plain in _points_rows(points, args.repeats):
            print(f"| {name} | {n} | {reader:.1f} | {plain:.1f} | {reader / plain:.2f} |")


if __name__ == "__main__":
    main()
