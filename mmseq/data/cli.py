"""``mmseq data ...``: each data module that has a command contributes ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import importlib

# Modules with a ``data`` subcommand, in help order.
COMMAND_MODULES = ["mmseq.data.manifest", "mmseq.data.prepare", "mmseq.data.synth", "mmseq.data.show",
                   "mmseq.data.units"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register ``mmseq data`` and return its subcommands, where higher layers add theirs (embed-speakers)."""
    p = subparsers.add_parser("data", help="prepare, synthesise and inspect datasets")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # not written yet
        module.add_parser(sub)
    return sub
