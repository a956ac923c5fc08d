"""The synthetic point-cloud product: ``mmseq data synth points`` (I2P-MAE / Point-MAE roles of the public sets).

Every cloud comes from the object classes of :mod:`mmseq.data.vision.objects` (the same class builders as the
captioned images and the RGB-D scenes, so ``chair`` is the same shape family everywhere). Three sets are written,
each in the on-disk layout of the public dataset whose role it plays, so the readers of
:mod:`mmseq.data.vision.readers_points` read them unchanged:

* **pool** (ShapeNet-55 role, unlabelled pre-training): complete surfaces, 8192 xyz points per instance, one
  ``.npy`` per object in Point-MAE's ``ShapeNet55-34`` layout (the class is visible only through the synset-like
  file prefix, as in ShapeNet);
* **clean** (ModelNet40 ``ply_hdf5_2048`` role, classification / Linear-SVM): complete surfaces in the canonical
  orientation of the class, 2048 points with normals and source face ids, zero-mean, in the unit sphere;
* **hard** (ScanObjectNN ``PB_T50_RS`` role): single-view scans. The object stands on the ground with 1-3
  neighbours and sometimes a wall, is ray cast from one random viewpoint (:func:`~mmseq.data.vision.render.render`,
  so only the surfaces that camera sees are there), the depth gets sensor noise, the points inside the object's
  bounding box *translated by up to 50% of its size* are kept (background included, ``mask = -1`` on it), and the
  cloud is rotated about the vertical and scaled.

Layout under ``out``::

    points.json                                   profile, seed, classes, counts (the product's marker)
    ShapeNet55-34/shapenet_pc/<synset>-<model id>.npy, ShapeNet55-34/ShapeNet-55/{train,test}.txt,
    ShapeNet55-34/shapenet_synset_dict.json       synset -> class name (Point-BERT keeps this map beside the set)
    modelnet40_ply_hdf5_2048/ply_data_{train,test}<k>.h5 (data, normal, faceId, label), {train,test}_files.txt,
                                  shape_names.txt, ply_data_<split>_<k>_id2file.json
    h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5 (data, label, mask),
    h5_files/shape_names.txt                      this product's class names (ScanObjectNN's 15 do not apply)

Every random choice comes from a generator seeded by ``(seed, set, split, index)``, so the files are the same bytes
for a seed whatever ``jobs`` is, and the renderer runs with one torch thread (its documented deterministic mode).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmseq.data.vision.objects import CLASS_NAMES, rotation_z
from mmseq.data.output import prepare_output_dir
from mmseq.errors import ConfigError, unknown_choice

__all__ = ["PROFILES", "PointsProfile", "build_points", "SYNSETS", "MARKER", "POOL_POINTS", "CLEAN_POINTS",
           "HARD_POINTS"]  # fmt: skip

MARKER = "points.json"
POOL_POINTS, CLEAN_POINTS, HARD_POINTS = 8192, 2048, 2048
H5_ROWS = 2048  # shapes per ply_data_*.h5 file, as in the PointNet release
SCAN_SIZE = 128  # pixels of the square scan camera
SCAN_FOV = 45.0  # degrees
SCAN_BATCH = 12  # scenes per render() call (a pixel does not depend on its batch)
HARD_SHIFT = 0.5  # the box moves by up to this fraction of its size along x and y, half that along z ("T50")
BOX_MARGIN = 0.05  # the box is this fraction of the object's largest extent larger on every side
HARD_SCALE = (0.75, 1.0)  # isotropic scale factor (our reading of "scale75")
DEPTH_NOISE = 0.003  # Gaussian sensor noise, standard deviation as a fraction of the depth
# ShapeNet-style 8-digit synset per class ("9" + class index: no WordNet offset starts with 9)
SYNSETS = {name: f"9{i:07d}" for i, name in enumerate(CLASS_NAMES)}
_SET_CODES = {"pool": 1, "clean": 2, "hard": 3}
_SPLIT_CODES = {"train": 0, "test": 1}


@dataclass(frozen=True)
class PointsProfile:
    """Instances per class and split of each set.

    Attributes:
        pool: ``(train, test)`` complete clouds per class for the pre-training pool.
        clean: ``(train, test)`` complete clouds per class for the clean classification split.
        hard: ``(train, test)`` objects per class for the hard split; each is scanned ``views`` times.
        views: Scans per hard object (different viewpoint, neighbours, box shift, rotation and scale).
    """

    pool: tuple[int, int]
    clean: tuple[int, int]
    hard: tuple[int, int]
    views: int


PROFILES = {
    "tiny": PointsProfile(pool=(1, 1), clean=(1, 1), hard=(1, 1), views=1),
    "quick": PointsProfile(pool=(32, 8), clean=(40, 12), hard=(20, 5), views=3),
    "full": PointsProfile(pool=(800, 200), clean=(400, 100), hard=(160, 40), views=5),
}


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1)).max()


# ------------------------------------------------------------------------------------------ complete clouds
def complete_cloud(cls: str, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A complete surface sample of a fresh instance of ``cls``, zero-mean and scaled into the unit sphere.

    Args:
        cls: One of :data:`~mmseq.data.vision.objects.CLASS_NAMES`.
        rng: Source of the proportions and the samples.
        count: Points.

    Returns:
        ``(points [count, 3], normals [count, 3], face_ids [count])`` as float32, float32, int32, in the class's
        canonical frame (z up, base on the ground before centring).
    """
    from mmseq.data.vision.objects import make_shape, sample_surface

    shape = make_shape(cls, rng, 1.0)
    points, normals, faces = sample_surface(shape, count, rng)
    return _unit_sphere(points).astype(np.float32), normals.astype(np.float32), faces.astype(np.int32)


