"""``mmseq.pipeline(task, model=..., vocoder=..., device=...)``: inference on files, arrays or lists of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mmseq.checkpoint import load
from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.inference.precision import DTYPES, set_precision
from mmseq.inference.points import PointCloudClassificationPipeline
from mmseq.inference.segmentation import SegmentationPipeline
from mmseq.inference.speech import (SpeakerIdPipeline, SpeechToSpeechPipeline, SpeechToTextPipeline,
                                    TextToSpeechPipeline)
from mmseq.inference.vision_text import ImageToTextPipeline, VQAPipeline

PIPELINES = {"asr": SpeechToTextPipeline, "st": SpeechToTextPipeline, "tts": TextToSpeechPipeline,
             "vc": SpeechToSpeechPipeline, "se": SpeechToSpeechPipeline, "sid": SpeakerIdPipeline,
             "image-to-text": ImageToTextPipeline, "vqa": VQAPipeline}
PIPELINES["segmentation"] = SegmentationPipeline
PIPELINES["point-cloud-classification"] = PointCloudClassificationPipeline
# What a model must read and write for each task (the ``reads`` / ``writes`` of mmseq.models.compose).
TASK_MODALITIES = {"asr": ("waveform", "text"), "st": ("waveform", "text"), "tts": ("text", "mel"),
                   "vc": ("waveform", "mel"), "se": ("waveform", "mel"), "sid": ("waveform", "classes"),
                   "image-to-text": ("image", "text"), "vqa": ("image", "text")}
# A tuple of reads: any of them (segmentation models read RGB, depth or both).
TASK_MODALITIES["segmentation"] = (("rgb", "depth", "rgb+depth"), "segmentation")
TASK_MODALITIES["point-cloud-classification"] = ("points", "classes")


def _as_model(model: Any, what: str) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, (str, Path)):
        return load(model)
    raise InputError(f"{what} must be a checkpoint path or a model, got {type(model).__name__}")


def check_fits(task: str, model: nn.Module, source: Any) -> None:
    """Raise ConfigError unless ``model`` reads and writes what ``task`` needs (named when the pipeline is built,
    not on its first call)."""
    reads, writes = getattr(model, "reads", None), getattr(model, "writes", None)
    need_reads, need_writes = TASK_MODALITIES[task]
    reads_fit = reads in need_reads if isinstance(need_reads, tuple) else reads == need_reads
    if not reads_fit or writes != need_writes:
        builder = getattr(model, "mmseq_config", {}).get("builder", type(model).__name__)
        where = f"{str(source)!r} ({builder})" if isinstance(source, (str, Path)) else builder
        raise ConfigError(f"pipeline {task!r} needs a model that reads {need_reads} and writes {need_writes}; "
                          f"model {where} reads {reads} and writes {writes}")


def pipeline(task: str, model: Any, vocoder: Any = None, device: str | torch.device | None = None,
             dtype: str | torch.dtype = "fp32"):
    """Build the inference object for ``task`` (asr, st, tts, vc, se, sid, image-to-text, vqa).

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
    check_fits(task, loaded, model)
    cls = PIPELINES[task]
    if cls in (TextToSpeechPipeline, SpeechToSpeechPipeline):
        return cls(loaded, device, dtype, None if vocoder is None else _as_model(vocoder, "vocoder"))
    return cls(loaded, device, dtype)


__all__ = ["DTYPES", "PIPELINES", "check_fits", "pipeline", "set_precision"]
