"""``mmseq train CONFIG [key=value ...]`` and ``mmseq eval CONFIG --checkpoint DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _check_task(task: str, config: str, command: str) -> None:
    """A task defined by a recipe (registered when its own script imports it) gets an error naming that script."""
    from mmseq.errors import ConfigError
    from mmseq.train.tasks import list_tasks

    if task in list_tasks():
        return
    script = Path(config).resolve().parent.parent / "train.py"
    if script.is_file():
        raise ConfigError(f"task {task!r} is defined by its recipe, not by mmseq: run "
                          f"'python {script} {config} [key=value ...]' instead of 'mmseq {command}'")


def _train(args: argparse.Namespace) -> int:
    from mmseq.config import load_config
    from mmseq.train.config import RunConfig
    from mmseq.train.loop import train

    cfg = load_config(RunConfig, args.config, args.overrides)
    _check_task(cfg.task, args.config, "train")
    train(cfg)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mmseq.checkpoint import load
    from mmseq.config import load_config
    from mmseq.errors import ConfigError
    from mmseq.train.config import RunConfig
    from mmseq.train.distributed import resolve_device
    from mmseq.train.loop import evaluate
    from mmseq.train.tasks import build_task

    cfg = load_config(RunConfig, args.config, args.overrides)
    _check_task(cfg.task, args.config, "eval")
    task = build_task(cfg.task, cfg.task_args)
    if task.val_set is None:
        raise ConfigError(f"task {cfg.task!r} has no validation set to evaluate on")
    device = resolve_device(cfg.trainer.device, 0)
    model = load(args.checkpoint).to(device)
    print(json.dumps(evaluate(model, task, task.val_set, cfg.trainer, device), indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe config (resumes from its out_dir)")
    p.add_argument("config", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. trainer.max_steps=10")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a recipe's validation set")
    p.add_argument("config", help="recipe YAML file")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. OUT_DIR/best)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(run=_eval)
