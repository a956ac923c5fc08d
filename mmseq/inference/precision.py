"""Reduced-precision inference: which parts of a model to cast, per device."""

from __future__ import annotations

import torch
import torch.nn as nn

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


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
