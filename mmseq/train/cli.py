"""``mmseq train CONFIG [key=value ...]`` and ``mmseq eval CONFIG --checkpoint DIR [--split val|test] [key=value ...]``.

A config's ``imports`` (user code: a recipe's own tasks or models) are imported first, so ``mmseq train`` runs any
recipe.
"""

from __future__ import annotations

import argparse
import json

from mmseq.checkpoint import load
from mmseq.errors import ConfigError
from mmseq.tasks import build_task
from mmseq.train.distributed import resolve_device
from mmseq.train.loop import evaluate, load_run_config, train


def _train(args: argparse.Namespace) -> int:
    train(load_run_config(args.config, args.overrides))
    return 0


def _eval(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config, args.overrides)
    if cfg.task is None:
        raise ConfigError(f"config {args.config!r} names no task to evaluate on")
    task = build_task(cfg.task, cfg.task_args)
    if task.split(args.split) is None:
        raise ConfigError(f"task {cfg.task!r} has no {args.split} split to evaluate on")
    device = resolve_device(cfg.trainer.device, 0)
    model = load(args.checkpoint).to(device)
    if task.prepare_model is not None:
        task.prepare_model(model)
    print(json.dumps(evaluate(model, task, args.split, cfg.trainer, device), indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe config (resumes from its out_dir)")
    p.add_argument("config", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. trainer.max_steps=10")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a recipe's validation (or test) split")
    p.add_argument("config", help="recipe YAML file")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. OUT_DIR/best)")
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(run=_eval)
