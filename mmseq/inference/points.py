"""``mmseq.pipeline("point-cloud-classification", model=...)``: class predictions for point clouds.

The model is a point classifier (``point_mae_cls*``, ``point_m2ae_cls*`` or anything that reads ``points`` and writes
``classes``). An input is a ``.npy`` file (``[N, >=3]``), a ``.ply`` file (its ``vertex`` x / y / z), a ``.txt`` /
``.xyz`` file (rows of comma- or space-separated numbers, as ModelNet's), or an array / tensor ``[N, >=3]``. Only xyz
is used. Each cloud is normalised to the unit sphere and reduced to the model's ``num_points`` by farthest point
sampling from its first point, as the classification task evaluates; ``votes > 0`` averages the logits over that
many scale-and-translate copies (the task's voting). Each result is ``{"label": int, "class_name": str, "scores":
{name: probability}}`` with the ``top_k`` most probable classes; names come from ``labels`` (else ``class <i>``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from mmseq.data.vision.transforms_points import normalize_unit_sphere, scale_and_translate
from mmseq.errors import InputError
from mmseq.nn.points import farthest_point_sample, gather_points

PointInput = str | os.PathLike | np.ndarray | Tensor


def read_points(item: PointInput, name: str) -> Tensor:
    """xyz ``float32 [N, 3]`` of one cloud (see the module notes for the accepted inputs)."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise InputError(f"{name}: point file {str(path)!r} does not exist")
        try:
            if path.suffix == ".npy":
                values = np.load(path, allow_pickle=False)
            elif path.suffix == ".ply":
                from plyfile import PlyData

                vertex = PlyData.read(str(path))["vertex"]
                values = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
            elif path.suffix in (".txt", ".xyz", ".pts"):
                text = path.read_text().replace(",", " ")
                values = np.loadtxt(text.splitlines(), dtype=np.float32, ndmin=2)
            else:
                raise InputError(f"{name}: {str(path)!r} is not a .npy, .ply, .txt or .xyz point file")
        except (ValueError, KeyError, OSError) as error:
            raise InputError(f"{name}: cannot read points from {str(path)!r}: {error}") from None
        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    else:
        x = torch.as_tensor(np.asarray(item, dtype=np.float32)) if not isinstance(item, Tensor) else item.float()
    if x.dim() != 2 or x.shape[1] < 3 or x.shape[0] == 0:
        raise InputError(f"{name}: a point cloud must be [N, >=3] with N >= 1, got shape {list(x.shape)}")
    if not torch.isfinite(x[:, :3]).all():
        raise InputError(f"{name}: the point cloud holds NaN or infinite coordinates")
    return x[:, :3].contiguous()


class PointCloudClassificationPipeline:
    """See the module notes."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model, self.device, self.dtype = model.to(device).eval(), device, dtype
        self.num_points = int(getattr(model, "num_points", 1024))

    def prepare(self, points: Tensor, name: str) -> Tensor:
        if len(points) < self.num_points:
            raise InputError(f"{name}: {len(points)} points, the model takes {self.num_points}")
        cloud = normalize_unit_sphere(points).unsqueeze(0)
        if len(points) > self.num_points:
            cloud = gather_points(cloud, farthest_point_sample(cloud, self.num_points))
        return cloud[0]

    @torch.no_grad()
    def __call__(self, inputs: PointInput | Sequence[PointInput], top_k: int = 1, votes: int = 0,
                 labels: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any] | list[dict[str, Any]]:
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        clouds = torch.stack([self.prepare(read_points(item, f"input {i}"), f"input {i}")
                              for i, item in enumerate(items)])
        if votes > 0:
            generator = torch.Generator().manual_seed(seed)
            logits = sum(self.model(scale_and_translate(clouds, generator).to(self.device, self.dtype)).float()
                         for _ in range(votes))
        else:
            logits = self.model(clouds.to(self.device, self.dtype)).float()
        probs = logits.softmax(-1).cpu()
        names = list(labels) if labels is not None else [f"class {i}" for i in range(probs.shape[1])]
        if len(names) != probs.shape[1]:
            raise InputError(f"labels names {len(names)} classes, the model predicts {probs.shape[1]}")
        results = []
        for row in probs:
            top = row.topk(min(top_k, len(row)))
            best = int(top.indices[0])
            results.append({"label": best, "class_name": names[best],
                            "scores": {names[int(i)]: float(p) for p, i in zip(top.values, top.indices)}})
        return results[0] if single else results
