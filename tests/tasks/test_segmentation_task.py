"""The semantic_segmentation task on the tiny synthetic scenes: batches, augmentation, loss, evaluation (overall and
per condition, against the confusion matrix and torchmetrics), the poly schedule, and the three SSMA stages loading
each other's checkpoints through the recipe configs with no unexpected keys."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.errors import ConfigError, InputError
from mmseq.metrics.segmentation import confusion_matrix
from mmseq.models.adapnet import SegmentationOutput, segmentation_loss
from mmseq.tasks import build_task
from mmseq.tasks.segmentation import encode_depth
from mmseq.train.config import ScheduleConfig
from mmseq.train.loop import load_run_config, train
from mmseq.train.schedules import lr_factor

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes/adapnet"
SIZE = [48, 96]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from mmseq.data.vision.synth_scenes import build_scenes

    out = tmp_path_factory.mktemp("scenes") / "tiny"
    build_scenes(out, "tiny", seed=0)
    return out


def make_task(scenes: Path, **args):
    return build_task("semantic_segmentation", {"root": str(scenes), "size": SIZE, **args})


def test_batches_hold_normalised_inputs_and_labels(scenes):
    task = make_task(scenes)
    items = [task.train_set[i] for i in range(3)]
    batch = task.eval_collate(items)
    assert batch["rgb"].shape == (3, 3, *SIZE) and batch["depth"].shape == (3, 1, *SIZE)
    assert batch["label"].shape == (3, *SIZE) and batch["label"].dtype == torch.int64
    assert 0 <= float(batch["depth"].min()) and float(batch["depth"].max()) <= 1
    assert set(batch["label"].unique().tolist()) <= set(range(12))
    # evaluation batches are deterministic; training batches follow the global RNG (which the loop checkpoints)
    assert torch.equal(task.eval_collate(items)["rgb"], batch["rgb"])
    torch.manual_seed(3)
    a = task.collate(items)
    torch.manual_seed(3)
    b = task.collate(items)
    c = task.collate(items)
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["rgb"], c["rgb"])
    assert task.info["classes"][0] == "void" and len(task.info["classes"]) == 12
    assert task.info["conditions"]["train"] == {"camouflage": 1, "clear": 5, "fog": 1, "low_light": 1,
                                                "motion_blur": 1, "overexposure": 1}


def test_colour_jitter_changes_rgb_only(scenes):
    # No geometric randomness: scale fixed at 1, no flip; only the jitter differs between the two tasks.
    plain = make_task(scenes, scale=[1.0, 1.0], flip=False, colour_jitter=0.0)
    jitter = make_task(scenes, scale=[1.0, 1.0], flip=False, colour_jitter=0.5)
    items = [plain.train_set[0], plain.train_set[1]]
    torch.manual_seed(0)
    a = plain.collate(items)
    torch.manual_seed(0)
    b = jitter.collate(items)
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["label"], b["label"])
    assert (a["rgb"] - b["rgb"]).abs().max() > 0.05


def test_depth_encodings():
    depth = torch.tensor([[0.0, 1.0], [30.0, 120.0]])
    assert torch.allclose(encode_depth(depth, "linear", max_depth=60.0)[0], torch.tensor([[0, 1 / 60], [0.5, 1.0]]))
    assert torch.allclose(encode_depth(depth, "inverse", min_depth=0.5)[0], torch.tensor([[0, 0.5], [1 / 60, 1 / 240]]))
    assert encode_depth(depth, "jet").shape == (3, 2, 2)
    with pytest.raises(InputError, match="intrinsics"):
        encode_depth(depth, "hha")


def test_loss_is_main_plus_weighted_aux_with_void_ignored(scenes):
    task = make_task(scenes)
    model = mmseq.create_model("adapnet_pp_tiny")
    task.prepare_model(model)
    assert model.labels == task.info["classes"]
    batch = task.eval_collate([task.train_set[i] for i in range(2)])
    torch.manual_seed(0)
    loss, metrics = task.loss(model, batch)
    torch.manual_seed(0)
    out = model(rgb=batch["rgb"])
    target = batch["label"]
    expected = sum(w * F.cross_entropy(x, target, ignore_index=0)
                   for w, x in zip((1.0, 0.6, 0.5), (out.logits, *out.aux)))
    assert len(out.aux) == 2 and torch.allclose(loss, expected, rtol=1e-5)
    counted = target != 0
    assert metrics["pixel_accuracy"].denominator == counted.sum()
    # a class weighted 0 counts as if void: same loss as relabelling it void
    logits = torch.randn(2, 4, 5, 5)
    labels = torch.randint(0, 4, (2, 5, 5))
    weighted = segmentation_loss(SegmentationOutput(logits), labels, 0, (), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    relabelled = segmentation_loss(SegmentationOutput(logits), labels.masked_fill(labels == 2, 0), 0, ())
    assert torch.allclose(weighted, relabelled)


def test_task_rejects_a_model_that_does_not_fit(scenes):
    task = make_task(scenes)
    with pytest.raises(ConfigError, match="depth_channels=1"):
        task.prepare_model(mmseq.create_model("adapnet_pp_tiny", inputs=["depth"], depth_channels=3))
    with pytest.raises(ConfigError, match="num_classes=12"):
        task.loss(mmseq.create_model("adapnet_pp_tiny", num_classes=5), task.eval_collate([task.train_set[0]] * 2))
    with pytest.raises(ConfigError, match="class_weights"):
        make_task(scenes, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="multiples of 16"):
        make_task(scenes, size=[50, 96])


def test_evaluation_overall_and_per_condition(scenes):
    from torchmetrics.classification import MulticlassJaccardIndex

    task = make_task(scenes)
    model = mmseq.create_model("adapnet_pp_tiny").eval()
    metrics = task.evaluate(model, "train")
    frames = task.train_set
    batch = task.eval_collate([frames[i] for i in range(len(frames))])
    with torch.no_grad():
        predicted = model(rgb=batch["rgb"]).logits.argmax(1)
    overall = confusion_matrix(predicted, batch["label"], 12, ignore_index=0)
    assert math.isclose(metrics["miou"], overall.mean_iou, rel_tol=1e-9)
    assert math.isclose(metrics["pixel_accuracy"], overall.pixel_accuracy, rel_tol=1e-9)
    jaccard = MulticlassJaccardIndex(num_classes=12, ignore_index=0, average="macro")
    assert math.isclose(metrics["miou"], float(jaccard(predicted, batch["label"])), rel_tol=1e-5)
    for condition in ("clear", "low_light", "fog", "camouflage", "motion_blur", "overexposure"):
        rows = [i for i, c in enumerate(frames.conditions) if c == condition]
        cm = confusion_matrix(predicted[rows], batch["label"][rows], 12, ignore_index=0)
        assert math.isclose(metrics[f"miou/{condition}"], cm.mean_iou, rel_tol=1e-9), condition
        assert math.isclose(metrics[f"pixel_accuracy/{condition}"], cm.pixel_accuracy, rel_tol=1e-9), condition
    present = [name for i, name in enumerate(task.info["classes"]) if not math.isnan(overall.iou[i])]
    assert sorted(k[4:] for k in metrics if k.startswith("iou/")) == sorted(present)


def test_poly_schedule():
    cfg = ScheduleConfig(name="poly", power=0.9)
    assert lr_factor(0, cfg, 100) == 1.0
    assert math.isclose(lr_factor(50, cfg, 100), 0.5 ** 0.9)
    assert lr_factor(100, cfg, 100) == 0.0
    with pytest.raises(ConfigError, match="power"):
        ScheduleConfig(name="poly", power=0.0)


def run_recipe(config: Path, out: Path, scenes: Path, init_from: Path | None = None,
               init_also: Path | None = None, grid: int = 0) -> dict:
    """Two steps of a recipe config, its starting checkpoints replaced by the given runs' (the rest as written)."""
    cfg = load_run_config(config, [f"task_args.root={scenes}", f"trainer.out_dir={out}", "trainer.max_steps=2",
                                   "trainer.progress=false", f"task_args.grid_samples={grid}",
                                   "task_args.max_eval=2"])
    if init_from is not None:
        cfg.init_from.checkpoint = str(init_from)
    if init_also is not None:
        assert len(cfg.init_also) == 1
        cfg.init_also[0].checkpoint = str(init_also)
    return train(cfg)


