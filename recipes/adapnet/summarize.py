"""Print the README's table from the runs' metrics.json: test mIoU overall and per condition, pixel accuracy, steps
and wall-clock training minutes, one row per run.

    python recipes/adapnet/summarize.py [--runs runs/adapnet] [--size quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = [("RGB (AdapNet++)", "rgb"), ("depth (AdapNet++)", "depth"), ("early fusion", "early_fusion"),
        ("late fusion", "late_fusion"), ("SSMA stage 2", "ssma_stage2"), ("SSMA stage 3", "ssma_stage3"),
        ("DeepLabV3-ResNet50 (RGB)", "deeplabv3")]
CONDITIONS = ["clear", "low_light", "fog", "camouflage", "motion_blur", "overexposure"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/adapnet")
    parser.add_argument("--size", default="quick")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    print("| model | mIoU | " + " | ".join(CONDITIONS) + " | pixel acc. | steps | train min |")
    print("|---|" + "---|" * (len(CONDITIONS) + 4))
    for title, name in ROWS:
        path = Path(args.runs) / f"{name}_{args.size}" / "metrics.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        m = summary[args.split]
        cells = [f"{100 * m['miou']:.1f}"] + [f"{100 * m[f'miou/{c}']:.1f}" if f"miou/{c}" in m else "-"
                                               for c in CONDITIONS]
        minutes = summary["train_seconds_this_session"] / 60
        print(f"| {title} | " + " | ".join(cells) + f" | {100 * m['pixel_accuracy']:.1f} | {summary['steps']} | "
              f"{minutes:.1f} |")


if __name__ == "__main__":
    main()
