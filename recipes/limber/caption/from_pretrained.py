"""Train a LiMBeR map whose frozen encoder and LM come from local files: ``mmseq train`` builds models from
registered builders, which do no I/O, so this script builds the model with
:func:`mmseq.models.limber.limber_from_pretrained` (the encoder spec, ``prefix_length`` and ``dropout`` from the
config's ``model_args``) and hands it to :func:`mmseq.train.loop.train` with the rest of the config::

    python recipes/limber/caption/from_pretrained.py recipes/limber/caption/configs/cc3m_rn50x16_gptj.yaml \\
        --lm /models/gpt-j-6b --encoder-weights /models/RN50x16.pt [key=value ...]

``--lm`` is a transformers causal-LM folder (``config.json``, weights, tokenizer files); ``--encoder-weights`` an
open_clip / timm weight file (left out: random weights, for tests only). The run's checkpoints are
self-contained (the LM's config, all weights, the tokenizer), so ``mmseq eval <eval config> --checkpoint
<out_dir>/best`` evaluates them without the folders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from mmseq.errors import ConfigError, MmseqError
from mmseq.models.limber import LimberModel, limber_from_pretrained
from mmseq.train.loop import load_run_config, train

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "saved": None}


def build(model_args: dict, lm: str, encoder_weights: str | None, dtype: str = "bf16") -> LimberModel:
    """The LiMBeR model of a config's ``model_args`` with its frozen parts read from ``lm`` and
    ``encoder_weights``."""
    unknown = set(model_args) - {"encoder", "lm", "prefix_length", "dropout", "layer_norm"}
    if unknown:
        raise ConfigError(f"model_args {sorted(unknown)} are not LiMBeR arguments")
    if "encoder" not in model_args:
        raise ConfigError("model_args.encoder (the image encoder spec) is needed")
    return limber_from_pretrained(model_args["encoder"], lm, encoder_weights=encoder_weights,
                                  prefix_length=model_args.get("prefix_length", 1),
                                  dropout=model_args.get("dropout", 0.1),
                                  layer_norm=model_args.get("layer_norm", False), torch_dtype=DTYPES[dtype])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--lm", required=True, help="transformers causal-LM folder (GPT-J, GPT-2, OPT, Llama)")
    parser.add_argument("--encoder-weights", default=None, help="open_clip / timm weight file")
    parser.add_argument("--dtype", default="bf16", choices=list(DTYPES), help="the LM's weights (default bf16)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args, extra = parser.parse_known_args(argv)  # key=value overrides may also follow the options
    if any(a.startswith("-") for a in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides += extra
    try:
        cfg = load_run_config(args.config, args.overrides)
        train(cfg, model=build(cfg.model_args, args.lm, args.encoder_weights, args.dtype))
    except MmseqError as e:
        print(f"from_pretrained: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
