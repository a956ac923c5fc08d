"""mmseq's point operations against the pure-PyTorch versions most point-cloud projects copy.

The peers are written here from the description of yanx27/Pointnet_Pointnet2_pytorch's ``pointnet2_utils``:
``farthest_point_sample`` (one loop step per pick: gather the pick, squared distance of every point to it by
``sum((xyz - centroid) ** 2, -1)``, boolean-mask update of the running distance, ``max``), ``square_distance``
(``-2 a.b^T + |a|^2 + |b|^2`` over the whole matrix) with a full ``sort`` for kNN, ``index_points`` for grouping,
and a Chamfer distance that takes the minima of the full ``square_distance`` matrix both ways. Both sides get the
same inputs; FPS starts at point 0 on both sides, and the picks, neighbours and losses are checked to agree.

Sizes are points per cloud; FPS picks 512 centres, kNN and grouping take 16 neighbours of 512 centres (I2P-MAE's
first scale), Chamfer compares two clouds of the same size, forward and backward. Peak memory is the largest
amount of tensor memory held at once during one call beyond its inputs, from the torch profiler's record of
allocations and frees on the CPU.

The second table is a pre-training step of the models (forward with the loss, backward, AdamW step; the frozen
2-D teacher of I2P-MAE runs its forward inside the step and gets no update), at the recipes' batch of 16 and 512
points per cloud, as the CPU recipes train the ``*_tiny`` variants (``--step-points 0``: each model's own point
count, 1024 for Point-MAE and 2048 for Point-M2AE / I2P-MAE at paper size, with ``--step-models point_mae point_m2ae
i2p_mae``). Weights are freshly initialised (the teacher's too): the work of a step does not depend on them. Wall
times are medians over rounds that time every function in turn; ``step CPU ms`` is the median CPU time of the
process per step (one thread: the step's work, which other jobs on a shared machine inflate less than wall time).
``grouping ms`` is the FPS + kNN part of one forward (the hierarchy of all three scales for Point-M2AE / I2P-MAE),
shown as a share of the step.

    python bench/points.py [--tables ops step] [--sizes 1024 4096 8192] [--batch 8] [--chamfer-batch 4]
                           [--step-models point_mae_tiny point_m2ae_tiny i2p_mae_tiny] [--step-batch 16]
                           [--step-points 512] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from timing import machine_line, median_time, median_times

import mmseq
from mmseq.nn.points import chamfer_distance_l2, farthest_point_sample, group_points, knn


def ref_farthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    b, n, _ = xyz.shape
    centroids = torch.zeros(b, npoint, dtype=torch.long)
    distance = torch.ones(b, n) * 1e10
    farthest = torch.zeros(b, dtype=torch.long)  # the original draws a random start; point 0 here, as mmseq
    batch_indices = torch.arange(b)
    for i in range(npoint):
        centroids[:, i] = farthest
        centroid = xyz[batch_indices, farthest, :].view(b, 1, 3)
        dist = torch.sum((xyz - centroid) ** 2, -1)
        mask = dist < distance
        distance[mask] = dist[mask]
        farthest = torch.max(distance, -1)[1]
    return centroids


def ref_square_distance(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    dist = -2 * torch.matmul(src, dst.permute(0, 2, 1))
    dist += torch.sum(src**2, -1).unsqueeze(-1)
    dist += torch.sum(dst**2, -1).unsqueeze(1)
    return dist


def ref_index_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    batch = torch.arange(points.shape[0]).view(-1, *([1] * (idx.dim() - 1))).expand_as(idx)
    return points[batch, idx, :]


def ref_knn(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    return ref_square_distance(query, points).sort(dim=-1)[1][..., :k]


def ref_group(xyz: torch.Tensor, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    centres = ref_index_points(xyz, ref_farthest_point_sample(xyz, num_groups))
    idx = ref_knn(centres, xyz, group_size)
    return ref_index_points(xyz, idx) - centres.unsqueeze(2), centres


def ref_chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dist = ref_square_distance(a, b)
    return dist.min(dim=2)[0].mean() + dist.min(dim=1)[0].mean()


def peak_memory(fn: Callable[[], object]) -> int:
    """Largest tensor memory (bytes) held at once during ``fn()`` beyond what was held before it."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    held = peak = 0
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def chamfer_step(loss: Callable, a: torch.Tensor, b: torch.Tensor) -> Callable[[], object]:
    def step():
        a.grad = b.grad = None
        value = loss(a, b)
        value.backward()
        return value
    return step