def test_three_stages_load_each_other_with_no_unexpected_keys(scenes, tmp_path):
    rgb = run_recipe(RECIPES / "rgb/configs/tiny.yaml", tmp_path / "rgb", scenes)
    depth = run_recipe(RECIPES / "depth/configs/tiny.yaml", tmp_path / "depth", scenes)
    assert rgb["task"]["classes"] == depth["task"]["classes"]
    stage2 = run_recipe(RECIPES / "ssma/configs/stage2_tiny.yaml", tmp_path / "stage2", scenes,
                        tmp_path / "rgb/best", tmp_path / "depth/best")
    rgb_keys = mmseq.load(tmp_path / "rgb/best").state_dict()
    depth_keys = mmseq.load(tmp_path / "depth/best").state_dict()
    model2 = mmseq.load(tmp_path / "stage2/best")
    keys2 = model2.state_dict()
    assert stage2["init_from"]["unexpected"] == [] and stage2["init_also"][0]["unexpected"] == []
    assert stage2["init_from"]["loaded"] == len(rgb_keys)  # the RGB stream and the decoder
    assert stage2["init_also"][0]["loaded"] == sum(k.startswith("expert.") for k in depth_keys)
    # Filled by neither: the fusion blocks and the decoder's skip attention only.
    unfilled = set(stage2["init_from"]["missing"]) & set(stage2["init_also"][0]["missing"])
    assert unfilled and all(k.startswith(("fuse_", "decoder.attention.")) for k in unfilled), sorted(unfilled)[:5]
    # Frozen experts (weights and BatchNorm statistics) are exactly the stage-1 ones after training.
    for key, value in rgb_keys.items():
        if key.startswith(("expert.encoder.", "expert.easpp.")):
            assert torch.equal(keys2["rgb_" + key], value), key
    for key, value in depth_keys.items():
        if key.startswith(("expert.encoder.", "expert.easpp.")):
            assert torch.equal(keys2["depth_" + key], value), key
    assert not torch.equal(keys2["decoder.up_eighth.0.weight"], rgb_keys["decoder.up_eighth.0.weight"])
    assert stage2["trainable_parameters"] < stage2["parameters"]

    stage3 = run_recipe(RECIPES / "ssma/configs/stage3_tiny.yaml", tmp_path / "stage3", scenes,
                        tmp_path / "stage2/best", grid=1)
    assert stage3["init_from"]["loaded"] == len(keys2)
    assert stage3["init_from"]["missing"] == [] and stage3["init_from"]["unexpected"] == []
    assert stage3["trainable_parameters"] == stage3["parameters"]
    summary = json.loads((tmp_path / "stage3/metrics.json").read_text())
    assert {"miou", "pixel_accuracy", "iou/ground"} <= set(summary["test"])
    assert (tmp_path / "stage3/predictions.png").is_file() and (tmp_path / "stage3/tensorboard").is_dir()

    late = run_recipe(RECIPES / "baselines/configs/late_fusion_tiny.yaml", tmp_path / "late", scenes,
                      tmp_path / "rgb/best", tmp_path / "depth/best")
    assert late["init_from"]["unexpected"] == [] and late["init_also"][0]["unexpected"] == []
    assert set(late["init_from"]["missing"]) & set(late["init_also"][0]["missing"]) == set()
