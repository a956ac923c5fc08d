"""Synthetic captioned images and VQA: ``mmseq data synth captions`` (COCO captions + VQAv2 layouts).

Every image shows 1-4 objects of the vision world (:mod:`mmseq.data.vision.objects`) on a ground plane, each with a
size (small / large), one of eight colours, a material and one of the 12 classes. From the scene description a
grammar writes five reference captions per image ("two small red cubes to the left of a blue torus") and one VQA
question per question type (colour, shape, count, existence, yes/no spatial relation) with a closed answer
vocabulary and ten answers per question (synonyms where the grammar has them: "grey" for gray, "ball" for sphere,
"two" for 2).

Compositional split: :data:`HELD_OUT_PAIRS` (one colour per class) never appear in ``train2014``, neither in an
image nor in a caption or question. ``val2014`` (the evaluation split, as VQAv2's val is used) holds two halves,
marked per image by a NoCaps-style ``domain``: ``in-domain`` (seen pairs only) and ``out-domain`` (at least one
held-out pair).

Layout (``out``)::

    annotations/captions_{train2014,val2014}.json      COCO captions (images carry domain and the objects)
    {train2014,val2014}/COCO_<split>_<image_id:012d>.jpg
    Questions/v2_OpenEnded_mscoco_<split>_questions.json
    Annotations/v2_mscoco_<split>_annotations.json      VQAv2 (question_type = the type name)
    answers.json                                        answer vocabulary and synonyms per question type
    dataset.json                                        profile, seed, counts, held-out pairs, classes

Read back with the public readers: :func:`read_captions` and :func:`read_vqa` (``CocoCaptions`` and ``VQAv2`` with
the image folder above), and ``NoCaps(..., annotation_file=...)`` for per-domain scores.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mmseq.data.vision.objects import CLASS_NAMES
from mmseq.data.vision.world import Camera, Scene, place_objects, random_light, random_object
from mmseq.data.output import prepare_output_dir
from mmseq.errors import ConfigError

__all__ = ["PROFILES", "SPLITS", "CAPTION_COLOURS", "SIZES", "HELD_OUT_PAIRS", "QUESTION_TYPES", "ANSWERS",
           "build_captions", "read_captions", "read_vqa", "describe_captions", "make_questions"]  # fmt: skip

PROFILES: dict[str, dict[str, int]] = {
    "tiny": {"size": 64, "train2014": 16, "val2014": 12},
    "quick": {"size": 128, "train2014": 1600, "val2014": 400},
    "full": {"size": 224, "train2014": 20000, "val2014": 4000},
}
SPLITS = ("train2014", "val2014")
_SPLIT_CODES = {"train2014": 1, "val2014": 2}
MARKER = "dataset.json"
CAPTIONS_PER_IMAGE = 5
CHUNK = 16  # images rendered per batch (and per worker task)

CAPTION_COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan", "brown", "gray")
SIZES = {"small": (0.45, 0.6), "large": (0.85, 1.1)}  # largest extent in metres
MATERIAL_WORDS = {"matte": ("matte", "rubber"), "shiny": ("shiny", "glossy"), "metal": ("metallic", "metal")}
# one held-out colour per class; every colour is held out with one or two classes and seen with the others
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = tuple((CAPTION_COLOURS[(3 * j + 1) % 8], cls)
                                                    for j, cls in enumerate(CLASS_NAMES))  # fmt: skip
# (singular, plural) words per class, canonical first
SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "cube": (("cube", "cubes"), ("block", "blocks"), ("box", "boxes")),
    "sphere": (("sphere", "spheres"), ("ball", "balls")),
    "cylinder": (("cylinder", "cylinders"),),
    "cone": (("cone", "cones"),),
    "torus": (("torus", "tori"), ("donut", "donuts")),
    "pyramid": (("pyramid", "pyramids"),),
    "capsule": (("capsule", "capsules"), ("pill", "pills")),
    "ring": (("ring", "rings"), ("hoop", "hoops")),
    "prism": (("prism", "prisms"), ("wedge", "wedges")),
    "stairs": (("staircase", "staircases"), ("flight of stairs", "flights of stairs")),
    "chair": (("chair", "chairs"),),
    "table": (("table", "tables"),),
}  # fmt: skip
COLOUR_SYNONYMS = {"gray": ("grey",), "purple": ("violet",)}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
RELATIONS = {"left": "to the left of", "right": "to the right of", "front": "in front of", "behind": "behind"}
_OPPOSITE = {"left": "right", "right": "left", "front": "behind", "behind": "front"}
RELATION_MARGIN = 0.3  # metres between centres (camera x or depth) for a relation to count as clear

QUESTION_TYPES = {"color": "other", "shape": "other", "count": "number", "exist": "yes/no", "relation": "yes/no"}
ANSWERS: dict[str, dict[str, tuple[str, ...]]] = {  # canonical answer -> synonyms, per question type
    "color": {c: COLOUR_SYNONYMS.get(c, ()) for c in CAPTION_COLOURS},
    "shape": {"cube": ("box", "block"), "sphere": ("ball",), "cylinder": (), "cone": (), "torus": ("donut",),
              "pyramid": (), "capsule": ("pill",), "ring": ("hoop",), "prism": ("wedge",),
              "stairs": ("staircase", "steps"), "chair": (), "table": ()},
    "count": {str(n): (NUMBER_WORDS[n],) for n in range(5)},
    "exist": {"yes": (), "no": ()},
    "relation": {"yes": (), "no": ()},
}  # fmt: skip


# --------------------------------------------------------------------------------------------- scene sampling
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _draw_attributes(rng: np.random.Generator, domain: str) -> list[dict[str, str]]:
    held = set(HELD_OUT_PAIRS)
    count = int(rng.integers(1, 5))
    objects: list[dict[str, str]] = []
    for i in range(count):
        if i > 0 and rng.random() < 0.3:  # a copy of an earlier object's description: groups to count
            objects.append(dict(objects[int(rng.integers(i))], material=str(rng.choice(list(MATERIAL_WORDS)))))
            continue
        while True:
            colour, cls = str(rng.choice(CAPTION_COLOURS)), str(rng.choice(CLASS_NAMES))
            if (colour, cls) not in held:
                break
        objects.append({"colour": colour, "shape": cls, "size": str(rng.choice(list(SIZES))),
                        "material": str(rng.choice(list(MATERIAL_WORDS)))})  # fmt: skip
    if domain == "out-domain":
        colour, cls = HELD_OUT_PAIRS[int(rng.integers(len(HELD_OUT_PAIRS)))]
        objects[int(rng.integers(count))].update(colour=colour, shape=cls)
    return objects


def _in_frame(camera: Camera, objects, margin: float) -> bool:
    for obj in objects:
        lo, hi = obj.shape.bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        world = corners @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) + obj.position
        uvz = camera.project(world)
        if (uvz[:, 2] <= 0.1).any() or (uvz[:, 0] < margin).any() or (uvz[:, 0] > camera.width - margin).any():
            return False
        if (uvz[:, 1] < margin).any() or (uvz[:, 1] > camera.height - margin).any():
            return False
    return True


def sample_scene(rng: np.random.Generator, domain: str, size: int) -> tuple[Scene, list[dict[str, str]]]:
    """One captioned-image scene: 1-4 objects in view of a camera, with their attribute names.

    Args:
        rng: Source of every choice.
        domain: ``in-domain`` (seen colour-class pairs only) or ``out-domain`` (at least one held-out pair).
        size: Image width = height in pixels.

    Returns:
        The scene and, per object (in ``scene.objects`` order), its ``colour``, ``shape``, ``size``, ``material``.
    """
    while True:
        attrs = _draw_attributes(rng, domain)
        objects = [random_object(rng, a["shape"], float(rng.uniform(*SIZES[a["size"]])), a["colour"], a["material"])
                   for a in attrs]  # fmt: skip
        order = sorted(range(len(objects)), key=lambda k: -objects[k].shape.footprint())
        if not place_objects(rng, [objects[k] for k in order], (-1.4, 1.4, -1.4, 1.4), gap=0.12):
            continue
        for _ in range(20):
            azimuth = rng.uniform(0, 2 * math.pi)
            distance, elevation = rng.uniform(4.6, 6.0), math.radians(rng.uniform(28, 45))
            eye = distance * np.array([math.cos(elevation) * math.cos(azimuth),
                                       math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])  # fmt: skip
            camera = Camera.look_at(eye, [0.0, 0.0, 0.3], 42.0, size, size)
            if _in_frame(camera, objects, 0.02 * size):
                ground = np.array([0.60, 0.57, 0.52]) * rng.uniform(0.85, 1.1) + rng.uniform(-0.015, 0.015, 3)
                return Scene(objects, camera, random_light(rng, (35.0, 70.0)), ground_rgb=ground), attrs


def _render_chunk(task: tuple[int, str, int, list[tuple[int, str]]]) -> list[dict[str, Any]]:
    """Render one chunk of images; each is drawn again until every object shows enough pixels."""
    from PIL import Image

    from mmseq.data.vision.render import render

    seed, split, size, items = task
    rngs = [_rng(seed, _SPLIT_CODES[split], index) for index, _ in items]
    least = max(10, int(0.003 * size * size))
    results: list[dict[str, Any] | None] = [None] * len(items)
    todo = list(range(len(items)))
    while todo:
        drawn = {k: sample_scene(rngs[k], items[k][1], size) for k in todo}
        rendering = render([drawn[k][0] for k in todo])
        for b, k in enumerate(todo):
            scene, attrs = drawn[k]
            instance = rendering.instance[b].numpy()
            pixels = np.bincount(instance.ravel(), minlength=len(attrs) + 1)[1:]
            if (pixels < least).any():
                continue
            buffer = io.BytesIO()
            Image.fromarray(rendering.rgb[b].numpy()).save(buffer, format="JPEG", quality=92)
            cam = scene.camera
            for j, (a, obj) in enumerate(zip(attrs, scene.objects), start=1):
                centre = obj.position + np.array([0.0, 0.0, 0.5 * obj.shape.bounds()[1][2]])
                x, _, z = cam.rotation @ (centre - cam.position)  # camera frame: x right, z forward
                ys, xs = np.nonzero(instance == j)
                a.update(x=round(float(x), 4), depth=round(float(z), 4), pixels=int(pixels[j - 1]),
                         bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                               int(ys.max() - ys.min() + 1)])  # fmt: skip
            results[k] = {"index": items[k][0], "jpeg": buffer.getvalue(), "objects": attrs}
        todo = [k for k in todo if results[k] is None]
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- grammar
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(rng: np.random.Generator, obj: dict[str, str], count: int, keys: tuple[str, ...],
            synonyms: bool = True) -> str:  # fmt: skip
    """``"two small red cubes"``: the count and the attributes in ``keys`` (size, material, colour order)."""
    words = []
    if "size" in keys:
        words.append(obj["size"])
    if "material" in keys:
        options = MATERIAL_WORDS[obj["material"]]
        words.append(options[int(rng.integers(len(options)))] if synonyms else options[0])
    if "colour" in keys:
        options = (obj["colour"], *COLOUR_SYNONYMS.get(obj["colour"], ()))
        words.append(options[0] if not synonyms or rng.random() < 0.8 else options[int(rng.integers(len(options)))])
    nouns = SHAPE_WORDS[obj["shape"]] if "shape" in keys else (("object", "objects"),)
    pick = 0 if not synonyms or rng.random() < 0.6 else int(rng.integers(len(nouns)))
    words.append(nouns[pick][0 if count == 1 else 1])
    head = _article(words[0]) if count == 1 else NUMBER_WORDS[count]
    return " ".join([head, *words])


def _groups(objects: list[dict], keys: tuple[str, ...]) -> list[tuple[dict, list[int]]]:
    """Objects grouped by the attributes in ``keys`` (first-appearance order): ``(representative, members)``."""
    out: dict[tuple, tuple[dict, list[int]]] = {}
    for i, obj in enumerate(objects):
        out.setdefault(tuple(obj[k] for k in keys), (obj, []))[1].append(i)
    return list(out.values())


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation(objects: list[dict], a: list[int], b: list[int]) -> str | None:
    """The clear relation of group ``a`` to group ``b`` in the camera's view (``None`` when none holds)."""
    def every(test) -> bool:
        return all(test(objects[i], objects[j]) for i in a for j in b)

    if every(lambda p, q: p["x"] < q["x"] - RELATION_MARGIN):
        return "left"
    if every(lambda p, q: p["x"] > q["x"] + RELATION_MARGIN):
        return "right"
    if every(lambda p, q: p["depth"] < q["depth"] - RELATION_MARGIN):
        return "front"
    if every(lambda p, q: p["depth"] > q["depth"] + RELATION_MARGIN):
        return "behind"
    return None


