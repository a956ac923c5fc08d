"""Caption and VQA readers, each on a tiny fixture written here in the dataset's official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmseq.data.vision.readers_captions import CocoCaptions, ConceptualCaptions, Img2DatasetCaptions, NoCaps, VQAv2
from mmseq.errors import InputError


def jpg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Path:
    """A flat-coloured (width, height) image, in the format its suffix names (JPEG at quality 100)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=100)
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------------------------------------ COCO
def coco(root: Path) -> Path:
    images = [{"id": 139, "file_name": "000000000139.jpg", "height": 6, "width": 8, "license": 1,
               "coco_url": "", "flickr_url": "", "date_captured": ""},
              {"id": 285, "file_name": "000000000285.jpg", "height": 4, "width": 10, "license": 1,
               "coco_url": "", "flickr_url": "", "date_captured": ""}]
    annotations = [{"id": 10 + k, "image_id": 285, "caption": f"a bear {k}"} for k in range(5)]
    annotations += [{"id": 20 + k, "image_id": 139, "caption": f"a room {k}"} for k in range(6)]
    write_json(root / "annotations" / "captions_val2017.json", {"info": {}, "licenses": [], "images": images,
                                                                "annotations": annotations})  # fmt: skip
    jpg(root / "val2017" / "000000000139.jpg", (200, 10, 10), (8, 6))
    jpg(root / "val2017" / "000000000285.jpg", (10, 10, 200), (10, 4))
    return root


def test_coco_captions_per_image_and_per_caption(tmp_path):
    root = coco(tmp_path / "coco")
    ds = CocoCaptions(root, "val2017")
    assert len(ds) == 2
    first = ds[0]
    assert first["image_id"] == 139 and first["captions"] == [f"a room {k}" for k in range(6)]
    assert first["image"].shape == (3, 6, 8) and first["image"].dtype == torch.uint8
    assert first["image"][0].float().mean() > 150 and first["image"][2].float().mean() < 60  # red
    assert ds[1]["image"].shape == (3, 4, 10) and ds[1]["path"].endswith("val2017/000000000285.jpg")
    per = CocoCaptions(root, "val2017", per_caption=True, load_images=False)
    assert len(per) == 11 and "image" not in per[0]
    assert (per[6]["caption"], per[6]["caption_id"], per[6]["image_id"]) == ("a bear 0", 10, 285)


def test_coco_errors_name_the_file(tmp_path):
    root = coco(tmp_path / "coco")
    with pytest.raises(InputError, match="train2017"):
        CocoCaptions(root, "train2017")  # no annotation file for that split
    with pytest.raises(InputError, match="unknown COCO split 'val2018'"):
        CocoCaptions(root, "val2018")
    bad = root / "annotations" / "captions_val2017.json"
    data = json.loads(bad.read_text())
    data["annotations"].append({"id": 99, "image_id": 7, "caption": "orphan"})
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"captions_val2017.json: annotations\[11\] refers to image_id 7"):
        CocoCaptions(root, "val2017")
    bad.write_text("{not json")
    with pytest.raises(InputError, match="captions_val2017.json: not valid JSON"):
        CocoCaptions(root, "val2017")


# ---------------------------------------------------------------------------------------------------- NoCaps
def nocaps(root: Path) -> Path:
    domains = ["in-domain", "near-domain", "out-domain", "near-domain"]
    images = [{"id": i, "open_images_id": f"{i:016x}", "file_name": f"{i:016x}.jpg", "height": 6, "width": 8,
               "coco_url": "", "license": 0, "date_captured": "", "domain": d} for i, d in enumerate(domains)]
    annotations = [{"image_id": i, "id": 10 * i + k, "caption": f"image {i} caption {k}"}
                   for i in range(4) for k in range(10)]  # fmt: skip
    write_json(root / "nocaps_val_4500_captions.json", {"licenses": [], "info": {}, "images": images,
                                                        "annotations": annotations})  # fmt: skip
    write_json(root / "nocaps_test_image_info.json", {"images": images[:2]})
    for i in range(4):
        jpg(root / "val" / f"{i:016x}.jpg", (0, 255, 0))
        jpg(root / "test" / f"{i:016x}.jpg", (0, 255, 0))
    return root


