"""``mmseq.pipeline("point-cloud-classification")``: .npy / .ply / .txt files and arrays give the model's own
prediction on the normalised, FPS-reduced cloud; bad inputs and a model of the wrong kind are named."""

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

import mmseq
from mmseq.errors import ConfigError, InputError
from mmseq.data.vision.transforms_points import normalize_unit_sphere
from mmseq.nn.points import farthest_point_sample, gather_points

pytestmark = pytest.mark.usefixtures("one_thread")


def test_files_and_arrays_classify_as_the_model_does(tmp_path):
    torch.manual_seed(0)
    model = mmseq.create_model("point_mae_cls_tiny").eval()
    mmseq.save_pretrained(model, tmp_path / "cls")
    cloud = (np.random.default_rng(0).normal(size=(600, 3)) * [1.0, 2.0, 0.5] + 3.0).astype(np.float32)
    np.save(tmp_path / "a.npy", cloud)
    vertex = np.array([tuple(p) for p in cloud], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "a.ply"))
    np.savetxt(tmp_path / "a.txt", np.concatenate([cloud, np.zeros_like(cloud)], 1), delimiter=",", fmt="%.8f")
    pipe = mmseq.pipeline("point-cloud-classification", model=tmp_path / "cls", device="cpu")
    x = normalize_unit_sphere(torch.from_numpy(cloud))[None]
    x = gather_points(x, farthest_point_sample(x, model.num_points))
    with torch.no_grad():
        expected = model(x).softmax(-1)[0]
    names = [f"c{i}" for i in range(10)]
    results = pipe([tmp_path / "a.npy", tmp_path / "a.ply", tmp_path / "a.txt", cloud], top_k=3, labels=names)
    for result in results:
        assert result["label"] == int(expected.argmax()) and result["class_name"] == names[result["label"]]
        assert list(result["scores"]) == [names[int(i)] for i in expected.topk(3).indices]
        assert result["scores"][result["class_name"]] == pytest.approx(float(expected.max()), abs=1e-5)
    assert pipe(cloud, votes=3)["label"] in range(10)


def test_bad_inputs_are_named(tmp_path):
    model = mmseq.create_model("point_mae_cls_tiny")
    pipe = mmseq.pipeline("point-cloud-classification", model=model, device="cpu")
    with pytest.raises(InputError, match="does not exist"):
        pipe(tmp_path / "missing.npy")
    with pytest.raises(InputError, match=r"input 0.*\[N, >=3\]"):
        pipe(np.zeros((10, 2)))
    with pytest.raises(InputError, match="points, the model takes 256"):
        pipe(np.zeros((10, 3)))
    (tmp_path / "cloud.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match="not a .npy"):
        pipe(tmp_path / "cloud.obj")
    with pytest.raises(ConfigError, match="points.*classes"):
        mmseq.pipeline("point-cloud-classification", model=mmseq.create_model("point_mae_tiny"), device="cpu")