_LIST_KEYS = (("size", "colour", "shape"), ("colour", "shape"), ("material", "colour", "shape"),
              ("size", "shape"), ("size", "material", "colour", "shape"))  # fmt: skip
_PREFIXES = ("", "", "a picture of ", "a rendering of ", "there is ")


def _caption(rng: np.random.Generator, objects: list[dict], template: int) -> str:
    if template == 0:  # a spatial relation between two groups
        groups = _groups(objects, ("size", "colour", "shape"))
        pairs = [(g, h, rel) for g in groups for h in groups if g is not h
                 if (rel := _relation(objects, g[1], h[1])) is not None]  # fmt: skip
        if pairs:
            g, h, rel = pairs[int(rng.integers(len(pairs)))]
            keys_a = ("size", "colour", "shape") if rng.random() < 0.5 else ("colour", "shape")
            keys_b = ("size", "colour", "shape") if rng.random() < 0.5 else ("colour", "shape")
            if len(_groups([objects[i] for i in g[1] + h[1]], keys_a)) < 2:
                keys_a = keys_b = ("size", "colour", "shape")
            return (f"{_phrase(rng, g[0], len(g[1]), keys_a)} {RELATIONS[rel]} "
                    f"{_phrase(rng, h[0], len(h[1]), keys_b)}")  # fmt: skip
        template = 1
    if template == 1:  # how many objects, then what they are
        n = len(objects)
        head = "a single object:" if n == 1 else f"{NUMBER_WORDS[n]} objects:"
        listing = [_phrase(rng, g[0], len(g[1]), ("colour", "shape")) for g in _groups(objects, ("colour", "shape"))]
        if rng.random() < 0.7:
            return f"{head} {_join(listing)}"
        return f"{NUMBER_WORDS[n]} objects on the ground" if n > 1 else f"{_join(listing)} on the ground"
    keys = _LIST_KEYS[(template - 2) % len(_LIST_KEYS)]
    groups = _groups(objects, keys)
    order = rng.permutation(len(groups))
    listing = _join([_phrase(rng, groups[i][0], len(groups[i][1]), keys) for i in order])
    prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
    if prefix == "there is " and len(groups[order[0]][1]) > 1:
        prefix = "there are "
    return prefix + listing