def test_nocaps_domains_and_captions(tmp_path):
    root = nocaps(tmp_path / "nocaps")
    ds = NoCaps(root, "val")
    assert len(ds) == 4 and ds.domains == ["in-domain", "near-domain", "out-domain", "near-domain"]
    item = ds[2]
    assert item["domain"] == "out-domain" and item["open_images_id"] == f"{2:016x}"
    assert len(item["captions"]) == 10 and item["captions"][3] == "image 2 caption 3"
    near = NoCaps(root, "val", domains=["near-domain"], load_images=False)
    assert [x["image_id"] for x in near] == [1, 3]
    test = NoCaps(root, "test")
    assert len(test) == 2 and test[0]["captions"] == [] and test[0]["image"].shape == (3, 6, 8)
    with pytest.raises(InputError, match="unknown NoCaps domain 'far-domain'"):
        NoCaps(root, "val", domains=["far-domain"])
    data = json.loads((root / "nocaps_val_4500_captions.json").read_text())
    del data["images"][1]["domain"]
    write_json(root / "nocaps_val_4500_captions.json", data)
    with pytest.raises(InputError, match="image 1 has domain None"):
        NoCaps(root, "val")


# ------------------------------------------------------------------------------------------ Conceptual Captions
def test_conceptual_captions_by_row_and_by_mapping(tmp_path):
    root = tmp_path / "cc3m"
    rows = ["a dog on a beach\thttp://x/1.jpg", "a cat, sleeping\thttp://x/2.jpg", "a dead link\thttp://x/3.jpg"]
    root.mkdir()
    (root / "Validation_GCC-1.1.0-Validation.tsv").write_text("\n".join(rows) + "\n")
    jpg(root / "val" / "00000000.jpg", (255, 0, 0))
    jpg(root / "val" / "1.png", (0, 0, 255))
    ds = ConceptualCaptions(root, "val")
    assert len(ds) == 2 and ds.missing == 1
    assert (ds[1]["caption"], ds[1]["url"], ds[1]["row"]) == ("a cat, sleeping", "http://x/2.jpg", 1)
    assert ds[1]["image"][2].float().mean() > 200  # the blue png
    (root / "map.tsv").write_text("http://x/3.jpg\tsub/dead.jpg\n")
    jpg(root / "val" / "sub" / "dead.jpg", (0, 255, 0))
    mapped = ConceptualCaptions(root, "val", mapping=root / "map.tsv")
    assert len(mapped) == 1 and mapped[0]["caption"] == "a dead link" and mapped.missing == 2
    (root / "Validation_GCC-1.1.0-Validation.tsv").write_text("only one field\n")
    with pytest.raises(InputError, match=r"Validation_GCC-1.1.0-Validation.tsv:1: .* two tab-separated fields"):
        ConceptualCaptions(root, "val")


# ------------------------------------------------------------------------------------ img2dataset "files" output
def test_img2dataset_files_layout(tmp_path):
    root = tmp_path / "cc3m"
    jpg(root / "00001" / "000010000.jpg", (0, 255, 0))
    (root / "00001" / "000010000.txt").write_text("a green field\n")
    jpg(root / "00000" / "000000002.jpg", (255, 0, 0))
    (root / "00000" / "000000002.txt").write_text("  a red  car ")
    (root / "00000" / "000000002.json").write_text('{"url": "http://x/2.jpg", "status": "success"}')
    jpg(root / "00000" / "000000001.jpg", (0, 0, 255))  # no caption file: left out
    (root / "00000" / "000000003.txt").write_text("a failed download")  # no image: not an item
    (root / "00000_stats.json").write_text("{}")
    ds = Img2DatasetCaptions(root)
    assert len(ds) == 2 and ds.missing == 1
    assert [(x["key"], x["caption"]) for x in ds] == [("000000002", "a red  car"), ("000010000", "a green field")]
    assert ds[0]["path"].endswith("00000/000000002.jpg") and ds[0]["image"][0].float().mean() > 200
    assert "image" not in Img2DatasetCaptions(root, load_images=False)[1]
    with pytest.raises(InputError, match="no shard folders"):
        Img2DatasetCaptions(root / "00000")
    (root / "00000" / "000000002.txt").unlink()
    (root / "00001" / "000010000.txt").write_text("")
    with pytest.raises(InputError, match="no image with a caption"):
        Img2DatasetCaptions(root)


