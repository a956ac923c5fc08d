"""Train a downstream head (phone / speaker / intent) on a frozen upstream, test it, write metrics and plots.

Used by ``recipes/tera/{phone,speaker,intent}/train.py``. Writes into ``trainer.out_dir``: the loop's files, then
``metrics.json`` (validation and test accuracy, exact over all labelled frames or utterances), ``loss.png`` and
``accuracy.png`` (training and validation curves).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mmseq
from tera_common import evaluate_split, loss_curve, run_recipe, write_json
from mmseq.train.tasks import build_task


def main(argv: list[str], doc: str) -> None:
    if not argv:
        sys.exit(doc)
    cfg, metrics, seconds = run_recipe(argv[0], argv[1:])
    out = Path(cfg.trainer.out_dir)
    task = build_task(cfg.task, cfg.task_args)
    model = mmseq.load(out / "best").eval()
    test = evaluate_split(task.test_set, model)
    val = evaluate_split(task.val_set, model)
    loss_curve(out / "metrics.jsonl", out / "loss.png", f"{cfg.task_args.get('label')} - {cfg.model_args.get('upstream')}")
    loss_curve(out / "metrics.jsonl", out / "accuracy.png", f"{cfg.task_args.get('label')} accuracy",
               metric="accuracy")
    write_json(out / "metrics.json", {
        "task": cfg.task_args.get("label"), "upstream": cfg.model_args.get("upstream"),
        "head": "linear" if not cfg.model_args.get("hidden_dim") else f"1 hidden ({cfg.model_args['hidden_dim']})",
        "classes": len(task.vocabulary), "steps": cfg.trainer.max_steps, "train_seconds": round(seconds, 1),
        "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "test_count": test["count"],
    })
    print(f"test accuracy {test['accuracy']:.4f} -> {out / 'metrics.json'}")
