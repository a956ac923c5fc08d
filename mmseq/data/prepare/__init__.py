"""``mmseq data prepare NAME --root DIR --out DIR``: manifests from the official layouts of public corpora.

Each corpus family has a small module that registers its preparers; they read the corpus where it lies (no
copying, no download) and write one manifest per split, ``<out>/<split>.jsonl``, with audio paths relative to
``<out>``. Every preparer raises :class:`~mmseq.errors.InputError` naming the missing folder or file when the
layout is not what it expects.

=================  ================================================  ===================================
name               layout under ``--root``                            splits
=================  ================================================  ===================================
librispeech        ``<split>/<spk>/<chapter>/*.flac`` + trans.txt     the split folders found
libritts           ``<split>/<spk>/<chapter>/*.wav`` + .normalized    the split folders found
vctk               ``wav48_silence_trimmed/`` (0.92) or ``wav48/``    by speaker (``--dev/--test-speakers``)
cmu_arctic         ``cmu_us_<spk>_arctic/wav`` + ``etc/txt.done.data``  by prompt (last 100: dev, test)
voxceleb1          ``wav/idXXXXX/<video>/*.wav`` + iden_split.txt     1/2/3 = train/dev/test
speech_commands    ``<word>/*.wav`` + validation/testing lists       train/dev/test
fluent_commands    ``data/{train,valid,test}_data.csv`` + ``wavs/``   train/dev/test
slurp              ``dataset/slurp/*.jsonl`` + ``slurp_real/``        train/dev/test
mustc              ``en-de/data/<split>/{txt,wav}``                   train/dev/tst-COMMON/tst-HE
noisy_clean        ``noisy/`` + ``clean/`` (e.g. VoiceBank-DEMAND)    train/test (or ``--split``)
=================  ================================================  ===================================
"""

from __future__ import annotations

import argparse
import importlib

from mmseq.data.prepare.common import PREPARERS, Preparer, register_preparer, write_splits
from mmseq.errors import ConfigError, unknown_choice

__all__ = ["PREPARERS", "Preparer", "register_preparer", "prepare_corpus", "add_parser"]

# Modules that register preparers when imported, one per corpus family.
_MODULES = ("librispeech", "speakers", "commands", "translation", "enhancement")
for _name in _MODULES:
    importlib.import_module(f"mmseq.data.prepare.{_name}")


def prepare_corpus(name: str, root: str, out: str, **options) -> dict[str, int]:
    """Run the preparer ``name`` on the corpus at ``root`` and write its manifests to ``out``.

    Args:
        name: A key of :data:`PREPARERS`.
        root: The corpus folder, in its official layout.
        out: Folder for ``<split>.jsonl``.
        **options: The preparer's own options.

    Returns:
        Utterances written per split.
    """
    if name not in PREPARERS:
        raise ConfigError(unknown_choice("corpus", name, PREPARERS))
    splits = PREPARERS[name].prepare(root, out, **options)
    return write_splits(out, splits)


def _run(args: argparse.Namespace) -> int:
    skip = {"root", "out", "run", "command", "data_command", "corpus"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    counts = prepare_corpus(args.corpus, args.root, args.out, **options)
    for split, n in counts.items():
        print(f"{split}: {n} utterances -> {args.out}/{split}.jsonl")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``prepare`` and one sub-command per corpus under ``mmseq data``."""
    p = subparsers.add_parser("prepare", help="write manifests for a public corpus in its official layout")
    sub = p.add_subparsers(dest="corpus", required=True, metavar="NAME")
    for name, preparer in sorted(PREPARERS.items()):
        c = sub.add_parser(name, help=preparer.help, description=preparer.help)
        c.add_argument("--root", required=True, help="the corpus folder")
        c.add_argument("--out", required=True, help="folder for the <split>.jsonl manifests")
        if preparer.add_arguments is not None:
            preparer.add_arguments(c)
        c.set_defaults(run=_run)
