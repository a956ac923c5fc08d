"""The mode generation runs in: ``torch.inference_mode``, with ordinary tensors handed back.

Autoregressive decoding runs a few hundred small operators per step, and at batch 1 on a CPU their dispatch is
a visible share of the step: under ``inference_mode`` the dispatcher skips autograd's version counters and view
tracking (``python bench/speecht5_step_breakdown.py`` times a step both ways; ``bench/README.md`` has the
numbers). Tensors created in that mode are
*inference tensors*: autograd refuses to save them for a backward pass and they cannot be changed in place
outside the mode. So that a caller can train on, or edit, what generation returns, :func:`generation_mode` clones the results
once on the way out (a mel or a token matrix: negligible beside the generation) unless the caller is itself in
inference mode, where the clones would be inference tensors again.

Module state that generation may grow (position tables extended for a long input) is built with
``torch.inference_mode(False)`` where it is grown (:mod:`mmseq.nn.positional`), so the model stays trainable
after generating.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])


def ordinary(value: Any) -> Any:
    """``value`` (a tensor, or a dataclass of them as :func:`~mmseq.generation.generate_speech` returns) with
    every inference tensor replaced by a clone made outside inference mode; anything else as it is."""
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: ordinary(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def generation_mode(fn: F) -> F:
    """Run ``fn`` under ``torch.inference_mode`` and return its results as ordinary tensors (see the module
    docstring); inside a caller's own inference mode, ``fn`` runs as it is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode():
            result = fn(*args, **kwargs)
        return ordinary(result)

    return wrapper  # type: ignore[return-value]
