"""Model registry: plain builder functions under ``@register_model``.

A builder is a function whose keyword arguments are the model's configuration. ``create_model(name, **overrides)``
checks the overrides against the builder's signature, builds the model and records the builder name and the
arguments on ``model.mmseq_config`` so that :func:`mmseq.save_pretrained` can write them to ``config.json``.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from mmseq.errors import ConfigError, unknown_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name. Its keyword arguments are the model's config fields."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def _ensure_builtin_models() -> None:
    # Importing the model families runs their @register_model decorators.
    import mmseq.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"speecht5_*"``), sorted."""
    _ensure_builtin_models()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_builder(name: str) -> Callable[..., nn.Module]:
    _ensure_builtin_models()
    if name not in _MODELS:
        raise ConfigError(unknown_choice("model", name, _MODELS))
    return _MODELS[name]


def model_arguments(name: str) -> dict[str, Any]:
    """The builder's configurable arguments and their defaults."""
    sig = inspect.signature(model_builder(name))
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model, with ``overrides`` replacing the builder's default arguments.

    Raises:
        ConfigError: ``name`` is not registered, or an override is not an argument of its builder.
    """
    builder = model_builder(name)
    valid = model_arguments(name)
    for key in overrides:
        if key not in valid:
            raise ConfigError(unknown_choice(f"argument of model {name!r}:", key, valid))
    model = builder(**overrides)
    model.mmseq_config = {"builder": name, "args": dict(overrides)}
    return model