def _pool_chunk(task: tuple) -> list[str]:
    root, seed, split, items = task
    names = []
    for index, cls in items:
        points, _, _ = complete_cloud(cls, _rng(seed, _SET_CODES["pool"], _SPLIT_CODES[split], index), POOL_POINTS)
        model = hashlib.md5(f"mmseq-points/{seed}/{split}/{index}".encode()).hexdigest()
        name = f"{SYNSETS[cls]}-{model}.npy"
        np.save(Path(root) / "ShapeNet55-34" / "shapenet_pc" / name, points)
        names.append(name)
    return names


def _clean_chunk(task: tuple) -> list[tuple]:
    seed, split, items = task
    return [complete_cloud(cls, _rng(seed, _SET_CODES["clean"], _SPLIT_CODES[split], index), CLEAN_POINTS)
            for index, cls in items]  # fmt: skip


# ------------------------------------------------------------------------------------------------- scans
def _scan_scene(object_rng: np.random.Generator, rng: np.random.Generator, cls: str):
    """The target of class ``cls`` at the origin with 1-3 neighbours, maybe a wall, and a camera looking at it.

    The target comes from ``object_rng`` alone (every view of an object scans the same instance); the viewpoint,
    the neighbours and the wall from ``rng``.
    """
    from mmseq.data.vision.world import Camera, Scene, random_light, random_object, wall

    size = float(object_rng.uniform(0.7, 1.3))
    target = random_object(object_rng, cls, size)
    lo, hi = target.shape.bounds()
    extent = hi - lo
    shift = rng.uniform(-1.0, 1.0, 3) * HARD_SHIFT * extent * np.array([1.0, 1.0, 0.5])
    look = rotation_z(target.yaw) @ ((lo + hi) / 2 + shift)  # the shifted box's centre (target at the origin)
    radius = 0.5 * float(np.linalg.norm(extent)) * (1 + 2 * BOX_MARGIN)
    azimuth, elevation = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(10, 60))
    distance = radius / math.sin(math.radians(SCAN_FOV) / 2) * rng.uniform(0.95, 1.15)
    eye = look + distance * np.array([math.cos(elevation) * math.cos(azimuth),
                                      math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])  # fmt: skip
    objects = [target]
    for _ in range(int(rng.integers(1, 4))):
        other = random_object(rng, CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))], size * rng.uniform(0.5, 1.2))
        for _ in range(20):  # beside the target, not over the camera, not into another neighbour
            angle = rng.uniform(0, 2 * math.pi)
            gap = target.shape.footprint() + other.shape.footprint() + size * rng.uniform(0.05, 0.6)
            xy = gap * np.array([math.cos(angle), math.sin(angle)])
            clear = all(math.hypot(*(xy - o.position[:2])) > o.shape.footprint() + other.shape.footprint()
                        for o in objects[1:])  # fmt: skip
            behind = math.cos(angle - azimuth) < math.cos(math.radians(40))  # not between camera and target
            if clear and behind and math.hypot(*(xy - eye[:2])) > other.shape.footprint() + 0.2 * size:
                other.position = np.array([xy[0], xy[1], 0.0])
                objects.append(other)
                break
    if rng.random() < 0.5:  # a wall behind the target, across the axis closest to the viewing direction
        axis = int(np.argmax(np.abs(eye[:2])))
        side = -math.copysign(1.0, eye[axis])
        near = side * (target.shape.footprint() + size * rng.uniform(0.2, 1.0))
        lo_w, hi_w = np.array([-4.0, -4.0, 0.0]), np.array([4.0, 4.0, 2.5 * size])
        lo_w[axis], hi_w[axis] = (near, near + side * 0.1) if side > 0 else (near + side * 0.1, near)
        grey = rng.uniform(0.5, 0.9)
        objects.append(wall(lo_w, hi_w, np.array([grey, grey, grey])))
    camera = Camera.look_at(eye, look, SCAN_FOV, SCAN_SIZE, SCAN_SIZE)
    return Scene(objects, camera, random_light(rng)), target, shift


