"""AdapNet++ (paper size) against torchvision's DeepLabV3-ResNet50 at 768x384, batch 1, on one device.

Both randomly initialised, 12 classes, RGB input. Forward: eval mode under ``torch.inference_mode``. Training step:
forward with the auxiliary heads (AdapNet++: two, weights 0.6 / 0.5; DeepLabV3: its FCN head, 0.5), the
cross-entropy of :func:`mmseq.models.adapnet.segmentation_loss`, backward and one Adam step. At batch 1 a
BatchNorm over a 1x1 map (the image-pooling branch of either model) cannot take batch statistics, so those
BatchNorms run on their running statistics in the training step, on both sides.

Multiply-adds are ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 of one forward. Peak memory: on CUDA,
``torch.cuda.max_memory_allocated`` during the call; on the CPU, the rise of a fresh process's peak resident memory
(``VmHWM``, reset through ``/proc/self/clear_refs``) over its resident memory once the model and inputs are built
(one call, after nothing else ran there).

    python bench/segmentation.py [--repeats 3] [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import multiprocessing

import torch
import torch.nn as nn
from timing import machine_line, median_times

import mmseq.models.adapnet as adapnet

SIZE = (384, 768)  # height x width
CLASSES = 12
MODELS = ("adapnet_pp", "deeplabv3_resnet50")


def build(name: str, device: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(adapnet, name)(num_classes=CLASSES).to(device)


def pooled_norms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorms that see 1x1 maps, found with one small batch-2 forward."""
    pooled = []
    hooks = [m.register_forward_pre_hook(lambda m, args: pooled.append(m) if args[0].shape[2:].numel() == 1 else None)
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    device = next(model.parameters()).device
    model.train()
    with torch.no_grad():
        model(rgb=torch.randn(2, 3, 64, 64, device=device))
    for hook in hooks:
        hook.remove()
    return list({id(m): m for m in pooled}.values())


def cases(name: str, device: str):
    """The model, its input, a forward call and a training-step call."""
    model = build(name, device)
    frozen = pooled_norms(model)
    rgb = torch.randn(1, 3, *SIZE, device=device)
    target = torch.randint(1, CLASSES, (1, *SIZE), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def forward():
        model.eval()
        with torch.inference_mode():
            model(rgb=rgb)
        sync(device)

    def train_step():
        model.train()
        for norm in frozen:
            norm.eval()
        out = model(rgb=rgb)
        loss = adapnet.segmentation_loss(out, target, ignore_index=0, aux_weights=model.aux_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)

    return model, rgb, forward, train_step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def memory_status(key: str) -> int:
    """``VmRSS`` (resident) or ``VmHWM`` (its peak) of this process in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def peak_child(name: str, mode: str, device: str, threads: int, queue) -> None:
    """Run one call in a fresh process and report its peak memory rise (bytes)."""
    torch.set_num_threads(threads)
    _, _, forward, train_step = cases(name, device)
    fn = forward if mode == "forward" else train_step
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        queue.put(torch.cuda.max_memory_allocated() - before)
        return
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = memory_status("VmRSS")
    fn()
    queue.put(memory_status("VmHWM") - before)


def peak_memory(name: str, mode: str, device: str, threads: int) -> int:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=peak_child, args=(name, mode, device, threads, queue))
    child.start()
    value = queue.get()
    child.join()
    return value


def multiply_adds(model: nn.Module, rgb: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(rgb=rgb)
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line(args.device))
    print(f"input 1 x 3 x {SIZE[0]} x {SIZE[1]}, {CLASSES} classes, median of {args.repeats}")

    rows = {}
    built = {name: cases(name, args.device) for name in MODELS}
    for name, (model, rgb, _, _) in built.items():
        heads = [p for n, p in model.named_parameters() if n.startswith(("decoder.aux_heads", "net.aux_classifier"))]
        params = sum(p.numel() for p in model.parameters())
        rows[name] = {"params": params, "inference params": params - sum(p.numel() for p in heads),
                      "multiply-adds": multiply_adds(model, rgb)}
    forward_times = median_times([built[n][2] for n in MODELS], args.repeats)
    train_times = median_times([built[n][3] for n in MODELS], args.repeats)
    del built
    for name, fwd, step in zip(MODELS, forward_times, train_times):
        rows[name].update(forward=fwd, step=step)
        for mode in ("forward", "train step"):
            rows[name][f"peak {mode}"] = peak_memory(name, mode.split()[0], args.device, args.threads)

    print("| model | params (M) | without aux heads (M) | GMACs | forward ms | train step ms | "
          "peak forward MiB | peak train step MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['params'] / 1e6:.2f} | {r['inference params'] / 1e6:.2f} | "
              f"{r['multiply-adds'] / 1e9:.1f} | {r['forward'] * 1e3:.0f} | {r['step'] * 1e3:.0f} | "
              f"{r['peak forward'] / 2**20:.0f} | {r['peak train step'] / 2**20:.0f} |")
    a, d = rows["adapnet_pp"], rows["deeplabv3_resnet50"]
    print(f"DeepLabV3 / AdapNet++: params {d['inference params'] / a['inference params']:.2f}x, multiply-adds "
          f"{d['multiply-adds'] / a['multiply-adds']:.2f}x, forward {d['forward'] / a['forward']:.2f}x, train step "
          f"{d['step'] / a['step']:.2f}x")


if __name__ == "__main__":
    main()