# ----------------------------------------------------------------------------------------------------- VQAv2
def vqa(root: Path) -> Path:
    questions = [{"image_id": 262148, "question": "What color is the bus?", "question_id": 262148000},
                 {"image_id": 262148, "question": "Is it raining?", "question_id": 262148001},
                 {"image_id": 393225, "question": "How many dogs?", "question_id": 393225000}]
    write_json(root / "Questions" / "v2_OpenEnded_mscoco_val2014_questions.json",
               {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
                "license": {}, "questions": questions})  # fmt: skip
    answers = {262148000: ["red"] * 6 + ["maroon"] * 4, 262148001: ["no"] * 10, 393225000: ["2"] * 9 + ["two"]}
    types = {262148000: ("what color is the", "other"), 262148001: ("is it", "yes/no"),
             393225000: ("how many", "number")}
    annotations = [{"question_id": qid, "image_id": qid // 1000, "question_type": types[qid][0],
                    "answer_type": types[qid][1], "multiple_choice_answer": ans[0],
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": 10 - k}
                                for k, a in enumerate(reversed(ans))]}
                   for qid, ans in answers.items()]  # fmt: skip
    write_json(root / "Annotations" / "v2_mscoco_val2014_annotations.json",
               {"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": "val2014",
                "annotations": annotations})  # fmt: skip
    for image_id in (262148, 393225):
        jpg(root / "Images" / "mscoco" / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", (90, 90, 90))
    return root


def test_vqav2_pairs_questions_with_ten_answers(tmp_path):
    root = vqa(tmp_path / "vqa")
    ds = VQAv2(root, "val2014")
    assert len(ds) == 3
    item = ds[0]
    assert item["question"] == "What color is the bus?" and item["image"].shape == (3, 6, 8)
    assert item["answers"] == ["red"] * 6 + ["maroon"] * 4  # in answer_id order
    assert (item["question_type"], item["answer_type"]) == ("what color is the", "other")
    assert item["path"].endswith("Images/mscoco/val2014/COCO_val2014_000000262148.jpg")
    assert ds[2]["answers"].count("2") == 9


def test_vqav2_errors(tmp_path):
    root = vqa(tmp_path / "vqa")
    with pytest.raises(InputError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        VQAv2(root, "train2014")
    with pytest.raises(InputError, match="unknown VQAv2 subtype 'val2015'"):
        VQAv2(root, "val2015")
    path = root / "Annotations" / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    data["annotations"].pop()
    write_json(path, data)
    with pytest.raises(InputError, match="no annotation for 1 questions.*question_id 393225000"):
        VQAv2(root, "val2014")
    # test-dev has no annotations and reads the test2015 images
    write_json(root / "Questions" / "v2_OpenEnded_mscoco_test-dev2015_questions.json",
               {"questions": [{"image_id": 1, "question": "Why?", "question_id": 1000}]})
    jpg(root / "Images" / "mscoco" / "test2015" / "COCO_test2015_000000000001.jpg", (1, 2, 3))
    [item] = list(VQAv2(root, "test-dev2015"))
    assert "answers" not in item and item["image"].shape == (3, 6, 8)


def test_a_broken_image_is_named(tmp_path):
    root = coco(tmp_path / "coco")
    (root / "val2017" / "000000000139.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="000000000139.jpg"):
        CocoCaptions(root, "val2017")[0]
    assert np.asarray(CocoCaptions(root, "val2017")[1]["image"]).shape == (3, 4, 10)
