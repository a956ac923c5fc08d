"""Accuracy of trained phone (or intent) probes on each validation and test speaker.

    python recipes/tera/by_speaker.py runs/tera/phone_tera_linear runs/tera/phone_logmel_linear [...]

Each argument is a ``tera_downstream`` run folder (its ``config.yaml`` names the corpus and label; its ``best/``
holds the probe). Prints one markdown row per run: exact accuracy over every labelled frame (or utterance) of each speaker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

import mmseq
from mmseq.config import from_dict
from mmseq.tasks import ListDataset
from mmseq.tasks.tera import DownstreamConfig, build_items, collate_labelled, downstream_splits, label_ids, IGNORE


@torch.no_grad()
def accuracy(model, items: list, batch_size: int = 32) -> float:
    """Correct labelled frames (or utterances) over all of them."""
    dataset = ListDataset(items)
    correct = total = 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_labelled([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits = model(batch["frames"], batch["lengths"])
        logits = logits.reshape(-1, logits.shape[-1])
        labels = batch["labels"].reshape(-1)
        valid = labels != IGNORE
        correct += int((logits.argmax(-1)[valid] == labels[valid]).sum())
        total += int(valid.sum())
    return correct / max(total, 1)


def by_speaker(run: Path) -> dict[str, float]:
    task_args = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("task_args", {})
    cfg = from_dict(DownstreamConfig, task_args, where=f"{run}/config.yaml task_args")
    if cfg.label == "speaker":
        raise SystemExit(f"{run}: a speaker-ID probe has no per-speaker split to report")
    splits = downstream_splits(cfg)
    vocab = label_ids(cfg, splits["train"][0])
    model = mmseq.load(run / "best").eval()
    out = {}
    for split in ("val", "test"):
        utts, feats = splits[split]
        for speaker in sorted({u.speaker for u in utts}):
            idx = [i for i, u in enumerate(utts) if u.speaker == speaker]
            items = build_items(cfg, [utts[i] for i in idx], [feats[i] for i in idx], vocab)
            out[f"{split} {speaker}"] = accuracy(model, items)
    return out


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    rows = {Path(a).name: by_speaker(Path(a)) for a in argv}
    columns = list(next(iter(rows.values())))
    print("| run | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * row.get(c, float('nan')):.1f}" for c in columns) + " |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
