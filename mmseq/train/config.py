"""The typed configuration of a training run, as recipe YAML files write it.

```yaml
task: sequence_reversal        # a registered task (mmseq.train.tasks)
task_args: {num_train: 2000}   # validated against the task's own config dataclass
model: text_transformer_tiny   # a registered model (mmseq models)
model_args: {dropout: 0.1}     # validated against the builder's arguments
optim: {lr: 1.0e-3}
schedule: {name: cosine, warmup_steps: 100}
trainer: {max_steps: 1000, batch_size: 32, out_dir: runs/reversal}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mmseq.config import check_choice


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01  # not applied to biases and norm weights (parameters with one dimension)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only

    def __post_init__(self) -> None:
        check_choice("optim.name", self.name, ["adamw", "adam", "sgd"])


@dataclass
class ScheduleConfig:
    name: str = "linear"  # constant | linear | cosine | noam (all with linear warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # floor of linear / cosine decay, as a fraction of optim.lr

    def __post_init__(self) -> None:
        check_choice("schedule.name", self.name, ["constant", "linear", "cosine", "noam"])


@dataclass
class TrainerConfig:
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 32  # items per micro-batch over all processes (split across DDP ranks)
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
                from mmseq.errors import ConfigError

                raise ConfigError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class RunConfig:
    task: str = MISSING
    model: str = MISSING
    task_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
