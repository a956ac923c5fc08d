"""Starting points and frozen parameters: ``init_from`` (weights from another checkpoint, filtered and renamed) and
``freeze`` (parameters kept fixed for the whole run or for its first steps)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from mmseq.checkpoint import load
from mmseq.errors import CheckpointError, ConfigError
from mmseq.train.config import FreezeConfig, InitFromConfig


@dataclass
class InitReport:
    """What ``init_from`` did: the checkpoint, how many tensors it set, and the keys that did not match."""

    checkpoint: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint did not fill
    unexpected: list[str] = field(default_factory=list)  # taken checkpoint keys (after renaming) the model lacks

    def summary(self) -> str:
        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

        text = f"init_from {self.checkpoint}: {self.loaded} tensors loaded"
        if self.missing:
            text += f"; missing (kept as built): {listed(self.missing)}"
        if self.unexpected:
            text += f"; unexpected (ignored): {listed(self.unexpected)}"
        return text


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _rename(key: str, prefix_map: dict[str, str]) -> str:
    for old in sorted(prefix_map, key=len, reverse=True):
        if key.startswith(old):
            return prefix_map[old] + key[len(old):]
    return key


def init_from(model: nn.Module, cfg: InitFromConfig) -> InitReport | None:
    """Load ``cfg.checkpoint``'s weights into ``model`` (see :class:`~mmseq.train.config.InitFromConfig`).

    Raises:
        CheckpointError: the checkpoint cannot be read, a tensor's shape differs from the model's, or (strict)
            keys are missing or unexpected -- the message lists them.
    """
    if cfg.checkpoint is None:
        return None
    source = load(cfg.checkpoint).state_dict()
    target = model.state_dict()
    taken = {_rename(k, cfg.prefix_map): v for k, v in source.items()
             if _matches(k, cfg.include) and not _matches(k, cfg.exclude)}
    report = InitReport(cfg.checkpoint)
    report.unexpected = sorted(k for k in taken if k not in target)
    report.missing = sorted(k for k in target if k not in taken)
    shapes = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)}" for k, v in taken.items()
              if k in target and v.shape != target[k].shape]
    if shapes:
        raise CheckpointError(f"init_from {cfg.checkpoint}: shapes differ for {'; '.join(shapes[:6])}; exclude "
                              "those keys (init_from.exclude) to keep them as built")
    if cfg.strict and (report.missing or report.unexpected):
        raise CheckpointError(report.summary() + " (set init_from.strict=false to accept this, or filter with "
                              "init_from.include / exclude / prefix_map)")
    with torch.no_grad():
        for key, value in taken.items():
            if key in target:
                target[key].copy_(value)
                report.loaded += 1
    return report


class Freezer:
    """Which parameters are frozen at a given step: those matched by a rule whose ``until_step`` is None (always)
    or greater than the step. :meth:`apply` sets ``requires_grad`` accordingly and says whether anything changed
    (the loop then rebuilds its DDP wrapper, which only syncs parameters that require gradients)."""

    def __init__(self, model: nn.Module, rules: list[FreezeConfig]):
        self.model, self.rules = model, rules
        names = [n for n, _ in model.named_parameters()]
        for rule in rules:
            if not any(_matches(n, rule.params) for n in names):
                raise ConfigError(f"freeze pattern(s) {rule.params} match no parameter of the model "
                                  f"(e.g. {', '.join(names[:4])})")
        self.trainable = {n: p.requires_grad for n, p in model.named_parameters()}  # as built (a frozen upstream)

    def frozen_at(self, step: int) -> set[str]:
        return {n for n in self.trainable for rule in self.rules
                if _matches(n, rule.params) and (rule.until_step is None or step < rule.until_step)}

    def always_frozen(self) -> set[str]:
        return {n for n in self.trainable for rule in self.rules if _matches(n, rule.params)
                and rule.until_step is None}

    def apply(self, step: int) -> bool:
        frozen = self.frozen_at(step)
        changed = False
        for name, p in self.model.named_parameters():
            wanted = self.trainable[name] and name not in frozen
            if p.requires_grad != wanted:
                p.requires_grad_(wanted)
                changed = True
        return changed

    def changes_at(self, step: int) -> bool:
        return self.frozen_at(step) != self.frozen_at(step - 1) if step > 0 else False
