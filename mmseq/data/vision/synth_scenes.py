"""Synthetic RGB-D scenes for segmentation: ``mmseq data synth scenes`` (Cityscapes layout).

Half the frames are **streets** (a road, rows of buildings on both sides, sky, 6-12 objects on the road) and half
**rooms** (a floor, three walls open to the sky, 5-10 objects), all built from the vision world
(:mod:`mmseq.data.vision.world`) and its ray caster, so the object classes are those of the captioned images and the
point clouds. Eleven classes are labelled (:data:`SCENE_CLASSES`: sky, ground, wall and eight object classes; 0 is
void and unused).

**Adverse conditions** (:data:`CONDITION_FRACTIONS`, exact counts per split): half the frames are clear, a tenth
each has low light (exposure x0.05-0.12 with shot and read noise), fog (visibility 12-30 m in streets, 4-8 m in
rooms), colour camouflage (the most visible object takes the colour and texture of the stuff around its silhouette),
motion blur (a line kernel of 2-4.5% of the width) or overexposure (x4-8). They change the RGB only: the depth comes
from a separate range sensor (as an active or stereo sensor that sees through them), so depth carries what RGB lacks.

**Depth** is a sensor reading, not the render: a disparity ``d = baseline * fx / depth`` with Gaussian noise of
:data:`DISPARITY_NOISE` px (depth error grows with the square of the distance), invalid (0) beyond the range limits
(:data:`MIN_RANGE`, :data:`MAX_RANGE` per layout) and on the sky, in holes at depth discontinuities (as stereo
matching loses occluded edges) and in a few random blobs (texture-less or specular patches).

Layout (``out``), as Cityscapes' (read with :class:`~mmseq.data.vision.readers_rgbd.Cityscapes`,
``label_set="label_ids"``; :func:`read_scenes`)::

    leftImg8bit/<split>/<layout>/<layout>_<seq>_000019_leftImg8bit.png   RGB (seq: split 1-3, index)
    disparity/<split>/<layout>/..._disparity.png      16-bit, p = 256 d + 1 (0 invalid)
    camera/<split>/<layout>/..._camera.json           intrinsic fx fy u0 v0; extrinsic baseline, pitch, z, ...
    gtFine/<split>/<layout>/..._gtFine_labelIds.png   8-bit ids of SCENE_CLASSES (1..11)
    gtFine/<split>/<layout>/..._gtFine_instanceIds.png 16-bit: id * 1000 + instance for objects, else id
    [depthJet|hha]/<split>/<layout>/..._{depthJet,hha}.png   optional encodings of the sensor depth
    scenes.json                                       classes, conditions, per-frame layout and condition
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmseq.data.vision.world import SEMANTIC_CLASSES, Camera, Scene, place_objects, random_light, random_object, wall
from mmseq.data.output import prepare_output_dir
from mmseq.errors import ConfigError

__all__ = ["PROFILES", "SPLITS", "SCENE_CLASSES", "OBJECT_CLASSES", "CONDITION_FRACTIONS", "LABEL_OF_SEMANTIC",
           "build_scenes", "read_scenes", "sample_scene", "sensor_depth", "apply_condition"]  # fmt: skip

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"size": (96, 48), "train": 10, "val": 4, "test": 2},
    "quick": {"size": (384, 192), "train": 240, "val": 60, "test": 60},
    "full": {"size": (768, 384), "train": 2000, "val": 300, "test": 300},
}
SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
MARKER = "scenes.json"
CHUNK = 8
LAYOUTS = ("street", "room")

OBJECT_CLASSES = ("cube", "sphere", "cylinder", "cone", "capsule", "stairs", "chair", "table")
SCENE_CLASSES: tuple[str, ...] = ("void", "sky", "ground", "wall") + OBJECT_CLASSES  # label id = index
LABEL_OF_SEMANTIC = np.array([SCENE_CLASSES.index(c) if c in SCENE_CLASSES else 0 for c in SEMANTIC_CLASSES],
                             dtype=np.uint8)  # fmt: skip
CLASS_COLOURS = ((0, 0, 0), (70, 130, 180), (128, 64, 128), (70, 70, 70), (220, 20, 60), (250, 170, 30),
                 (153, 153, 153), (220, 220, 0), (255, 0, 0), (152, 251, 152), (0, 0, 142), (119, 11, 32))  # fmt: skip
CONDITION_FRACTIONS = {"clear": 0.5, "low_light": 0.1, "fog": 0.1, "camouflage": 0.1, "motion_blur": 0.1,
                       "overexposure": 0.1}  # fmt: skip
BASELINE = 0.22  # metres, as Cityscapes' stereo rig
DISPARITY_NOISE = 0.12  # px, standard deviation
MIN_RANGE = 0.5
MAX_RANGE = {"street": 60.0, "room": 15.0}
_SIZES = {  # largest extent (m) per class: street scale, room scale
    "street": {"cube": (1.0, 2.2), "sphere": (0.6, 1.4), "cylinder": (0.6, 1.4), "cone": (0.5, 1.0),
               "capsule": (1.2, 1.9), "stairs": (1.5, 2.5), "chair": (0.8, 1.2), "table": (1.0, 1.8)},
    "room": {"cube": (0.4, 1.0), "sphere": (0.3, 0.8), "cylinder": (0.4, 1.0), "cone": (0.3, 0.8),
             "capsule": (0.5, 1.2), "stairs": (1.0, 1.8), "chair": (0.8, 1.1), "table": (1.0, 1.6)},
}  # fmt: skip
_BUILDINGS = ((0.72, 0.66, 0.56), (0.55, 0.30, 0.22), (0.60, 0.60, 0.62), (0.85, 0.83, 0.78), (0.42, 0.40, 0.38),
              (0.70, 0.58, 0.42))  # fmt: skip
_FLOORS = ((0.55, 0.40, 0.25), (0.62, 0.62, 0.60), (0.40, 0.36, 0.42), (0.70, 0.64, 0.52))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


# ---------------------------------------------------------------------------------------------- layouts
def _objects(rng: np.random.Generator, layout: str, count: int, region) -> list:
    objects = []
    for _ in range(count):
        cls = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
        objects.append(random_object(rng, cls, float(rng.uniform(*_SIZES[layout][cls]))))
    objects.sort(key=lambda o: -o.shape.footprint())
    while not place_objects(rng, objects, region, gap=0.3):
        objects = objects[:-1]  # crowded: drop the smallest
    return objects


def _street(rng: np.random.Generator, width: int, height: int) -> Scene:
    road = rng.uniform(4.0, 6.0)
    walls = []
    for side in (-1, 1):
        y = rng.uniform(-4.0, 2.0)
        while y < 70:  # few long blocks: every box costs a pass over its screen rectangle
            length, gap = rng.uniform(8, 20), rng.uniform(0, 4) if rng.random() < 0.5 else 0.0
            x0 = road + rng.uniform(1.5, 3.0)
            lo, hi = sorted([side * x0, side * (x0 + rng.uniform(6, 10))])
            rgb = np.array(_BUILDINGS[int(rng.integers(len(_BUILDINGS)))]) * rng.uniform(0.85, 1.1)
            walls.append(wall([lo, y, 0.0], [hi, y + length, rng.uniform(5, 20)], np.clip(rgb, 0, 1)))
            y += length + gap
    objects = _objects(rng, "street", int(rng.integers(6, 13)), (-road - 1.0, road + 1.0, 4.0, 32.0))
    cx, h = rng.uniform(-1.5, 1.5), rng.uniform(1.3, 1.8)
    yaw, pitch = math.radians(rng.uniform(-6, 6)), math.radians(rng.uniform(3, 8))
    target = [cx + 30 * math.sin(yaw), 30 * math.cos(yaw), h - 30 * math.tan(pitch)]
    fov_y = math.degrees(2 * math.atan(math.tan(math.radians(35)) * height / width))  # 70 degrees across
    camera = Camera.look_at([cx, 0.0, h], target, fov_y, width, height)
    ground = np.array([0.33, 0.33, 0.34]) * rng.uniform(0.85, 1.2)
    return Scene(objects + walls, camera, random_light(rng, (25.0, 65.0)), ground_rgb=ground,
                 ground_texture=(0.08, 0.4))  # fmt: skip


def _room(rng: np.random.Generator, width: int, height: int) -> Scene:
    half, depth, top, thick = rng.uniform(2.5, 4.0), rng.uniform(6.0, 10.0), rng.uniform(3.5, 4.5), 0.2
    colour = np.clip(np.array(_BUILDINGS[int(rng.integers(len(_BUILDINGS)))]) * rng.uniform(0.9, 1.15), 0, 1)
    walls = [wall([-half - thick, -1.0, 0.0], [-half, depth + thick, top], colour),
             wall([half, -1.0, 0.0], [half + thick, depth + thick, top], colour),
             wall([-half, depth, 0.0], [half, depth + thick, top], colour * rng.uniform(0.85, 1.0))]
    objects = _objects(rng, "room", int(rng.integers(5, 11)), (-half + 0.6, half - 0.6, 1.8, depth - 0.6))
    cx, h = rng.uniform(-0.5, 0.5), rng.uniform(1.3, 1.7)
    yaw, pitch = math.radians(rng.uniform(-8, 8)), math.radians(rng.uniform(10, 20))
    target = [cx + depth * math.sin(yaw), 0.3 + depth * math.cos(yaw), h - depth * math.tan(pitch)]
    fov_y = math.degrees(2 * math.atan(math.tan(math.radians(35)) * height / width))
    camera = Camera.look_at([cx, 0.3, h], target, fov_y, width, height)
    floor = np.array(_FLOORS[int(rng.integers(len(_FLOORS)))]) * rng.uniform(0.9, 1.1)
    return Scene(objects + walls, camera, random_light(rng, (60.0, 80.0)), ground_rgb=np.clip(floor, 0, 1),
                 ground_texture=(0.1, 0.5))  # fmt: skip


def sample_scene(rng: np.random.Generator, layout: str, width: int, height: int) -> Scene:
    """A street or room scene (objects first, then the walls) seen by a forward-looking camera."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return _street(rng, width, height) if layout == "street" else _room(rng, width, height)