def _back_project(rendering, b: int, camera) -> tuple[np.ndarray, np.ndarray]:
    """World points and instance ids of the pixels of scene ``b`` that see a surface (not the sky)."""
    depth = rendering.depth[b].numpy().astype(np.float64)
    instance = rendering.instance[b].numpy()
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u]
    cam = np.stack([(u + 0.5 - camera.cx) / camera.fx * z, (v + 0.5 - camera.cy) / camera.fy * z, z], axis=1)
    return cam @ camera.rotation + camera.position, instance[v, u]


def _cut(target, shift: np.ndarray, world: np.ndarray, instance: np.ndarray):
    """The points in the target's shifted bounding box, ``(points [N, 3], foreground [N])`` in the box's frame
    (object axes, box centre at 0); ``None`` when there are fewer than ``HARD_POINTS / 2`` or the target makes
    less than 30% (or 256 points) of them."""
    local = (world - target.position) @ rotation_z(target.yaw)  # world -> object frame
    lo, hi = target.shape.bounds()
    margin = BOX_MARGIN * (hi - lo).max()
    inside = np.all((local >= lo - margin + shift) & (local <= hi + margin + shift), axis=1)
    fg = instance[inside] == 1
    if len(fg) < HARD_POINTS // 2 or fg.sum() < 256 or fg.mean() < 0.3:
        return None
    return local[inside] - (lo + hi) / 2 - shift, fg


