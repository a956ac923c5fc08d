"""``mmseq.pipeline(task, model=..., vocoder=..., device=...)``: inference on files, arrays or lists of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.inference.speech import (SpeakerIdPipeline, SpeechToSpeechPipeline, SpeechToTextPipeline,
                                    TextToSpeechPipeline)

PIPELINES = {"asr": SpeechToTextPipeline, "st": SpeechToTextPipeline, "tts": TextToSpeechPipeline,
             "vc": SpeechToSpeechPipeline, "se": SpeechToSpeechPipeline, "sid": SpeakerIdPipeline}
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def _as_model(model: Any, what: str) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, (str, Path)):
        from mmseq.checkpoint import load

        return load(model)
    raise InputError(f"{what} must be a checkpoint path or a model, got {type(model).__name__}")


def set_precision(model: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """Cast ``model`` for inference in ``dtype``.

    On CUDA the whole model is cast. On the CPU, reduced precision pays off only where decoding streams weights
    (matrix-vector products at small batch), and only for large matrices: CPUs without native bf16/fp16
    arithmetic convert every element, so large bf16 matrix products and small bf16 matrix-vector products run
    slower than fp32. So only the decoder is cast; the encoder (one large product per layer), the pre-nets and
    post-nets (small matrices; the speech post-net's frames also feed back into every later step) stay in fp32,
    and the decoder's one-step path (:mod:`mmseq.nn.incremental`) keeps its residual stream, layer norms,
    attention and its smaller matrices in fp32 there. fp16 weights keep about 8x less rounding error than bf16
    (10 mantissa bits against 7); which streams faster depends on the CPU (``bench/speecht5_vs_transformers.py``
    reports both).
    """
    model = model.to(device=device)
    if dtype == torch.float32 or device.type != "cpu" or not hasattr(model, "decoder"):
        return model.to(dtype=dtype)
    model.decoder.to(dtype=dtype)
    return model


def pipeline(task: str, model: Any, vocoder: Any = None, device: str | torch.device | None = None,
             dtype: str | torch.dtype = "fp32"):
    """Build the inference object for ``task`` (asr, st, tts, vc, se, sid).

    Args:
        model: a checkpoint directory (mmseq or transformers SpeechT5) or a loaded model.
        vocoder: for speech output: a HiFi-GAN checkpoint or module; Griffin-Lim when None.
        device: defaults to CUDA when available.
        dtype: ``fp32`` (default), ``bf16`` or ``fp16`` for reduced-precision inference.
    """
    if task not in PIPELINES:
        raise ConfigError(unknown_choice("task", task, PIPELINES))
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(unknown_choice("dtype", dtype, DTYPES))
        dtype = DTYPES[dtype]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = _as_model(model, "model")
    cls = PIPELINES[task]
    if cls in (TextToSpeechPipeline, SpeechToSpeechPipeline):
        return cls(loaded, device, dtype, None if vocoder is None else _as_model(vocoder, "vocoder"))
    return cls(loaded, device, dtype)


__all__ = ["pipeline"]
