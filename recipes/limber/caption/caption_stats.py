"""What a trained LiMBeR map's captions look like on the images its evaluation scores, and CLIPScore for scale.

    python recipes/limber/caption/caption_stats.py RUN [RUN ...] [--clip runs/limber/encoders/contrastive/best]

For each run: the number of distinct greedy captions over the first ``--images`` validation images (the ones
``limber_caption``'s evaluation captions, decoded as it decodes them) and the commonest three. With ``--clip``:
the CLIPScore of each image's first reference caption, of the next image's reference, and of each run's commonest
caption given to every image.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import mmseq
from mmseq.tasks.limber import CaptionSet, clip_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="limber_caption run folders (their best/ is loaded)")
    parser.add_argument("--root", default="data/synth_captions")
    parser.add_argument("--split", default="val2014")
    parser.add_argument("--images", type=int, default=200, help="as the configs' task_args.eval_images")
    parser.add_argument("--prompt", default="a picture of", help="as the configs' task_args.caption_prompt")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--clip", default="", help="a CLIP for CLIPScore (as task_args.clip_score)")
    args = parser.parse_args()

    data = CaptionSet(Path(args.root), args.split)
    paths = list(data.paths[: args.images])
    commonest = []
    for run in args.runs:
        pipe = mmseq.pipeline("image-to-text", model=f"{run}/best", device="cpu")
        captions = pipe(paths, prompt=args.prompt, batch_size=50, max_new_tokens=args.max_new_tokens)
        counts = collections.Counter(captions)
        commonest.append(counts.most_common(1)[0][0])
        print(f"{run}: {len(counts)} distinct captions over {len(paths)} images; commonest {counts.most_common(3)}")
    if args.clip:
        score = clip_scorer(args.clip)
        refs = data.references[: len(paths)]
        print(f"CLIPScore, each image's first reference: {score(paths, [r[0] for r in refs]):.3f}")
        print(f"CLIPScore, the next image's reference: "
              f"{score(paths, [refs[(i + 1) % len(refs)][0] for i in range(len(refs))]):.3f}")
        for caption in dict.fromkeys(commonest):
            print(f"CLIPScore, {caption!r} for every image: {score(paths, [caption] * len(paths)):.3f}")


if __name__ == "__main__":
    main()