def scan_cloud(cls: str, seed: int = 0, index: int = 0, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One hard-split cloud: view ``view`` of train object ``index`` of class ``cls`` (as :func:`build_points`).

    Returns:
        ``(points [HARD_POINTS, 3] float32, foreground [HARD_POINTS] bool)``.
    """
    return _scan_chunk((seed, "train", [(index, view, cls)]))[0]


def _finish_scan(rng: np.random.Generator, points: np.ndarray, fg: np.ndarray):
    n = len(points)
    pick = rng.choice(n, HARD_POINTS, replace=False) if n >= HARD_POINTS else np.concatenate(
        [np.arange(n), rng.choice(n, HARD_POINTS - n)])  # fmt: skip
    pick = rng.permutation(pick)
    points, fg = points[pick], fg[pick]
    points = points / np.sqrt((points**2).sum(axis=1)).max()
    rotation = rotation_z(rng.uniform(0, 2 * math.pi))
    points = points @ rotation.T * rng.uniform(*HARD_SCALE)
    return points.astype(np.float32), fg


def _scan_chunk(task: tuple) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scans of ``items``: ``(object index, view, class)`` triples of one split."""
    from mmseq.data.vision.render import render

    seed, split, items = task
    key = (seed, _SET_CODES["hard"], _SPLIT_CODES[split])
    rngs = [_rng(*key, index, 1 + view) for index, view, _ in items]
    results: list = [None] * len(items)
    todo = list(range(len(items)))
    while todo:
        drawn = {k: _scan_scene(_rng(*key, items[k][0], 0), rngs[k], items[k][2]) for k in todo}
        for start in range(0, len(todo), SCAN_BATCH):
            batch = todo[start : start + SCAN_BATCH]
            rendering = render([drawn[k][0] for k in batch], shadows=False)
            for b, k in enumerate(batch):
                scene, target, shift = drawn[k]
                world, instance = _back_project(rendering, b, scene.camera)
                depth = (world - scene.camera.position) @ scene.camera.rotation[2]
                world = world + rngs[k].normal(size=world.shape) * (DEPTH_NOISE * depth)[:, None]
                cut = _cut(target, shift, world, instance)
                if cut is not None:
                    results[k] = _finish_scan(rngs[k], *cut)
        todo = [k for k in todo if results[k] is None]  # drawn again (the target hidden behind a neighbour)
    return results


# ------------------------------------------------------------------------------------------------- writing
def _run(fn: Callable, tasks: list, pool, desc: str, progress: bool):
    from tqdm import tqdm

    results = map(fn, tasks) if pool is None else pool.imap(fn, tasks)
    return tqdm(results, total=len(tasks), desc=desc, unit="chunk", leave=False, disable=not progress)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _items(per_class: int, offset: int = 0) -> list[tuple[int, str]]:
    """``per_class`` instances of every class, interleaved (every prefix is balanced)."""
    return [(offset + i, CLASS_NAMES[i % len(CLASS_NAMES)]) for i in range(per_class * len(CLASS_NAMES))]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _write_clean(root: Path, split: str, items: list, rows) -> None:
    import h5py

    folder = root / "modelnet40_ply_hdf5_2048"
    files = []
    counters: dict[str, int] = {}
    results = iter(rows)
    for k, part in enumerate(_chunks(items, H5_ROWS)):
        name = f"ply_data_{split}{k}.h5"
        files.append(f"data/modelnet40_ply_hdf5_2048/{name}")
        sources = []
        with h5py.File(folder / name, "w") as h5:
            data = h5.create_dataset("data", (len(part), CLEAN_POINTS, 3), dtype="float32")
            normal = h5.create_dataset("normal", (len(part), CLEAN_POINTS, 3), dtype="float32")
            face = h5.create_dataset("faceId", (len(part), CLEAN_POINTS), dtype="int32")
            h5["label"] = np.array([[CLASS_NAMES.index(cls)] for _, cls in part], dtype=np.uint8)
            row = 0
            while row < len(part):
                for points, normals, faces in next(results):
                    data[row], normal[row], face[row] = points, normals, faces
                    cls = part[row][1]
                    counters[cls] = counters.get(cls, 0) + 1
                    sources.append(f"{cls}/{cls}_{counters[cls]:04d}.ply")
                    row += 1
        (folder / f"ply_data_{split}_{k}_id2file.json").write_text(json.dumps(sources))
    (folder / f"{split}_files.txt").write_text("".join(f + "\n" for f in files))


def _write_hard(root: Path, split: str, items: list, rows) -> None:
    import h5py

    prefix = {"train": "training", "test": "test"}[split]
    path = root / "h5_files" / "main_split" / f"{prefix}_objectdataset_augmentedrot_scale75.h5"
    with h5py.File(path, "w") as h5:
        data = h5.create_dataset("data", (len(items), HARD_POINTS, 3), dtype="float32")
        mask = h5.create_dataset("mask", (len(items), HARD_POINTS), dtype="int32")
        labels = np.array([CLASS_NAMES.index(cls) for _, _, cls in items], dtype=np.int32)
        h5["label"] = labels
        row = 0
        for chunk in rows:
            for points, fg in chunk:
                data[row] = points
                mask[row] = np.where(fg, labels[row], -1)
                row += 1


def build_points(out: str | os.PathLike, profile: str = "quick", seed: int = 0, jobs: int = 1,
                 overwrite: bool = False, progress: bool | None = None) -> dict:  # fmt: skip
    """Generate the synthetic point-cloud product into ``out`` (layout and sets: module docstring).

    Args:
        out: Output folder (created). A non-empty folder is refused unless it holds an earlier product
            (``points.json``) and ``overwrite`` is set.
        profile: ``tiny`` (tests, seconds), ``quick`` or ``full`` (:data:`PROFILES`).
        seed: Seed of every random choice; the same seed gives the same bytes for any ``jobs``.
        jobs: Worker processes.
        overwrite: Replace an earlier product in ``out``.
        progress: Show tqdm bars (default: for ``quick`` and ``full``).

    Returns:
        The statistics written to ``points.json``, plus ``seconds`` (build time, not written).

    Raises:
        ConfigError: Unknown profile.
        InputError: ``out`` is not empty and not an earlier product, or is one and ``overwrite`` is not set.
    """
    import torch

    if profile not in PROFILES:
        raise ConfigError(unknown_choice("points profile", profile, PROFILES))
    root = prepare_output_dir(Path(out), MARKER, overwrite, "point-cloud product")
    started = time.perf_counter()
    p = PROFILES[profile]
    progress = profile != "tiny" if progress is None else progress
    for folder in ("ShapeNet55-34/shapenet_pc", "ShapeNet55-34/ShapeNet-55", "modelnet40_ply_hdf5_2048",
                   "h5_files/main_split"):  # fmt: skip
        (root / folder).mkdir(parents=True, exist_ok=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = None
    if jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init)
    stats: dict = {"profile": profile, "seed": seed, "classes": list(CLASS_NAMES), "profile_sizes": asdict(p),
                   "points": {"pool": POOL_POINTS, "clean": CLEAN_POINTS, "hard": HARD_POINTS}, "sets": {}}
    try:
        for split, s in _SPLIT_CODES.items():
            items = _items(p.pool[s])
            tasks = [(str(root), seed, split, c) for c in _chunks(items, 16)]
            names = [n for chunk in _run(_pool_chunk, tasks, pool, f"pool {split}", progress) for n in chunk]
            (root / "ShapeNet55-34" / "ShapeNet-55" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
            stats["sets"].setdefault("pool", {})[split] = len(names)
        for split, s in _SPLIT_CODES.items():
            items = _items(p.clean[s])
            tasks = [(seed, split, c) for c in _chunks(items, 16)]
            _write_clean(root, split, items, _run(_clean_chunk, tasks, pool, f"clean {split}", progress))
            stats["sets"].setdefault("clean", {})[split] = len(items)
        for split, s in _SPLIT_CODES.items():
            objects = _items(p.hard[s])
            items = [(i, v, cls) for i, cls in objects for v in range(p.views)]
            tasks = [(seed, split, c) for c in _chunks(items, 2 * SCAN_BATCH)]
            _write_hard(root, split, items, _run(_scan_chunk, tasks, pool, f"hard {split}", progress))
            stats["sets"].setdefault("hard", {})[split] = len(items)
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.close()
            pool.join()

    names = "".join(c + "\n" for c in CLASS_NAMES)
    (root / "modelnet40_ply_hdf5_2048" / "shape_names.txt").write_text(names)
    (root / "h5_files" / "shape_names.txt").write_text(names)
    (root / "ShapeNet55-34" / "shapenet_synset_dict.json").write_text(json.dumps(
        {synset: name for name, synset in SYNSETS.items()}, indent=1))  # fmt: skip
    (root / MARKER).write_text(json.dumps(stats, indent=1) + "\n")
    return dict(stats, seconds=round(time.perf_counter() - started, 2))
