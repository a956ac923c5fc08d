"""``sequence_reversal``: a small embedded seq2seq task (reverse a random token string) that exercises the whole
stack end to end with no download -- the README's quick start.

Validation reports the teacher-forced loss, token and sequence accuracy, and, by greedy generation with the KV cache
(:func:`mmseq.generation.generate`), ``generated_accuracy``: the share of strings reversed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.errors import ConfigError
from mmseq.generation import generate
from mmseq.tasks.base import Ratio, Task, register_task

PAD, BOS, EOS = 1, 0, 2
FIRST_SYMBOL = 3


@dataclass
class SequenceReversalConfig:
    vocab_size: int = 32  # including the 3 special ids
    min_length: int = 4
    max_length: int = 12
    num_train: int = 4000
    num_val: int = 200
    num_test: int = 200
    seed: int = 1234  # the data's own seed, independent of the training seed


class ReversalDataset(Dataset):
    """Random token strings (a fixed set, drawn from ``seed``) and their reversals."""

    def __init__(self, cfg: SequenceReversalConfig, num: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(cfg.min_length, cfg.max_length + 1, (num,), generator=g)
        self.items = [torch.randint(FIRST_SYMBOL, cfg.vocab_size, (int(n),), generator=g) for n in lengths]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tensor:
        return self.items[i]


def collate_reversal(items: list[Tensor]) -> dict[str, Tensor]:
    """Source, decoder input (BOS + reversed) and target (reversed + EOS), padded with PAD."""
    n = len(items)
    max_len = max(len(x) for x in items)
    src = torch.full((n, max_len), PAD)
    dec_in = torch.full((n, max_len + 1), PAD)
    target = torch.full((n, max_len + 1), PAD)
    lengths = torch.tensor([len(x) for x in items])
    for i, x in enumerate(items):
        rev = x.flip(0)
        src[i, : len(x)] = x
        dec_in[i, 0], dec_in[i, 1 : len(x) + 1] = BOS, rev
        target[i, : len(x)], target[i, len(x)] = rev, EOS
    return {"src": src, "src_lengths": lengths, "dec_in": dec_in, "target": target, "target_lengths": lengths + 1}


def reversal_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float | Ratio]]:
    """Cross-entropy per item (mean over its tokens), averaged over items; token and sequence accuracy."""
    logits = model(batch["src"], batch["src_lengths"], batch["dec_in"], batch["target_lengths"]).outputs
    target = batch["target"]
    valid = target.ne(PAD)
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=PAD, reduction="none")
    loss = ((token_loss * valid).sum(1) / valid.sum(1)).mean()
    correct = (logits.argmax(-1) == target) | ~valid
    return loss, {
        "token_accuracy": Ratio(float((correct & valid).sum()), float(valid.sum())),
        "sequence_accuracy": correct.all(1).float().mean().item(),
    }


def generated_accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 64) -> float:
    """Share of ``dataset``'s strings that greedy decoding reverses exactly (EOS included)."""
    device = next(model.parameters()).device
    exact = 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_reversal([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        tokens = generate(model, batch["src"].to(device), batch["src_lengths"].to(device), start_id=BOS,
                          eos_id=EOS, pad_id=PAD, max_new_tokens=int(batch["target_lengths"].max()))
        for row, target, n in zip(tokens.cpu(), batch["target"], batch["target_lengths"].tolist()):
            exact += int(row[1 : n + 1].tolist() == target[:n].tolist())
    return exact / max(len(dataset), 1)


@register_task(config=SequenceReversalConfig)
def sequence_reversal(cfg: SequenceReversalConfig) -> Task:
    if cfg.vocab_size <= FIRST_SYMBOL or not 1 <= cfg.min_length <= cfg.max_length:
        raise ConfigError("sequence_reversal needs vocab_size > 3 and 1 <= min_length <= max_length")
    splits = {"train": ReversalDataset(cfg, cfg.num_train, cfg.seed),
              "val": ReversalDataset(cfg, cfg.num_val, cfg.seed + 1),
              "test": ReversalDataset(cfg, cfg.num_test, cfg.seed + 2)}

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        return {"generated_accuracy": generated_accuracy(model, splits[split])}

    return Task(train_set=splits["train"], val_set=splits["val"], test_set=splits["test"], collate=collate_reversal,
                loss=reversal_loss, evaluate=evaluate)