def describe_captions(rng: np.random.Generator, objects: list[dict], count: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``count`` distinct reference captions of one image from its object descriptions (see the module text)."""
    captions: list[str] = []
    templates = [0, 2, 1, 3, 4, 5, 6]  # relation, full listing, count, then the attribute variants
    for attempt in range(60):
        template = templates[attempt % len(templates)] if attempt < len(templates) else int(rng.integers(7))
        caption = _caption(rng, objects, template)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    return captions


# ---------------------------------------------------------------------------------------------------- questions
def _matches(obj: dict, desc: dict) -> bool:
    return all(obj[k] == v for k, v in desc.items())


def _unique_desc(objects: list[dict], i: int, options: tuple[tuple[str, ...], ...]) -> dict | None:
    for keys in options:
        desc = {k: objects[i][k] for k in keys}
        if sum(_matches(o, desc) for o in objects) == 1:
            return desc
    return None


def _words(desc: dict, noun: bool = True) -> str:
    words = [desc[k] for k in ("size", "material", "colour") if k in desc]
    if "material" in desc:
        words[words.index(desc["material"])] = MATERIAL_WORDS[desc["material"]][0]
    words.append(SHAPE_WORDS[desc["shape"]][0][0] if "shape" in desc else ("object" if noun else "thing"))
    return " ".join(words)


def _candidates(objects: list[dict], rng: np.random.Generator, seen_only: bool) -> dict[str, list[tuple]]:
    """Every question the grammar can ask of one image: ``{type: [(question, answer, pairs mentioned)]}``."""
    held = set(HELD_OUT_PAIRS)
    out: dict[str, list[tuple]] = {t: [] for t in QUESTION_TYPES}
    for i, obj in enumerate(objects):
        desc = _unique_desc(objects, i, (("shape",), ("size", "shape"), ("material", "shape")))
        if desc is not None:
            out["color"].append((f"what color is the {_words(desc)}?", obj["colour"], ()))
        desc = _unique_desc(objects, i, (("colour",), ("size", "colour"), ("material", "colour")))
        if desc is not None:
            form = "what shape is the {} object?" if rng.random() < 0.5 else "what is the {} thing?"
            out["shape"].append((form.format(_words(desc, noun=False).rsplit(" ", 1)[0]), obj["shape"], ()))
    present = {(o["colour"], o["shape"]) for o in objects}
    out["count"].append(("how many objects are there?", str(len(objects)), ()))
    for colour in CAPTION_COLOURS:
        n = sum(o["colour"] == colour for o in objects)
        out["count"].append((f"how many {colour} objects are there?", str(n), ()))
    for cls in CLASS_NAMES:
        n = sum(o["shape"] == cls for o in objects)
        out["count"].append((f"how many {SHAPE_WORDS[cls][0][1]} are there?", str(n), ()))
    absent = [(c, s) for c in CAPTION_COLOURS for s in CLASS_NAMES if (c, s) not in present]
    picks = [absent[k] for k in rng.permutation(len(absent))[:6]]
    for colour, cls in sorted(present) + picks:
        n = sum(o["colour"] == colour and o["shape"] == cls for o in objects)
        noun = SHAPE_WORDS[cls][0]
        out["count"].append((f"how many {colour} {noun[1]} are there?", str(n), ((colour, cls),)))
        out["exist"].append((f"is there {_article(colour)} {colour} {noun[0]}?", "yes" if n else "no",
                             ((colour, cls),)))  # fmt: skip
    for i in range(len(objects)):
        for j in range(len(objects)):
            if i == j:
                continue
            a = _unique_desc(objects, i, (("colour", "shape"), ("size", "colour", "shape")))
            b = _unique_desc(objects, j, (("colour", "shape"), ("size", "colour", "shape")))
            rel = _relation(objects, [i], [j])
            if a is None or b is None or rel is None:
                continue
            pairs = ((objects[i]["colour"], objects[i]["shape"]), (objects[j]["colour"], objects[j]["shape"]))
            for asked, answer in ((rel, "yes"), (_OPPOSITE[rel], "no")):
                out["relation"].append((f"is the {_words(a)} {RELATIONS[asked]} the {_words(b)}?", answer, pairs))
    if seen_only:
        out = {t: [c for c in cands if not any(p in held for p in c[2])] for t, cands in out.items()}
    return out


def _answers(rng: np.random.Generator, qtype: str, answer: str) -> list[dict[str, Any]]:
    """Ten annotator answers: the canonical one, with up to three synonyms where the vocabulary has them."""
    synonyms = ANSWERS[qtype][answer]
    n_syn = int(rng.integers(0, 4)) if synonyms else 0
    given = [answer] * (10 - n_syn) + [synonyms[int(rng.integers(len(synonyms)))] for _ in range(n_syn)]
    given = [given[k] for k in rng.permutation(10)]
    return [{"answer": a, "answer_confidence": "maybe" if rng.random() < 0.08 else "yes", "answer_id": k + 1}
            for k, a in enumerate(given)]  # fmt: skip


def make_questions(images: list[dict], rng: np.random.Generator, seen_only: bool) -> tuple[list[dict], list[dict]]:
    """VQAv2 questions and annotations of a split, one per question type and image where the grammar has one.

    Per type the answer is chosen greedily to be the least frequent so far among those the image allows (then a
    random question with it), which keeps every type's answer distribution near uniform over its vocabulary.

    Args:
        images: The split's COCO image entries, with ``objects``.
        rng: Source of the choices.
        seen_only: Leave out questions that mention a held-out colour-class pair (the training split).

    Returns:
        ``(questions, annotations)`` in VQAv2's layout.
    """
    counts = {t: Counter() for t in QUESTION_TYPES}
    questions, annotations = [], []
    for image in images:
        candidates = _candidates(image["objects"], rng, seen_only)
        k = 0
        for qtype, answer_type in QUESTION_TYPES.items():
            cands = candidates[qtype]
            if not cands:
                continue
            answers = sorted({c[1] for c in cands})
            order = rng.permutation(len(answers))
            best = min(order, key=lambda a: counts[qtype][answers[a]])
            chosen = [c for c in cands if c[1] == answers[best]]
            question, answer, _ = chosen[int(rng.integers(len(chosen)))]
            counts[qtype][answer] += 1
            qid = image["id"] * 1000 + k
            k += 1
            questions.append({"image_id": image["id"], "question": question, "question_id": qid})
            annotations.append({"question_id": qid, "image_id": image["id"], "question_type": qtype,
                                "answer_type": answer_type, "multiple_choice_answer": answer,
                                "answers": _answers(rng, qtype, answer)})  # fmt: skip
    return questions, annotations


# ------------------------------------------------------------------------------------------------------ build
def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")




def _image_plan(profile: dict[str, int]) -> dict[str, list[tuple[int, int, str]]]:
    """``(image_id, index, domain)`` per split; ids run on across splits (as COCO's do)."""
    plan, next_id = {}, 1
    for split in SPLITS:
        n = profile[split]
        domains = ["in-domain"] * n if split == "train2014" else ["out-domain" if i % 2 else "in-domain"
                                                                   for i in range(n)]  # fmt: skip
        plan[split] = [(next_id + i, i, domains[i]) for i in range(n)]
        next_id += n
    return plan


def build_captions(out: str | os.PathLike, profile: str = "quick", seed: int = 0, jobs: int = 1,
                   overwrite: bool = False, progress: bool | None = None) -> dict:  # fmt: skip
    """Generate the captioned images and their VQA questions into ``out``.

    Args:
        out: Output folder (created; an earlier dataset there is replaced only with ``overwrite``).
        profile: ``tiny`` (tests, seconds), ``quick`` or ``full`` (see :data:`PROFILES`).
        seed: Seed of every random choice; the same seed gives the same bytes, whatever ``jobs``.
        jobs: Worker processes for rendering.
        overwrite: Replace an earlier dataset in ``out``.
        progress: Show progress bars (default: for every profile but ``tiny``).

    Returns:
        The statistics also written to ``dataset.json``.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    from tqdm import tqdm

    root = Path(out)
    prepare_output_dir(root, MARKER, overwrite, "dataset")
    started = time.perf_counter()
    spec = PROFILES[profile]
    size = spec["size"]
    progress = profile != "tiny" if progress is None else progress
    plan = _image_plan(spec)
    tasks = [(seed, split, size, [(index, domain) for _, index, domain in plan[split][i : i + CHUNK]])
             for split in SPLITS for i in range(0, len(plan[split]), CHUNK)]  # fmt: skip
    pool = None
    if jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init)
    import torch

    threads = torch.get_num_threads()  # in-process rendering runs on one thread; the caller's setting comes back
    rendered: dict[tuple[str, int], dict] = {}
    try:
        results = map(_render_chunk, tasks) if pool is None else pool.imap(_render_chunk, tasks)
        if pool is None:
            _worker_init()
        for task, chunk in zip(tasks, tqdm(results, total=len(tasks), desc="render captions", unit="chunk",
                                           disable=not progress)):  # fmt: skip
            for r in chunk:
                rendered[(task[1], r["index"])] = r
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.close()
            pool.join()
    stats: dict[str, Any] = {"profile": profile, "seed": seed, "image_size": size, "captions_per_image":
                             CAPTIONS_PER_IMAGE, "colours": list(CAPTION_COLOURS), "classes": list(CLASS_NAMES),
                             "sizes": {k: list(v) for k, v in SIZES.items()},
                             "held_out_pairs": [list(p) for p in HELD_OUT_PAIRS], "splits": {}}  # fmt: skip
    info = {"description": "mmseq synthetic captions (procedural world)", "version": "1.0", "year": 2026,
            "contributor": "mmseq", "date_created": "2026-12-02"}  # fmt: skip
    licenses = [{"id": 1, "name": "generated by mmseq", "url": ""}]
    for split in SPLITS:
        images, anns, caption_id = [], [], _SPLIT_CODES[split] * 10**8
        text_rng = _rng(seed, _SPLIT_CODES[split], 10**9)
        for image_id, index, domain in plan[split]:
            r = rendered[(split, index)]
            name = f"COCO_{split}_{image_id:012d}.jpg"
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / name).write_bytes(r["jpeg"])
            images.append({"id": image_id, "file_name": name, "height": size, "width": size, "license": 1,
                           "coco_url": "", "flickr_url": "", "date_captured": "2026-12-02 00:00:00",
                           "domain": domain, "objects": r["objects"]})  # fmt: skip
            for caption in describe_captions(text_rng, r["objects"]):
                caption_id += 1
                anns.append({"id": caption_id, "image_id": image_id, "caption": caption})
        _write_json(root / "annotations" / f"captions_{split}.json",
                    {"info": info, "licenses": licenses, "images": images, "annotations": anns})
        questions, q_anns = make_questions(images, _rng(seed, _SPLIT_CODES[split], 10**9 + 1),
                                           seen_only=split == "train2014")  # fmt: skip
        common = {"info": info, "license": licenses[0], "data_type": "mscoco", "data_subtype": split}
        _write_json(root / "Questions" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                    {**common, "task_type": "Open-Ended", "questions": questions})
        _write_json(root / "Annotations" / f"v2_mscoco_{split}_annotations.json", {**common, "annotations": q_anns})
        by_type = Counter(a["question_type"] for a in q_anns)
        top = {t: max(Counter(a["multiple_choice_answer"] for a in q_anns if a["question_type"] == t).values())
               / by_type[t] for t in by_type}  # fmt: skip
        stats["splits"][split] = {"images": len(images), "captions": len(anns), "questions": len(questions),
                                  "domains": dict(Counter(i["domain"] for i in images)),
                                  "questions_by_type": dict(by_type),
                                  "top_answer_share": {t: round(v, 3) for t, v in top.items()}}  # fmt: skip
    _write_json(root / "answers.json", {t: {a: list(s) for a, s in v.items()} for t, v in ANSWERS.items()})
    _write_json(root / MARKER, stats)
    stats["seconds_to_build"] = round(time.perf_counter() - started, 1)
    return stats


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # a render's bytes then depend on nothing but its scene


# ------------------------------------------------------------------------------------------------------ reading
def read_captions(out: str | os.PathLike, split: str = "train2014", **kwargs):
    """The split as :class:`~mmseq.data.vision.readers_captions.CocoCaptions` reads it (keyword args pass on)."""
    from mmseq.data.vision.readers_captions import CocoCaptions

    return CocoCaptions(out, split, **kwargs)


def read_vqa(out: str | os.PathLike, split: str = "val2014", **kwargs):
    """The split as :class:`~mmseq.data.vision.readers_captions.VQAv2` reads it, images from ``out/<split>``."""
    from mmseq.data.vision.readers_captions import VQAv2

    return VQAv2(out, split, image_dir=str(Path(out) / split), **kwargs)
