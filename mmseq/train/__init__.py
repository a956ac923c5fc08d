"""The training loop (:func:`train`), its typed configuration, checkpoints, DDP, logs and starting points."""

from mmseq.train.config import RunConfig
from mmseq.train.loop import evaluate, load_run_config, train

__all__ = ["RunConfig", "evaluate", "load_run_config", "train"]
