"""The typed configuration of a training run, as recipe YAML files write it.

```yaml
imports: [my_tasks.py]         # user code to import first (registers its tasks / models); relative to this file
task: sequence_reversal        # a registered task (mmseq.tasks)
task_args: {num_train: 2000}   # validated against the task's own config dataclass
model: text_transformer_tiny   # a registered model (mmseq models)
model_args: {dropout: 0.1}     # validated against the builder's arguments; a sub-model may be a checkpoint path
init_from:                     # start from another checkpoint's weights (any format mmseq.load reads)
  checkpoint: runs/pretrain/best
  exclude: ["decoder_postnet.*"]
  strict: false
init_also: []                  # more checkpoints loaded after init_from, each with its own filters (two experts)
freeze:                        # parameters to keep fixed: for the whole run, or the first N optimizer steps
  - {params: "encoder.*", until_step: 13000}
optim: {lr: 1.0e-3, param_groups: [{params: "decoder_prenet.*", lr: 3.0e-3}]}
adversary_optim: {name: adam, lr: 2.0e-4}  # only for a task with an adversary (a GAN's discriminator)
schedule: {name: cosine, warmup_steps: 100}
trainer: {max_steps: 1000, batch_size: 32, out_dir: runs/reversal}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmseq.config import check_choice
from mmseq.errors import ConfigError


@dataclass
class ParamGroupConfig:
    """Parameters whose names match ``params`` (shell-style patterns) get their own learning rate and weight
    decay; a parameter joins the first group that matches it, the rest stay in the default group."""

    params: list[str] = field(default_factory=list)
    lr: float | None = None  # None: optim.lr
    weight_decay: float | None = None  # None: optim.weight_decay (never applied to one-dimensional parameters)


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01  # not applied to biases and norm weights (parameters with one dimension)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    param_groups: list[ParamGroupConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("optim.name", self.name, ["adamw", "adam", "sgd"])
        for i, group in enumerate(self.param_groups):
            if not group.params:
                raise ConfigError(f"optim.param_groups[{i}].params names no parameter pattern")


@dataclass
class ScheduleConfig:
    name: str = "linear"  # constant | linear | cosine | noam | exponential | poly (all with linear warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # floor of linear / cosine decay, as a fraction of optim.lr
    gamma: float = 0.999  # exponential: the rate is multiplied by gamma every decay_steps steps (HiFi-GAN)
    decay_steps: int = 1000  # exponential: steps between decays (HiFi-GAN decays once per epoch)
    power: float = 0.9  # poly: the rate is multiplied by (1 - progress) ** power (DeepLab, AdapNet++)

    def __post_init__(self) -> None:
        check_choice("schedule.name", self.name, ["constant", "linear", "cosine", "noam", "exponential", "poly"])
        if self.power <= 0:
            raise ConfigError(f"schedule.power must be > 0, got {self.power}")
        if not 0 < self.gamma <= 1 or self.decay_steps < 1:
            raise ConfigError(f"schedule.gamma must lie in (0, 1] and schedule.decay_steps be >= 1, got "
                              f"{self.gamma} and {self.decay_steps}")


@dataclass
class InitFromConfig:
    """Initial weights from another checkpoint: its state-dict keys, filtered, renamed, then loaded.

    A checkpoint key is taken when it matches one of ``include`` and none of ``exclude`` (shell-style patterns);
    ``prefix_map`` then replaces a leading prefix (the longest that matches; ``{"": "upstream."}`` puts the whole
    checkpoint under ``upstream.``). ``strict``: every model parameter must be filled and every taken key must
    land; otherwise the missing and unexpected keys are listed and training goes on.
    """

    checkpoint: str | None = None
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    prefix_map: dict[str, str] = field(default_factory=dict)
    strict: bool = True


@dataclass
class FreezeConfig:
    """Parameters whose names match ``params`` get no updates: for the whole run (``until_step: null``) or for
    the first ``until_step`` optimizer steps (SpeechT5 freezes its encoder for the first 13k-20k updates)."""

    params: list[str] = field(default_factory=list)
    until_step: int | None = None

    def __post_init__(self) -> None:
        if not self.params:
            raise ConfigError("a freeze entry names no parameter pattern (freeze: [{params: ['encoder.*']}])")
        if self.until_step is not None and self.until_step < 1:
            raise ConfigError(f"freeze until_step must be >= 1 (or null for the whole run), got {self.until_step}")


@dataclass
class TrainerConfig:
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 32  # items per micro-batch over all processes (split across DDP ranks)
    eval_batch_size: int = 0  # items per validation / test batch; 0: batch_size
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 on CUDA only, with loss scaling)
    clip_grad_norm: float = 1.0  # 0 disables clipping
    val_every: int = 200  # steps between validations (0: only at the end)
    save_every: int = 200  # steps between resumable checkpoints (0: only at the end)
    log_every: int = 10
    keep_checkpoints: int = 2  # most recent resumable checkpoints kept
    best_metric: str = "loss"  # a validation metric name
    best_mode: str = "min"  # min | max
    seed: int = 0
    num_workers: int = 0
    out_dir: str = "runs/default"
    resume: bool = True  # continue from out_dir's latest checkpoint when there is one
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True  # tqdm bar on rank 0
    find_unused_parameters: bool = False  # DDP: needed when layers can be skipped (layerdrop)

    def __post_init__(self) -> None:
        check_choice("trainer.precision", self.precision, ["fp32", "bf16", "fp16"])
        check_choice("trainer.best_mode", self.best_mode, ["min", "max"])
        for key in ("max_steps", "batch_size", "grad_accum", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class RunConfig:
    task: str | None = None  # None only when train() is given a built task
    model: str | None = None  # None only when train() is given a built model
    imports: list[str] = field(default_factory=list)
    task_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    init_from: InitFromConfig = field(default_factory=InitFromConfig)
    # More starting checkpoints, loaded after init_from in order, each filtered and renamed by its own settings
    # (SSMA's second stage starts its RGB and depth streams from two unimodal experts).
    init_also: list[InitFromConfig] = field(default_factory=list)
    freeze: list[FreezeConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # The optimizer of a task's adversary (a GAN's discriminator, tasks.base.Adversary), used by such tasks only;
    # it follows the same schedule.
    adversary_optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
