"""Training entry point for subprocess tests: registers ``slow_reversal`` (sequence_reversal that sleeps a
little per batch, so a test can kill it mid-run) and trains from ``key=value`` arguments."""

import sys
import time

from mmseq.config import load_config
from mmseq.tasks import register_task
from mmseq.tasks.core import SequenceReversalConfig, sequence_reversal
from mmseq.train.config import RunConfig
from mmseq.train.loop import train


@register_task(config=SequenceReversalConfig)
def slow_reversal(cfg):
    task = sequence_reversal(cfg)
    loss = task.loss

    def slow_loss(model, batch):
        time.sleep(0.02)
        return loss(model, batch)

    task.loss = slow_loss
    return task


if __name__ == "__main__":
    train(load_config(RunConfig, None, sys.argv[1:]))