def ops_table(sizes: list[int], batch: int, chamfer_batch: int, num_centres: int, neighbours: int,
              repeats: int) -> None:
    print(f"batch {batch} (Chamfer {chamfer_batch}), {num_centres} centres, {neighbours} neighbours, median of "
          f"{repeats}\n")
    print("| op | points | peer ms | mmseq ms | speed-up | peer peak MiB | mmseq peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    g, k = num_centres, neighbours
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        xyz = torch.rand(batch, n, 3, generator=gen)
        centres = xyz[:, :g].contiguous()
        a = torch.rand(chamfer_batch, n, 3, generator=gen, requires_grad=True)
        b = torch.rand(chamfer_batch, n, 3, generator=gen, requires_grad=True)

        assert torch.equal(ref_farthest_point_sample(xyz, g), farthest_point_sample(xyz, g))
        ours_knn = knn(centres, xyz, k)[1]
        assert (ref_knn(centres, xyz, k) == ours_knn).float().mean() > 0.999  # near ties may swap
        ours_groups = group_points(xyz, g, k)
        assert torch.allclose(ref_group(xyz, g, k)[1], ours_groups.centres)
        torch.testing.assert_close(ref_chamfer_l2(a, b), chamfer_distance_l2(a, b), rtol=1e-4, atol=1e-7)

        cases = {
            "FPS": (lambda: ref_farthest_point_sample(xyz, g), lambda: farthest_point_sample(xyz, g)),
            "kNN": (lambda: ref_knn(centres, xyz, k), lambda: knn(centres, xyz, k)),
            "grouping": (lambda: ref_group(xyz, g, k), lambda: group_points(xyz, g, k)),
            "Chamfer L2 fwd+bwd": (chamfer_step(ref_chamfer_l2, a, b), chamfer_step(chamfer_distance_l2, a, b)),
        }
        for name, (peer, ours) in cases.items():
            peer_s, ours_s = median_times([peer, ours], repeats)
            peer_mem, ours_mem = peak_memory(peer), peak_memory(ours)
            print(f"| {name} | {n} | {peer_s * 1e3:.1f} | {ours_s * 1e3:.1f} | {peer_s / ours_s:.1f}x | "
                  f"{peer_mem / 2**20:.1f} | {ours_mem / 2**20:.1f} |", flush=True)


Call = Callable[[], object]


def pretrain_step(name: str, batch: int, num_points: int) -> tuple[nn.Module, Call, Call, Call]:
    """The model ``name``, a training-step call (forward with the loss, backward, AdamW), a forward-only call and
    its grouping, on one batch of unit-sphere clouds of ``num_points`` (0: the model's own count)."""
    torch.manual_seed(0)
    model = mmseq.create_model(name).train()
    points = torch.randn(batch, num_points or model.num_points, 3, generator=torch.Generator().manual_seed(1))
    points = points / points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.05)
    grouping = model.hierarchy if hasattr(model, "hierarchy") else model.group

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(points).loss
        loss.backward()
        optimizer.step()
        return loss

    def forward():
        with torch.no_grad():
            return model(points).loss

    return model, step, forward, lambda: grouping(points)


def step_table(models: list[str], batch: int, num_points: int, repeats: int) -> None:
    print(f"\npre-training step, batch {batch}, AdamW, median of {repeats}\n")
    print("| model | points | trainable params (M) | step ms | clouds/s | step CPU ms | clouds/CPU s | "
          "forward ms (no grad) | grouping ms | grouping share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in models:
        model, step, forward, grouping = pretrain_step(name, batch, num_points)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        step_s, forward_s, grouping_s = median_times([step, forward, grouping], repeats)
        cpu_s = median_time(step, repeats, clock=time.process_time)
        print(f"| `{name}` | {num_points or model.num_points} | {params:.2f} | {step_s * 1e3:.0f} | "
              f"{batch / step_s:.1f} | {cpu_s * 1e3:.0f} | {batch / cpu_s:.1f} | {forward_s * 1e3:.0f} | "
              f"{grouping_s * 1e3:.0f} | "
              f"{grouping_s / step_s:.0%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=("ops", "step"), default=["ops", "step"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chamfer-batch", type=int, default=4)
    parser.add_argument("--centres", type=int, default=512)
    parser.add_argument("--neighbours", type=int, default=16)
    parser.add_argument("--step-models", nargs="+", default=["point_mae_tiny", "point_m2ae_tiny", "i2p_mae_tiny"])
    parser.add_argument("--step-batch", type=int, default=16)
    parser.add_argument("--step-points", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    if "ops" in args.tables:
        ops_table(args.sizes, args.batch, args.chamfer_batch, args.centres, args.neighbours, args.repeats)
    if "step" in args.tables:
        step_table(args.step_models, args.step_batch, args.step_points, args.repeats)


if __name__ == "__main__":
    main()
