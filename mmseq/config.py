"""Typed configuration: dataclasses filled from YAML files and ``key=value`` overrides.

Configs stay at the edge of the program: recipes and the CLI turn YAML into dataclasses here, then pass plain
typed values to modules. Every mistake becomes a :class:`~mmseq.errors.ConfigError` naming the key:

>>> load_config(TrainConfig, "recipe.yaml", ["trainer.max_steps=100"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf import errors as oc_errors

from mmseq.errors import ConfigError, unknown_choice

T = TypeVar("T")


def check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (call it from ``__post_init__``)."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(unknown_choice(f"value for {key}:", value, choices))


def _valid_keys(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass that holds ``dotted`` (a key path such as ``trainer.max_stpes``)."""
    cls: Any = schema
    for part in dotted.split(".")[:-1]:
        cls = typing.get_type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    return key.strip(), value


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``schema`` (a dataclass) from an optional YAML file and ``key=value`` overrides.

    Args:
        schema: the dataclass type that defines the valid keys, their types and defaults.
        path: a YAML file whose keys are a subset of the schema's (nested sections as mappings).
        overrides: dotted ``key=value`` strings applied after the file, e.g. ``"trainer.lr=3e-4"``.

    Raises:
        ConfigError: unreadable file, unknown key (the message lists the valid ones), a value of the wrong
            type, or a required key left unset.
    """
    sources: list[tuple[str, Any]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            sources.append((str(path), OmegaConf.load(path)))
        except Exception as e:  # yaml syntax errors come in many types
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    for text in overrides:
        key, value = _parse_override(text)
        sources.append((f"override {text!r}", OmegaConf.from_dotlist([f"{key}={value}"])))
    return _build(schema, sources)


def from_dict(schema: type[T], values: dict[str, Any], where: str) -> T:
    """Build ``schema`` from a plain mapping (e.g. a recipe's ``task_args``); ``where`` prefixes errors."""
    return _build(schema, [(where, OmegaConf.create(values))])


def _build(schema: type[T], sources: list[tuple[str, Any]]) -> T:
    merged: DictConfig = OmegaConf.structured(schema)
    for where, source in sources:
        try:
            merged = OmegaConf.merge(merged, source)
        except oc_errors.ConfigKeyError as e:
            key = e.full_key or str(e.key)
            raise ConfigError(
                f"{where}: " + unknown_choice("config key", key, [_join(key, k) for k in _valid_keys(schema, key)])
            ) from None
        except oc_errors.ValidationError as e:
            raise ConfigError(f"{where}: bad value for config key {e.full_key!r}: {e.msg}") from None
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except oc_errors.MissingMandatoryValue as e:
        raise ConfigError(f"config key {e.full_key!r} is required but was not set") from None
    except ConfigError:
        raise
    except oc_errors.OmegaConfBaseException as e:
        # Errors raised by a dataclass __post_init__ may arrive wrapped; unwrap ours.
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"invalid config: {e}") from None


def _join(full_key: str, name: str) -> str:
    parent = full_key.rpartition(".")[0]
    return f"{parent}.{name}" if parent else name


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts (for config.json / logging)."""
    return dataclasses.asdict(config)
