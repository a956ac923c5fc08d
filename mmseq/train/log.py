"""Run logs: ``metrics.jsonl`` (one JSON record per logged step) and TensorBoard scalars, on rank 0 only; and the
curves drawn from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RunLog:
    """Append-only metrics log that survives resume: records past the resumed step are dropped first."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, split: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_jsonl: str | Path, out_png: str | Path, metric: str = "loss") -> bool:
    """Training and validation curves of ``metric`` from a run's ``metrics.jsonl`` as a PNG; False when the log
    holds no value of it."""
    records = read_metrics(metrics_jsonl) if Path(metrics_jsonl).is_file() else []
    series = {split: [(r["step"], r[metric]) for r in records if r["split"] == split and metric in r]
              for split in ("train", "val")}
    if not any(series.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for split, points in series.items():
        if points:
            ax.plot(*zip(*points), marker="o" if split == "val" else None, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} ({Path(metrics_jsonl).parent.name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return True
