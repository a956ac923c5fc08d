"""mmseq.pipeline("segmentation"): label maps from RGB (+ depth) files or arrays, whole-image and sliding-window modes
against direct model runs, overlays with a legend, and `mmseq infer segmentation`."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mmseq
from mmseq.cli import main
from mmseq.errors import ConfigError, InputError
from mmseq.tasks.segmentation import encode_depth, encode_rgb

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    from mmseq.data.vision.synth_scenes import SCENE_CLASSES, build_scenes, read_scenes

    root = tmp_path_factory.mktemp("scenes") / "tiny"
    build_scenes(root, "tiny", seed=1)
    item = read_scenes(root, "test")[0]
    out = tmp_path_factory.mktemp("inputs")
    Image.fromarray(item["image"].permute(1, 2, 0).numpy()).save(out / "frame.png")
    np.save(out / "frame_depth.npy", item["depth"].numpy())
    models = {}
    for name in ("adapnet_pp_tiny", "ssma_tiny"):
        torch.manual_seed(0)
        model = mmseq.create_model(name)
        model.labels = list(SCENE_CLASSES)
        models[name] = mmseq.save_pretrained(model, out / name)
    return {"item": item, "rgb": out / "frame.png", "depth": out / "frame_depth.npy", "models": models}


def direct(model, rgb: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(rgb=rgb, depth=depth).logits.softmax(1)[0]


def test_whole_image_pads_to_the_stride_and_crops_back(scene, tmp_path):
    pipe = mmseq.pipeline("segmentation", model=scene["models"]["ssma_tiny"], device="cpu")
    image = scene["item"]["image"][:, :40, :90]  # not multiples of 16
    depth = scene["item"]["depth"][:40, :90]
    result = pipe(image, depth, out=tmp_path)
    assert result["labels"].shape == (40, 90) and result["labels"].dtype == np.int64
    rgb = F.pad(encode_rgb(image)[None], (0, 6, 0, 8))
    d = F.pad(encode_depth(depth, "linear")[None], (0, 6, 0, 8))
    expected = direct(pipe.model, rgb, d)[:, :40, :90].argmax(0).numpy()
    assert np.array_equal(result["labels"], expected)
    assert result["overlay"] == tmp_path / "0000_overlay.png" and result["overlay"].stat().st_size > 1000


def test_paths_and_arrays_give_the_same_labels_and_depth_is_required(scene):
    pipe = mmseq.pipeline("segmentation", model=scene["models"]["ssma_tiny"], device="cpu")
    from_paths = pipe([scene["rgb"]], [scene["depth"]])[0]["labels"]
    item = scene["item"]
    from_arrays = pipe(item["image"].permute(1, 2, 0).numpy(), item["depth"].numpy())["labels"]
    assert np.array_equal(from_paths, from_arrays)
    with pytest.raises(InputError, match="pass depth="):
        pipe(scene["rgb"])
    with pytest.raises(ConfigError, match="mode"):
        pipe(scene["rgb"], scene["depth"], mode="tiles")
    rgb_only = mmseq.pipeline("segmentation", model=scene["models"]["adapnet_pp_tiny"], device="cpu")
    assert rgb_only(scene["rgb"])["labels"].shape == tuple(item["label"].shape)
    with pytest.raises(ConfigError, match="reads"):
        mmseq.pipeline("segmentation", model=mmseq.create_model("xvector_tiny", num_classes=3), device="cpu")


def test_sliding_window_averages_overlapping_windows(scene):
    pipe = mmseq.pipeline("segmentation", model=scene["models"]["adapnet_pp_tiny"], device="cpu")
    image = scene["item"]["image"]  # 48 x 96
    # One window covering the whole image is the whole-image mode.
    assert np.array_equal(pipe(image, mode="sliding", window=(48, 96))["labels"], pipe(image)["labels"])
    # Windows of 32 x 64 every 16 x 32: rows at 0, 16; columns at 0, 32; each pixel averages the windows over it.
    rgb = encode_rgb(image)[None]
    total, seen = torch.zeros(12, 48, 96), torch.zeros(48, 96)
    for top in (0, 16):
        for left in (0, 32):
            total[:, top:top + 32, left:left + 64] += direct(pipe.model, rgb[..., top:top + 32, left:left + 64])
            seen[top:top + 32, left:left + 64] += 1
    expected = (total / seen).argmax(0).numpy()
    got = pipe(image, mode="sliding", window=(32, 64), stride=(16, 32))["labels"]
    assert np.array_equal(got, expected)
    with pytest.raises(ConfigError, match="multiples of 16"):
        pipe(image, mode="sliding", window=(30, 64))


def test_cli_writes_one_overlay_per_image(scene, tmp_path, capsys):
    out = tmp_path / "overlays"
    assert main(["infer", "segmentation", str(scene["rgb"]), "--model", str(scene["models"]["ssma_tiny"]),
                 "--depth", str(scene["depth"]), "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "frame_overlay.png").is_file()
    assert str(out / "frame_overlay.png") in capsys.readouterr().out
    with Image.open(out / "frame_overlay.png") as im:
        assert im.width > im.height  # the image and the legend beside it
