"""Errors that mean "the user asked for something wrong", with a message that says what and where.

Everything mmseq raises for a user mistake derives from :class:`MmseqError`; the CLI prints such an
error as one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class MmseqError(Exception):
    """Base class of every user-facing mmseq error."""


class ConfigError(MmseqError, ValueError):
    """A configuration key or value is unknown, mistyped or inconsistent."""


class InputError(MmseqError, ValueError):
    """An input (file, array, text, tensor) cannot be used; the message names the input."""


class CheckpointError(MmseqError, OSError):
    """A checkpoint is missing, incomplete, of an unknown format or does not fit the model."""


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> str:
    """Message for an unknown name, listing the valid ones (and the closest match when there is one)."""
    import difflib

    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(choices) if choices else "(none)"
    return f"unknown {kind} {name!r}.{hint} Valid choices: {listed}"
