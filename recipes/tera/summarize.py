"""Collect the downstream runs' metrics.json into one table: ``results.md`` and ``results.png``.

    python recipes/tera/summarize.py [runs/tera]

Each row is one ``tera_downstream`` run (task, upstream, head) with its best validation accuracy and the test
accuracy of that checkpoint; for every task the difference between the TERA upstream and the log-mel baseline with
the same head is listed too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def collect(root: Path) -> list[dict]:
    """One row per downstream run folder under ``root`` (its ``config.yaml`` and ``metrics.json``)."""
    rows = []
    for path in sorted(root.glob("*/metrics.json")):
        summary = json.loads(path.read_text())
        config = yaml.safe_load((path.parent / "config.yaml").read_text()) or {}
        if config.get("task") != "tera_downstream" or "test" not in summary:
            continue
        model_args = config.get("model_args", {})
        hidden = model_args.get("hidden_dim", 0)
        head = "linear" if not hidden else f"1 hidden ({hidden})"
        if model_args.get("normalize_utterances"):
            head += ", utterance-normalised"
        rows.append({
            "run": path.parent.name, "task": summary["task"]["label"], "classes": summary["task"]["classes"],
            "upstream": str(model_args.get("upstream", "logmel")),
            "head": head,
            "val_accuracy": summary["best"]["value"], "test_accuracy": summary["test"]["accuracy"],
            "train_seconds": summary["train_seconds_this_session"],
        })
    return rows


def upstream_name(upstream: str) -> str:
    return "log-mel" if upstream in ("logmel", "fbank") else "TERA (frozen)"


def table(rows: list[dict]) -> list[str]:
    lines = ["| task | upstream | head | classes | val acc | test acc | train (s) | run |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["head"], upstream_name(r["upstream"]))):
        lines.append(f"| {r['task']} | {upstream_name(r['upstream'])} | {r['head']} | {r['classes']} | "
                     f"{100 * r['val_accuracy']:.1f} | {100 * r['test_accuracy']:.1f} | {r['train_seconds']:.0f} | "
                     f"{r['run']} |")
    lines.append("")
    for task in sorted({r["task"] for r in rows}):
        for head in sorted({r["head"] for r in rows if r["task"] == task}):
            pair = {upstream_name(r["upstream"]): r for r in rows if r["task"] == task and r["head"] == head}
            if len(pair) == 2:
                gain = 100 * (pair["TERA (frozen)"]["test_accuracy"] - pair["log-mel"]["test_accuracy"])
                lines.append(f"- {task}, {head} head: TERA - log-mel = {gain:+.1f} points of test accuracy")
    return lines


def plot(rows: list[dict], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({(r["task"], r["head"]) for r in rows})
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.6))
    width = 0.38
    for k, name in enumerate(("log-mel", "TERA (frozen)")):
        positions, values = [], []
        for i, (task, head) in enumerate(tasks):  # a setting run with one upstream only gets one bar
            match = [r for r in rows if (r["task"], r["head"]) == (task, head) and upstream_name(r["upstream"]) == name]
            if match:
                positions.append(i + (k - 0.5) * width)
                values.append(100 * match[0]["test_accuracy"])
        bars = ax.bar(positions, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(tasks)), ["\n".join([t, *h.split(", ")]) for t, h in tasks])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 112)
    ax.set_title("TERA downstream, synthetic corpus")
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> None:
    root = Path(argv[0] if argv else "runs/tera")
    rows = collect(root)
    if not rows:
        sys.exit(f"no downstream metrics.json under {root}")
    lines = table(rows)
    (root / "results.md").write_text("\n".join(lines) + "\n")
    plot(rows, root / "results.png")
    print("\n".join(lines))
    print(f"wrote {root / 'results.md'} and {root / 'results.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
