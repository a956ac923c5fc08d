"""The ``mmseq`` command.

Subcommands live beside the code they drive; each module contributes ``add_parser(subparsers)`` which registers
its parser with ``set_defaults(run=callable)``. A user mistake (any :class:`~mmseq.errors.MmseqError`) prints one
line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmseq.data.cli import add_parser as add_data
from mmseq.errors import MmseqError
from mmseq.inference.cli import add_parser as add_infer
from mmseq.inference.speaker import add_parser as add_embed_speakers
from mmseq.registry import list_models, model_arguments
from mmseq.train.cli import add_parsers as add_train
from mmseq.train.continual import add_parser as add_continual


def _models(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern):
        if args.verbose:
            print(name, " ".join(f"{k}={v!r}" for k, v in model_arguments(name).items()))
        else:
            print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmseq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'speecht5_*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show each builder's arguments")
    p.set_defaults(run=_models)

    add_train(sub)  # train, eval
    add_embed_speakers(add_data(sub))  # data ... (embed-speakers needs models, so it is added here)
    add_infer(sub)  # infer
    add_continual(sub)  # continual run
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may stand before or after options such as --checkpoint.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    try:
        return int(args.run(args) or 0)
    except MmseqError as e:
        print(f"mmseq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmseq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
