"""Model registry: plain builder functions under ``@register_model``.

A builder is a function whose keyword arguments are the model's configuration. ``create_model(name, **overrides)``
checks the overrides against the builder's signature, builds the model and records the builder name and the
arguments on ``model.mmseq_config`` so that :func:`mmseq.save_pretrained` can write them to ``config.json``.

A model that wraps another (a downstream probe around an upstream encoder) takes it as a **sub-model argument**,
declared with ``@register_model(submodels=("upstream",))``. Such an argument accepts a registered name, a model
spec ``{"builder": ..., "args": {...}}`` (what ``config.json`` records) or a model already built by
:func:`create_model` (e.g. one loaded from a checkpoint); the recorded config keeps the spec, never a path, and the
wrapped model's weights are saved with the wrapper's. Builders do no I/O: turning a checkpoint path into a model
is the checkpoint layer's job (:func:`mmseq.checkpoint.build_model`).

The registry test builds every registered model and requires every trainable parameter to get a gradient; a builder
whose model leaves parameters unused by design sets ``model.mmseq_unused_parameters = {name_pattern: reason}``.

The registry imports no model family: importing ``mmseq`` registers them.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

from mmseq.errors import ConfigError, unknown_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_SUBMODELS: dict[str, tuple[str, ...]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, submodels: Sequence[str] = ()):
    """Register ``fn`` under its function name; its keyword arguments are the model's config fields.

    Use bare (``@register_model``) or with ``submodels``: the names of arguments that take another model.
    """

    def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _MODELS and _MODELS[name] is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        _SUBMODELS[name] = tuple(submodels)
        return builder

    return register(fn) if fn is not None else register


def register_variant(build: Callable[..., nn.Module], name: str, doc: str, **defaults: Any) -> None:
    """Register ``build`` under ``name`` with other defaults; the builder's signature shows them, so the registry
    checks and records overrides against it as for a written-out builder."""

    def builder(**overrides: Any) -> nn.Module:
        return build(**{**defaults, **overrides})

    sig = inspect.signature(build)
    builder.__name__, builder.__doc__ = name, doc
    builder.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()])
    register_model(builder)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"speecht5_*"``), sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_registered(name: str) -> bool:
    return name in _MODELS


def model_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ConfigError(unknown_choice("model", name, _MODELS))
    return _MODELS[name]


def model_arguments(name: str) -> dict[str, Any]:
    """The builder's configurable arguments and their defaults."""
    sig = inspect.signature(model_builder(name))
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def submodel_arguments(name: str) -> tuple[str, ...]:
    """The builder's arguments that take another model (see the module notes)."""
    model_builder(name)
    return _SUBMODELS[name]


def is_model_spec(value: Any) -> bool:
    """True for ``{"builder": name, "args": {...}}``, the form ``config.json`` records a model in."""
    return isinstance(value, dict) and set(value) == {"builder", "args"} and isinstance(value["builder"], str)


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The spec a model built by :func:`create_model` was made from."""
    config = getattr(model, "mmseq_config", None)
    if config is None:
        raise ConfigError(f"{type(model).__name__} was not built by mmseq.create_model, so it cannot be recorded in "
                          "a config; build it with mmseq.create_model(name, ...)")
    return {"builder": config["builder"], "args": dict(config["args"])}


def build_submodel(value: str | dict[str, Any] | nn.Module, what: str) -> nn.Module:
    """A sub-model argument as a model: a registered name, a model spec, or a model built by :func:`create_model`."""
    if isinstance(value, nn.Module):
        return value
    if is_model_spec(value):
        return create_model(value["builder"], **value["args"])
    if isinstance(value, str) and value in _MODELS:
        return create_model(value)
    raise ConfigError(f"{what} {value!r} is not a registered model or a model spec "
                      "({'builder': ..., 'args': {...}}); a checkpoint path is loaded by mmseq train or "
                      "mmseq.checkpoint.build_model, or pass a loaded model (mmseq.load(path))")


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
    recorded = {k: model_spec(v) if isinstance(v, nn.Module) else v for k, v in overrides.items()}
    model.mmseq_config = {"builder": name, "args": recorded}
    return model
