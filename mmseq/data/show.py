"""``mmseq data show DIR``: PNG grids of the vision datasets (and synthetic products) found in a folder.

The drawing lives in :mod:`mmseq.data.vision.show`, imported when the command runs (the vision stack takes seconds
to import, which the rest of the CLI should not pay).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from mmseq.data.vision.show import show

    out = Path(args.out) if args.out else Path(f"show_{Path(args.dir).resolve().name}")
    for path in show(args.dir, out, count=args.count):
        print(path)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``show`` under ``mmseq data``."""
    p = subparsers.add_parser("show", help="write PNG grids of the vision datasets in a folder")
    p.add_argument("dir", help="a dataset folder (ModelNet40 h5/txt, ScanObjectNN h5_files, ShapeNet55-34, COCO "
                               "captions, VQAv2, Cityscapes) or a folder holding several, e.g. a synthetic product")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: ./show_<name of DIR>)")
    p.add_argument("--count", type=int, default=8, help="samples per grid, one per class first (default: 8)")
    p.set_defaults(run=_run)
