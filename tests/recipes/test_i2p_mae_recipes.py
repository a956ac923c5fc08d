"""The I2P-MAE recipes at tiny size through ``mmseq train`` / ``mmseq eval`` as their README says, on a small
synthetic point product (12 classes; 48 pool clouds, 72 / 48 clean clouds): the teacher trains, I2P-MAE pre-trains
against its frozen copy (the teacher's weights stay bit-identical), and the linear SVM on the pre-trained frozen
features beat the untrained model's (0.15-0.17; chance 1/12); the SVM recipe re-evaluates ``best/`` with the same number.

The real-data configs (ShapeNet-55 pre-training, ModelNet40 SVM / few-shot / fine-tuning, ScanObjectNN OBJ_BG /
OBJ_ONLY / PB_T50_RS fine-tuning, the ModelNet40 teacher) on a fixture written in the public releases' layouts: each
builds its task through the real readers, its step counts are the official epochs of the real split, and its model
takes a batch at a small width; then they run in the order they chain (teacher, pre-training, SVM and few-shot, the
fine-tunings from the pre-trained encoder), two steps each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mmseq
from mmseq.cli import main
from mmseq.data.vision import synth_points
from mmseq.errors import ConfigError, InputError
from mmseq.tasks import build_task
from mmseq.train.loop import load_run_config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes/i2p_mae"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def points_product(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setitem(synth_points.PROFILES, "recipe_test",
                               synth_points.PointsProfile(pool=(4, 1), clean=(6, 4), hard=(1, 1), views=1))
    out = tmp_path_factory.mktemp("points") / "synth_points"
    synth_points.build_points(out, "recipe_test", progress=False)
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
def test_teacher_then_i2p_mae_pretrain_and_svm(points_product, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(["train", str(RECIPES / "teacher/configs/synth.yaml"), f"task_args.root={points_product}",
                 "task_args.num_points=256", "trainer.max_steps=20", "trainer.val_every=20", "trainer.save_every=20",
                 "trainer.batch_size=16", "trainer.progress=false", f"trainer.out_dir={teacher}"]) == 0
    run = tmp_path / "pretrain"
    common = [f"task_args.root={points_product}", "task_args.num_points=256", "task_args.svm_points=256"]
    assert main(["train", str(RECIPES / "pretrain/configs/synth.yaml"), *common, f"init_from.checkpoint={teacher}/best",
                 "trainer.max_steps=30", "trainer.val_every=30", "trainer.save_every=30", "trainer.batch_size=8",
                 "trainer.progress=false", f"trainer.out_dir={run}"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    # measured on this product: 0.458 after 30 steps; untrained i2p_mae_tiny 0.146-0.167 over 3 seeds (chance 0.083)
    assert result["test"]["svm_accuracy"] >= 0.3, result["test"]
    assert "loss_2d" in result["test"] and "loss_3d" in result["test"]
    trained_teacher = load_file(teacher / "best" / "model.safetensors")
    pretrained = load_file(run / "best" / "model.safetensors")
    for key, value in trained_teacher.items():
        assert pretrained[f"teacher.{key}"].equal(value), key

    capsys.readouterr()
    assert main(["eval", str(RECIPES / "svm/configs/synth.yaml"), "--checkpoint", str(run / "best"), "--split", "test",
                 *common]) == 0
    assert json.loads(capsys.readouterr().out)["svm_accuracy"] == result["test"]["svm_accuracy"]


# --- the real-data configs -----------------------------------------------------------------------------------------

REAL_CONFIGS = sorted(p for p in RECIPES.glob("*/configs/*.yaml") if p.stem != "synth")
SCAN_FILES = {"obj_bg": "main_split/{}_objectdataset.h5", "obj_only": "main_split_nobg/{}_objectdataset.h5",
              "pb_t50_rs": "main_split/{}_objectdataset_augmentedrot_scale75.h5"}
# the same three scales at a CPU-test size; everything else (points, group sizes, radii, classes, schedule) is the
# config's own
SMALL = ["model_args.num_groups=[64,32,16]", "model_args.encoder_dims=[32,64,128]",
         "model_args.encoder_depths=[1,1,1]", "model_args.num_heads=4"]
SMALL_TEACHER = {"image_size": 64, "patch_size": 8, "dim": 64, "depth": 2, "num_heads": 4, "splat": 3}
SHORT = ["trainer.max_steps=2", "trainer.val_every=2", "trainer.save_every=2", "trainer.batch_size=4",
         "trainer.progress=false"]


def _cloud(rng: np.random.Generator, label: int, n: int = 2048) -> np.ndarray:
    """A noisy ellipsoid surface whose axes depend on the label."""
    xyz = rng.standard_normal((n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    return (xyz * (1.0 + 0.05 * np.array([label % 5, label % 3, label % 7])) + 0.01 * rng.standard_normal((n, 3))
            ).astype(np.float32)


def write_real_layout(root: Path) -> Path:
    """ShapeNet55-34/, modelnet40_ply_hdf5_2048/ (40 shape names; 5 classes of 10 train / 4 test clouds, enough for
    5-way 10-shot episodes of 4 queries) and h5_files/ (15 ScanObjectNN classes; OBJ_BG, OBJ_ONLY and PB_T50_RS
    files), all in the public releases' layouts and shapes (2048 points per cloud)."""
    import h5py

    rng = np.random.default_rng(0)
    pool = root / "ShapeNet55-34"
    (pool / "shapenet_pc").mkdir(parents=True)
    (pool / "ShapeNet-55").mkdir()
    names = {"train": [], "test": []}
    for i in range(12):
        name = f"0{2691156 + i % 3}-{i:032x}.npy"
        np.save(pool / "shapenet_pc" / name, _cloud(rng, i % 3))
        names["train" if i < 8 else "test"].append(name)
    for split, files in names.items():
        (pool / "ShapeNet-55" / f"{split}.txt").write_text("".join(f + "\n" for f in files))

    modelnet = root / "modelnet40_ply_hdf5_2048"
    modelnet.mkdir()
    (modelnet / "shape_names.txt").write_text("".join(f"class{c:02d}\n" for c in range(40)))
    for split, per_class in (("train", 10), ("test", 4)):
        labels = np.repeat(np.array([0, 7, 13, 21, 39]), per_class)
        with h5py.File(modelnet / f"ply_data_{split}0.h5", "w") as h5:
            h5["data"] = np.stack([_cloud(rng, int(c)) for c in labels])
            h5["label"] = labels.astype(np.uint8)[:, None]

    for relative in SCAN_FILES.values():
        for split, prefix, count in (("train", "training", 8), ("test", "test", 4)):
            path = root / "h5_files" / relative.format(prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            labels = np.arange(count) % 15
            with h5py.File(path, "w") as h5:
                h5["data"] = np.stack([_cloud(rng, int(c)) for c in labels])
                h5["label"] = labels.astype(np.int64)
                h5["mask"] = np.where(rng.random((count, 2048)) < 0.8, labels[:, None], -1).astype(np.int64)
    return root


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory) -> Path:
    return write_real_layout(tmp_path_factory.mktemp("point_clouds"))


