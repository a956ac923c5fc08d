"""TERA pretraining on a speech manifest corpus, then plots and an s3prl export.

    python recipes/tera/pretrain/train.py recipes/tera/pretrain/configs/synth.yaml [key=value ...]

Writes into ``trainer.out_dir``: the loop's ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/`` and ``best/``;
then ``metrics.json``, ``loss.png``, ``alteration.png`` (original / altered / reconstructed log-mel of a
validation utterance) and ``states-s3prl.ckpt`` (the best model in s3prl's checkpoint format).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import mmseq  # noqa: E402
from tera_common import (alteration_config, loss_curve, run_recipe, write_json)  # noqa: E402
from mmseq.config import from_dict  # noqa: E402
from mmseq.interop.s3prl import save_s3prl  # noqa: E402
from mmseq.models.tera_alteration import alter  # noqa: E402
from mmseq.train.tasks import build_task  # noqa: E402


def spectrogram_triple(model, frames: torch.Tensor, alteration, out_png: Path) -> None:
    """Original, altered and reconstructed log-mel of one utterance ``frames [T, 80]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = torch.tensor([frames.shape[0]])
    altered = alter(frames[None], lengths, alteration, torch.Generator().manual_seed(3))
    with torch.no_grad():
        recon = model.eval()(altered.inputs, lengths)[0]
    panels = [("original", frames), ("altered (model input)", altered.inputs[0]),
              ("reconstructed", recon)]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    vmin, vmax = frames.min().item(), frames.max().item()
    for ax, (title, x) in zip(axes, panels):
        ax.imshow(x.T.numpy(), origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    spans = altered.mask[0].all(-1).float()  # time-altered frames are scored in every bin
    axes[1].plot(spans.nonzero().flatten().numpy(), [frames.shape[1] - 1] * int(spans.sum()), "c|", markersize=8)
    axes[-1].set_xlabel("frame (10 ms)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg, metrics, seconds = run_recipe(argv[0], argv[1:])
    out = Path(cfg.trainer.out_dir)
    model = mmseq.load(out / "best").eval()
    task = build_task(cfg.task, cfg.task_args)
    from tera_common import PretrainConfig

    alteration = alteration_config(from_dict(PretrainConfig, dict(cfg.task_args), where="task_args"))
    spectrogram_triple(model, task.val_set[0], alteration, out / "alteration.png")
    loss_curve(out / "metrics.jsonl", out / "loss.png", f"TERA pretraining ({cfg.task_args.get('ablation', 'T-F')})")
    save_s3prl(model, out / "states-s3prl.ckpt")
    write_json(out / "metrics.json", {
        "task": "tera_pretrain", "ablation": cfg.task_args.get("ablation", "T-F"), "model": cfg.model,
        "model_args": dict(cfg.model_args), "steps": cfg.trainer.max_steps, "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "val_l1_on_altered": metrics.get("loss"),
    })
    print(f"wrote {out / 'metrics.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