# ------------------------------------------------------------------------------------------- conditions
def _motion_blur(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Average of ``length`` copies shifted along a line (edges repeated): ``[H, W, 3]`` linear radiance."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    offsets = np.linspace(-(length - 1) / 2, (length - 1) / 2, length)
    for s in offsets:
        dx, dy = int(round(s * math.cos(angle))), int(round(s * math.sin(angle)))
        rows = np.clip(np.arange(h) + dy, 0, h - 1)
        cols = np.clip(np.arange(w) + dx, 0, w - 1)
        out += image[rows][:, cols]
    return out / length


def apply_condition(rng: np.random.Generator, condition: str, radiance: np.ndarray,
                    exposure: float) -> tuple[np.ndarray, dict[str, float]]:  # fmt: skip
    """The 8-bit RGB of a rendered frame under a post-render condition (``low_light``, ``motion_blur``) or plain.

    Args:
        rng: Source of the noise and the blur.
        condition: One of :data:`CONDITION_FRACTIONS`; fog, camouflage and exposure act in the scene already.
        radiance: ``[H, W, 3]`` linear radiance from the renderer.
        exposure: The scene's exposure.

    Returns:
        ``(uint8 [H, W, 3], parameters drawn)`` (``{}`` when none).
    """
    import torch

    from mmseq.data.vision.render import tonemap

    linear = radiance.astype(np.float64) * exposure
    params: dict[str, float] = {}
    if condition == "low_light":  # shot noise (variance proportional to the signal) and read noise
        gain = float(rng.uniform(0.002, 0.005))
        linear = linear + np.sqrt(np.maximum(linear, 0) * gain) * rng.standard_normal(linear.shape)
        linear = linear + 0.003 * rng.standard_normal(linear.shape)
        params["shot_gain"] = round(gain, 5)
    elif condition == "motion_blur":
        length = max(3, int(round(rng.uniform(0.02, 0.045) * radiance.shape[1])))
        angle = float(rng.uniform(-0.35, 0.35))
        linear = _motion_blur(linear, length, angle)
        params.update(blur_px=length, blur_angle=round(angle, 4))
    rgb = tonemap(torch.from_numpy(np.maximum(linear, 0).astype(np.float32)))
    return rgb.numpy(), params


def _camouflage(scene: Scene, semantic: np.ndarray, instance: np.ndarray) -> dict[str, Any] | None:
    """Give the most visible object the colour and texture of the stuff around its silhouette (in place)."""
    import torch

    n_objects = sum(o.shape.cls != "wall" for o in scene.objects)
    counts = np.bincount(instance.ravel(), minlength=len(scene.objects) + 1)[1 : n_objects + 1]
    if counts.max() < 0.005 * instance.size:
        return None
    k = int(counts.argmax()) + 1
    mask = torch.from_numpy(instance == k)[None, None].float()
    ring = (torch.nn.functional.max_pool2d(mask, 7, stride=1, padding=3)[0, 0] > 0).numpy() & (instance != k)
    stuff = ring & np.isin(semantic, [SEMANTIC_CLASSES.index("ground"), SEMANTIC_CLASSES.index("wall")])
    if not stuff.any():
        return None
    obj = scene.objects[k - 1]
    around = Counter(instance[stuff].tolist()).most_common(1)[0][0]  # 0: the ground, else a wall
    if around == 0:
        obj.rgb, obj.texture, against = np.array(scene.ground_rgb), scene.ground_texture, "ground"
    else:
        obj.rgb, obj.texture, against = np.array(scene.objects[around - 1].rgb), scene.objects[around - 1].texture, \
            "wall"  # fmt: skip
    obj.material, obj.colour = "matte", ""
    return {"instance": k, "against": against}


# ------------------------------------------------------------------------------------------------ depth
def sensor_depth(rng: np.random.Generator, depth: np.ndarray, fx: float, max_range: float,
                 segments: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """A range sensor's reading of the true depth: disparity noise, range limits, edge and blob holes.

    The noise is :data:`DISPARITY_NOISE` px at a width of 768 and scales with the width, so every profile sees
    the same relative depth error.

    Args:
        rng: Source of the noise and holes.
        depth: ``[H, W]`` true depth in metres (``inf`` for the sky).
        fx: Focal length in pixels (the disparity is ``BASELINE * fx / depth``).
        max_range: Farther pixels are invalid.
        segments: ``[H, W]`` ids of the surfaces (class and instance); where two meet with a depth step of more
            than 10% in a 3x3 window, most pixels are lost (occluded in the other view). ``None``: no edge holes.

    Returns:
        ``[H, W]`` disparity in pixels, 0 where invalid.
    """
    import torch

    h, w = depth.shape
    valid = np.isfinite(depth) & (depth >= MIN_RANGE) & (depth <= max_range)
    safe = np.where(valid, depth, 1.0)
    disparity = BASELINE * fx / safe + DISPARITY_NOISE * (w / 768) * rng.standard_normal(depth.shape)
    edges = np.zeros(depth.shape, dtype=bool)
    if segments is not None:
        def pool(a: np.ndarray) -> np.ndarray:
            return torch.nn.functional.max_pool2d(torch.from_numpy(a)[None, None], 3, stride=1, padding=1)[0, 0].numpy()

        t = np.where(np.isfinite(depth), depth, 1e4)
        seg = segments.astype(np.float64)
        boundary = pool(seg) != -pool(-seg)
        edges = boundary & (pool(t) > 1.1 * -pool(-t)) & (rng.random(depth.shape) < 0.8)
    blobs = np.zeros(depth.shape, dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.poisson(3))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.01, 0.04) * w, rng.uniform(0.01, 0.04) * w
        blobs |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    keep = valid & ~edges & ~blobs & (disparity > 0)
    return np.where(keep, disparity, 0.0)


def encode_disparity(disparity: np.ndarray) -> np.ndarray:
    """Cityscapes' 16-bit disparity code ``p = 256 d + 1`` (0 invalid; too near to code is invalid too)."""
    p = np.round(disparity * 256.0) + 1.0
    return np.where((disparity > 0) & (p <= 65535), p, 0).astype(np.uint16)


# ------------------------------------------------------------------------------------------------ render
def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _render_chunk(task) -> list[dict[str, Any]]:
    """Render a chunk of frames: scenes, conditions, sensor depth, the encoded files."""
    from mmseq.data.vision.render import render

    seed, split, (width, height), items, encodings = task
    out = []
    scenes, rngs = [], []
    for index, layout, condition in items:
        rng = _rng(seed, _SPLIT_CODES[split], index)
        scene = sample_scene(rng, layout, width, height)
        if condition == "fog":
            visibility = rng.uniform(12, 30) if layout == "street" else rng.uniform(4, 8)
            scene.fog_density, scene.fog_rgb = 3.0 / visibility, np.full(3, rng.uniform(0.72, 0.85))
        elif condition == "low_light":
            scene.exposure = float(rng.uniform(0.05, 0.12))
        elif condition == "overexposure":
            scene.exposure = float(rng.uniform(4.0, 8.0))
        scenes.append(scene)
        rngs.append(rng)
    rendering = render(scenes)
    extra: dict[int, dict[str, Any]] = {}
    redo = []
    for b, (index, layout, condition) in enumerate(items):
        if condition == "camouflage":
            info = _camouflage(scenes[b], rendering.semantic[b].numpy(), rendering.instance[b].numpy())
            if info is not None:
                extra[b] = info
                redo.append(b)
    again = render([scenes[b] for b in redo]) if redo else None
    for b, (index, layout, condition) in enumerate(items):
        scene, rng = scenes[b], rngs[b]
        source, row = (again, redo.index(b)) if b in redo else (rendering, b)
        rgb, params = apply_condition(rng, condition, source.radiance[row].numpy(), scene.exposure)
        params.update(extra.get(b, {}))
        if scene.fog_density > 0:
            params["visibility_m"] = round(3.0 / scene.fog_density, 2)
        if condition in ("low_light", "overexposure"):
            params["exposure"] = round(scene.exposure, 4)
        semantic, instance = source.semantic[row].numpy(), source.instance[row].numpy()
        depth = source.depth[row].numpy()
        labels = LABEL_OF_SEMANTIC[semantic]
        is_object = np.isin(labels, np.arange(4, len(SCENE_CLASSES)))
        instance_ids = np.where(is_object, labels.astype(np.int64) * 1000 + instance, labels).astype(np.uint16)
        cam = scene.camera
        disparity = sensor_depth(rng, depth, cam.fx, MAX_RANGE[layout], semantic * 1000 + instance)
        files = {"image": _png(rgb), "disparity": _png(encode_disparity(disparity)), "labels": _png(labels),
                 "instances": _png(instance_ids)}  # fmt: skip
        if encodings:
            files.update(_encodings(encodings, disparity, cam))
        forward = cam.rotation[2]
        camera = {"extrinsic": {"baseline": BASELINE, "pitch": round(-math.asin(forward[2]), 6), "roll": 0.0,
                                "yaw": round(math.atan2(-forward[0], forward[1]), 6), "x": 0.0, "y": 0.0,
                                "z": round(float(cam.position[2]), 6),
                                "world_to_camera": np.round(cam.extrinsics, 8).tolist()},
                  "intrinsic": {"fx": cam.fx, "fy": cam.fy, "u0": cam.cx, "v0": cam.cy}}  # fmt: skip
        n_objects = sum(o.shape.cls != "wall" for o in scene.objects)
        out.append({"index": index, "files": files, "camera": camera, "params": params, "objects": n_objects})
    return out


def _encodings(encodings: Sequence[str], disparity: np.ndarray, cam: Camera) -> dict[str, bytes]:
    import torch

    from mmseq.data.vision.transforms import colorize_depth_jet, hha_encode

    depth = torch.from_numpy(np.where(disparity > 0, BASELINE * cam.fx / np.maximum(disparity, 1e-9), 0.0)).float()
    files = {}
    if "jet" in encodings:
        files["depthJet"] = _png(colorize_depth_jet(depth, MIN_RANGE).permute(1, 2, 0).numpy())
    if "hha" in encodings:
        k = torch.tensor(cam.intrinsics, dtype=torch.float32)
        k[0, 2] -= 0.5  # hha_encode puts pixel centres at integers
        k[1, 2] -= 0.5
        up = torch.tensor(cam.rotation @ np.array([0.0, 0.0, 1.0]), dtype=torch.float32)
        files["hha"] = _png(hha_encode(depth, k, up).permute(1, 2, 0).numpy())
    return files


# ------------------------------------------------------------------------------------------------- build
def _exact(rng: np.random.Generator, n: int, fractions: dict[str, float]) -> list[str]:
    """``n`` labels with ``round(fraction * n)`` of each (the rest the first), in random order."""
    labels: list[str] = []
    for name, fraction in list(fractions.items())[1:]:
        labels += [name] * int(round(fraction * n))
    labels = [next(iter(fractions))] * (n - len(labels)) + labels
    return [labels[k] for k in rng.permutation(n)]


def _frame_plan(spec: dict[str, Any], seed: int) -> dict[str, list[tuple[int, str, str]]]:
    plan = {}
    for split in SPLITS:
        n = spec[split]
        rng = _rng(seed, _SPLIT_CODES[split], 10**9)
        layouts = _exact(rng, n, {"street": 0.5, "room": 0.5})
        conditions = _exact(rng, n, CONDITION_FRACTIONS)
        plan[split] = [(i, layouts[i], conditions[i]) for i in range(n)]
    return plan


def build_scenes(out: str | os.PathLike, profile: str = "quick", seed: int = 0, jobs: int = 1,
                 encodings: Sequence[str] = (), overwrite: bool = False, progress: bool | None = None) -> dict:
    """Generate the RGB-D scenes into ``out`` (see the module text for the layout).

    Args:
        out: Output folder (created; an earlier dataset there is replaced only with ``overwrite``).
        profile: ``tiny`` (tests, seconds), ``quick`` or ``full`` (see :data:`PROFILES`).
        seed: Seed of every random choice; the same seed gives the same bytes, whatever ``jobs``.
        jobs: Worker processes for rendering.
        encodings: Also write the sensor depth as ``jet`` and/or ``hha`` images.
        overwrite: Replace an earlier dataset in ``out``.
        progress: Show a progress bar (default: for every profile but ``tiny``).

    Returns:
        The statistics also written to ``scenes.json`` (without the per-frame list).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    for e in encodings:
        if e not in ("jet", "hha"):
            raise ConfigError(f"depth encodings are 'jet' and 'hha', got {e!r}")
    from tqdm import tqdm

    root = prepare_output_dir(Path(out), MARKER, overwrite, "dataset")
    started = time.perf_counter()
    spec = PROFILES[profile]
    progress = profile != "tiny" if progress is None else progress
    plan = _frame_plan(spec, seed)
    tasks = [(seed, split, spec["size"], plan[split][i : i + CHUNK], tuple(sorted(encodings)))
             for split in SPLITS for i in range(0, len(plan[split]), CHUNK)]  # fmt: skip
    pool = None
    if jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init)
    import torch

    threads = torch.get_num_threads()  # in-process rendering runs on one thread; the caller's setting comes back
    frames: list[dict[str, Any]] = []
    names = {"image": ("leftImg8bit", "leftImg8bit"), "disparity": ("disparity", "disparity"),
             "labels": ("gtFine", "gtFine_labelIds"), "instances": ("gtFine", "gtFine_instanceIds"),
             "depthJet": ("depthJet", "depthJet"), "hha": ("hha", "hha")}  # fmt: skip
    try:
        if pool is None:
            _worker_init()
        results = map(_render_chunk, tasks) if pool is None else pool.imap(_render_chunk, tasks)
        for task, chunk in zip(tasks, tqdm(results, total=len(tasks), desc="render scenes", unit="chunk",
                                           disable=not progress)):  # fmt: skip
            split = task[1]
            for r, (index, layout, condition) in zip(chunk, task[3]):
                frame = f"{layout}_{_SPLIT_CODES[split] * 100000 + index:06d}_000019"  # unique over splits
                for key, data in r["files"].items():
                    folder, suffix = names[key]
                    path = root / folder / split / layout / f"{frame}_{suffix}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                cam_path = root / "camera" / split / layout / f"{frame}_camera.json"
                cam_path.parent.mkdir(parents=True, exist_ok=True)
                cam_path.write_text(json.dumps(r["camera"], indent=1), encoding="utf-8")
                frames.append({"id": frame, "split": split, "layout": layout, "condition": condition,
                               "objects": r["objects"], "params": r["params"]})  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.close()
            pool.join()
    stats: dict[str, Any] = {
        "profile": profile, "seed": seed, "size": list(spec["size"]),
        "classes": [{"id": i, "name": n, "color": list(CLASS_COLOURS[i])} for i, n in enumerate(SCENE_CLASSES)],
        "ignore_index": 0, "condition_fractions": CONDITION_FRACTIONS,
        "depth": {"baseline": BASELINE, "disparity_noise_px": DISPARITY_NOISE, "min_range": MIN_RANGE,
                  "max_range": MAX_RANGE, "encoding": "p = 256 d + 1, 0 invalid; depth = baseline fx / d"},
        "encodings": sorted(encodings),
        "splits": {s: {"frames": spec[s], "conditions": dict(Counter(f["condition"] for f in frames
                                                                     if f["split"] == s)),
                       "layouts": dict(Counter(f["layout"] for f in frames if f["split"] == s))} for s in SPLITS},
    }  # fmt: skip
    (root / MARKER).write_text(json.dumps({**stats, "frames": frames}, indent=1), encoding="utf-8")
    stats["seconds_to_build"] = round(time.perf_counter() - started, 1)
    return stats


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # a render's bytes then depend on nothing but its scene


def read_scenes(out: str | os.PathLike, split: str = "train", **kwargs):
    """The split through :class:`~mmseq.data.vision.readers_rgbd.Cityscapes` with ``label_set="label_ids"``
    (labels are :data:`SCENE_CLASSES` ids, 0 = void); keyword args pass on."""
    from mmseq.data.vision.readers_rgbd import Cityscapes

    kwargs.setdefault("label_set", "label_ids")
    return Cityscapes(out, split, **kwargs)
