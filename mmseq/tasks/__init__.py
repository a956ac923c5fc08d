"""Tasks: what the shared training loop trains and evaluates -- data, a loss and an evaluation, one file per
family (:mod:`mmseq.tasks.core`: the embedded ``sequence_reversal``; :mod:`mmseq.tasks.tera`). The contract is
:mod:`mmseq.tasks.base`. Importing this package registers the built-in tasks.
"""

from mmseq.tasks import core, hifigan, limber, pointcloud, segmentation, slu, speaker, speecht5, tera  # noqa: F401
from mmseq.tasks.base import (Adversary, Callback, ListDataset, LossFn, Ratio, RunContext, Task, build_task, list_tasks, register_task,
                              task_config)

__all__ = ["Adversary", "Callback", "ListDataset", "LossFn", "Ratio", "RunContext", "Task", "build_task", "list_tasks", "register_task",
           "task_config"]