def _config(stage: str, name: str, *overrides: str):
    return load_run_config(RECIPES / stage / "configs" / f"{name}.yaml", list(overrides))


# clouds of a training split in the public release, the batch and the epochs the configs' step counts come from
EPOCHS = {("pretrain", "shapenet55"): (41952, 300), ("teacher", "modelnet40"): (9840, 30),
          ("finetune", "modelnet40"): (9840, 300), ("finetune", "scanobjectnn_objbg"): (2309, 300),
          ("finetune", "scanobjectnn_objonly"): (2309, 300), ("finetune", "scanobjectnn_pb_t50_rs"): (11416, 300)}
SMALL_ARGS = {"num_groups": [64, 32, 16], "encoder_dims": [32, 64, 128], "encoder_depths": [1, 1, 1],
              "num_heads": 4}


@pytest.mark.parametrize("config", REAL_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_real_data_configs_build_their_task_and_model_on_the_real_layout(config, real_layout):
    cfg = load_run_config(config)
    assert cfg.task_args["root"] == "data/point_clouds"
    task = build_task(cfg.task, {**cfg.task_args, "root": str(real_layout)})
    batch = task.collate([task.train_set[i] for i in range(2)])
    assert batch["points"].shape[1] == cfg.task_args["num_points"]
    stage = config.parent.parent.name
    if stage in ("svm", "fewshot"):  # evaluation only: no model of their own, a checkpoint comes with --checkpoint
        assert cfg.model is None and cfg.task == "point_pretrain"
        return
    clouds, epochs = EPOCHS[(stage, config.stem)]
    steps_per_epoch = clouds // cfg.trainer.batch_size  # the official loaders drop the last partial batch
    assert cfg.trainer.max_steps == epochs * steps_per_epoch
    if stage != "teacher":
        assert cfg.schedule.warmup_steps == 10 * steps_per_epoch and cfg.trainer.val_every == steps_per_epoch
    if "num_classes" in cfg.model_args:
        assert cfg.model_args["num_classes"] == len(task.info["classes"])
    small = {"teacher": SMALL_TEACHER, "finetune": SMALL_ARGS,
             "pretrain": {**SMALL_ARGS, "decoder_dims": [128, 64], "teacher_args": SMALL_TEACHER}}[stage]
    model = mmseq.create_model(cfg.model, **{**cfg.model_args, **small}).train()
    loss, _ = task.loss(model, batch)
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_real_data_configs_run_in_order_on_the_real_layout(real_layout, tmp_path, capsys):
    """teacher -> pre-training (against the frozen teacher) -> SVM and few-shot of its best/ -> each fine-tuning
    from it, each stage through ``mmseq`` with the config's own arguments at a small width and two steps, the
    checkpoints chained as the configs chain them."""
    root = f"task_args.root={real_layout}"
    teacher_cfg, pretrain_cfg = _config("teacher", "modelnet40"), _config("pretrain", "shapenet55")
    assert pretrain_cfg.init_from.checkpoint == f"{teacher_cfg.trainer.out_dir}/best"
    teacher = tmp_path / "teacher"
    small_teacher = [f"model_args.{k}={v}" for k, v in SMALL_TEACHER.items()]
    assert main(["train", str(RECIPES / "teacher/configs/modelnet40.yaml"), root, *small_teacher, *SHORT,
                 f"trainer.out_dir={teacher}"]) == 0
    assert "accuracy" in json.loads((teacher / "metrics.json").read_text())["test"]

    pretrain = tmp_path / "pretrain"
    assert main(["train", str(RECIPES / "pretrain/configs/shapenet55.yaml"), root, *SMALL,
                 "model_args.decoder_dims=[128,64]", *[f"model_args.teacher_args.{k}={v}" for k, v in
                                                       SMALL_TEACHER.items()],
                 f"init_from.checkpoint={teacher}/best", *SHORT, f"trainer.out_dir={pretrain}"]) == 0
    result = json.loads((pretrain / "metrics.json").read_text())["test"]
    assert {"loss_2d", "loss_3d", "svm_accuracy"} <= set(result)
    trained_teacher = load_file(teacher / "best" / "model.safetensors")
    pretrained = load_file(pretrain / "best" / "model.safetensors")
    for key, value in trained_teacher.items():
        assert pretrained[f"teacher.{key}"].equal(value), key

    for stage, fewer in (("svm", []), ("fewshot", ["task_args.fewshot_query=4"])):  # 4 test clouds a class here
        capsys.readouterr()
        assert main(["eval", str(RECIPES / stage / "configs/modelnet40.yaml"), "--checkpoint", str(pretrain / "best"),
                     "--split", "test", root, *fewer]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert 0.0 <= metrics["svm_accuracy"] <= 1.0
        if stage == "fewshot":
            assert 0.0 <= metrics["fewshot_accuracy"] <= 1.0 and metrics["fewshot_std"] >= 0.0

    for name in ("modelnet40", "scanobjectnn_objbg", "scanobjectnn_objonly", "scanobjectnn_pb_t50_rs"):
        assert _config("finetune", name).init_from.checkpoint == f"{pretrain_cfg.trainer.out_dir}/best"
        run = tmp_path / name
        # lr 0: the fine-tuned encoder keeps exactly the pre-trained weights it was initialised with; 2 votes (of
        # 10) keep the voting evaluation short
        assert main(["train", str(RECIPES / "finetune/configs" / f"{name}.yaml"), root, *SMALL, "optim.lr=0",
                     "task_args.votes=2",
                     f"init_from.checkpoint={pretrain}/best", *SHORT, f"trainer.out_dir={run}"]) == 0
        result = json.loads((run / "metrics.json").read_text())["test"]
        assert {"accuracy", "vote_accuracy"} <= set(result), result
        tuned = load_file(run / "best" / "model.safetensors")
        encoder = [k for k in tuned if k.startswith("h_encoder.") and "running_" not in k
                   and "num_batches_tracked" not in k]
        assert encoder
        for key in encoder:
            assert tuned[key].equal(pretrained[key]), (name, key)


def test_an_unknown_scanobjectnn_variant_is_a_config_error_naming_the_choices(real_layout):
    with pytest.raises(ConfigError, match="task_args.variant must be one of .*'obj_bg'.*got 'pb_t50'"):
        build_task("point_classification", {"root": str(real_layout), "variant": "pb_t50"})
    # a variant whose file is not under the root names the missing file
    (real_layout / "h5_files" / "main_split_nobg" / "test_objectdataset.h5").rename(real_layout / "moved.h5")
    try:
        with pytest.raises(InputError, match="main_split_nobg"):
            build_task("point_classification", {"root": str(real_layout), "variant": "obj_only"})
    finally:
        (real_layout / "moved.h5").rename(real_layout / "h5_files" / "main_split_nobg" / "test_objectdataset.h5")
