"""The synthetic captions / VQA product read back through the public COCO, VQAv2 and NoCaps readers."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from mmseq.data.vision.readers_captions import NoCaps
from mmseq.data.vision.synth_captions import (ANSWERS, CAPTION_COLOURS, COLOUR_SYNONYMS, HELD_OUT_PAIRS, PROFILES,
                                              QUESTION_TYPES, SHAPE_WORDS, build_captions, read_captions,
                                              read_vqa)  # fmt: skip
from mmseq.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("captions") / "synth_captions"
    threads = torch.get_num_threads()
    try:
        build_captions(out, "tiny", seed=3)
    finally:
        torch.set_num_threads(threads)
    return out


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_coco_vqa_and_nocaps_readers_read_the_product(built):
    spec = PROFILES["tiny"]
    coco = read_captions(built, "train2014")
    assert len(coco) == spec["train2014"]
    item = coco[0]
    assert item["image"].shape == (3, spec["size"], spec["size"]) and item["image"].dtype == torch.uint8
    assert len(item["captions"]) == 5 and len(set(item["captions"])) == 5
    assert len(read_captions(built, "val2014", per_caption=True)) == 5 * spec["val2014"]
    vqa = read_vqa(built, "val2014")
    assert len(vqa) >= 3 * spec["val2014"]
    q = vqa[0]
    assert len(q["answers"]) == 10 and q["question_type"] in QUESTION_TYPES and q["image"].shape[0] == 3
    assert q["answer_type"] == QUESTION_TYPES[q["question_type"]]
    assert q["multiple_choice_answer"] == Counter(q["answers"]).most_common(1)[0][0]
    out_domain = NoCaps(built, "val", annotation_file=str(built / "annotations" / "captions_val2014.json"),
                        image_dir=str(built / "val2014"), domains=["out-domain"])  # fmt: skip
    assert len(out_domain) == spec["val2014"] // 2 and len(out_domain[0]["captions"]) == 5


def _pair_phrases(colour: str, shape: str) -> list[str]:
    colours = (colour, *COLOUR_SYNONYMS.get(colour, ()))
    nouns = [w for pair in SHAPE_WORDS[shape] for w in pair]
    return [f"{c} {n}" for c in colours for n in nouns]


def test_held_out_colour_class_pairs_never_occur_in_train(built):
    train = _json(built / "annotations" / "captions_train2014.json")
    held = set(HELD_OUT_PAIRS)
    assert all((o["colour"], o["shape"]) not in held for im in train["images"] for o in im["objects"])
    text = [a["caption"] for a in train["annotations"]]
    text += [q["question"] for q in _json(built / "Questions" / "v2_OpenEnded_mscoco_train2014_questions.json")
             ["questions"]]  # fmt: skip
    pattern = re.compile("|".join(rf"\b{re.escape(p)}\b" for c, s in held for p in _pair_phrases(c, s)))
    assert not [t for t in text if pattern.search(t)]
    val = _json(built / "annotations" / "captions_val2014.json")
    for image in val["images"]:  # out-domain images hold a held-out pair and name it; in-domain ones do not
        has = any((o["colour"], o["shape"]) in held for o in image["objects"])
        assert has == (image["domain"] == "out-domain")
    named = [a["caption"] for a in val["annotations"] if pattern.search(a["caption"])]
    assert named  # the test split does describe the new pairs


def test_answer_distributions_are_not_degenerate_and_stay_in_the_vocabulary(built):
    for split in ("train2014", "val2014"):
        anns = _json(built / "Annotations" / f"v2_mscoco_{split}_annotations.json")["annotations"]
        by_type: dict[str, Counter] = {}
        for a in anns:
            vocab = ANSWERS[a["question_type"]]
            assert a["multiple_choice_answer"] in vocab
            allowed = {a["multiple_choice_answer"], *vocab[a["multiple_choice_answer"]]}
            assert {x["answer"] for x in a["answers"]} <= allowed and len(a["answers"]) == 10
            by_type.setdefault(a["question_type"], Counter())[a["multiple_choice_answer"]] += 1
        assert set(by_type) == set(QUESTION_TYPES)
        for qtype, counts in by_type.items():
            total = sum(counts.values())
            if len(ANSWERS[qtype]) == 2:  # yes/no: balanced to within one question
                assert abs(counts["yes"] - counts["no"]) <= 1, (split, qtype, counts)
            elif total >= 10:
                assert max(counts.values()) / total <= 0.4, (split, qtype, counts)


def test_captions_and_answers_describe_the_scene(built):
    data = _json(built / "annotations" / "captions_val2014.json")
    objects = {im["id"]: im["objects"] for im in data["images"]}
    for ann in data["annotations"]:
        scene = objects[ann["image_id"]]
        words = set(ann["caption"].split())
        named = {c for c in CAPTION_COLOURS if c in words or set(COLOUR_SYNONYMS.get(c, ())) & words}
        assert named <= {o["colour"] for o in scene}, ann["caption"]
        if ann["caption"].endswith("objects on the ground") or " objects: " in ann["caption"]:
            assert ann["caption"].split()[0] == ("zero", "one", "two", "three", "four")[len(scene)]
    vqa = read_vqa(built, "val2014", load_images=False)
    for q in vqa:
        scene = objects[q["image_id"]]
        if q["question"] == "how many objects are there?":
            assert q["multiple_choice_answer"] == str(len(scene))
        if q["question_type"] == "color":
            assert q["multiple_choice_answer"] in {o["colour"] for o in scene}


def test_the_same_seed_gives_the_same_bytes(built, tmp_path):
    again = tmp_path / "again"
    build_captions(again, "tiny", seed=3)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((built / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_bad_requests_raise_clear_errors(built, tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        build_captions(tmp_path / "x", "huge")
    with pytest.raises(InputError, match="--overwrite"):
        build_captions(built, "tiny")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no dataset.json"):
        build_captions(tmp_path / "other", "tiny")
