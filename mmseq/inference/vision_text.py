"""Image-to-text inference behind :func:`mmseq.pipeline`: ``"image-to-text"`` (captions) and ``"vqa"`` (answers),
for LiMBeR models (:mod:`mmseq.models.limber`).

Images are file paths, PIL images, or ``uint8`` arrays / tensors (``[H, W, 3]`` or ``[3, H, W]``; float pixels in
``[0, 1]`` too), one or a list; a list gives a list of strings, processed ``batch_size`` at a time. The text comes
from the model's tokenizer (``model.tokenizer``, or set ``pipeline.tokenizer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from mmseq.errors import InputError
from mmseq.inference.inputs import is_batch
from mmseq.inference.precision import set_precision
from mmseq.tasks.limber import (CAPTION_PROMPT, caption_prompts, generate_text, prepare_images, truncate_answer,
                                vqa_prompts)


class _VisionTextPipeline:
    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        self.model = set_precision(model, dtype, device).eval()
        self.device, self.dtype = device, dtype
        self.tokenizer = getattr(model, "tokenizer", None)

    def _check_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise InputError("the model has no tokenizer: set pipeline.tokenizer (the LM's tokenizer)")

    def _images(self, images: Sequence[Any]) -> torch.Tensor:
        return prepare_images(self.model, images).to(self.device, self.model.encoder.weight_dtype)


class ImageToTextPipeline(_VisionTextPipeline):
    """Images in, captions out: the continuation of ``[image, prompt]`` (LiMBeR's ``"A picture of"``).

    Greedy by default; ``num_beams > 1`` for beam search; ``do_sample=True`` for nucleus sampling (LiMBeR's
    temperature 0.7 and top-p 0.9 by default), seeded by ``generator``.
    """

    def __call__(self, images: Any, prompt: str = CAPTION_PROMPT, batch_size: int = 8, num_beams: int = 1,
                 do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 30,
                 generator: torch.Generator | None = None) -> str | list[str]:
        self._check_tokenizer()
        items = list(images) if is_batch(images) else [images]
        captions: list[str] = []
        for start in range(0, len(items), batch_size):
            pixels = self._images(items[start : start + batch_size])
            captions += generate_text(self.model, caption_prompts(list(pixels), prompt), self.tokenizer,
                                      num_beams=num_beams, do_sample=do_sample, temperature=temperature,
                                      top_p=top_p, max_new_tokens=max_new_tokens, generator=generator)
        return captions if is_batch(images) else captions[0]


class VQAPipeline(_VisionTextPipeline):
    """Images and questions in, answers out: ``"Q: <question> A:"`` after the image, zero-shot or after ``shots``
    (``(image, question, answer)`` examples, each as ``[image, "Q: .. A: ..\\n"]`` before every question), the
    answer cut at its first newline or period."""

    def __call__(self, images: Any, questions: str | Sequence[str], shots: Sequence[tuple[Any, str, str]] = (),
                 batch_size: int = 8, num_beams: int = 1, max_new_tokens: int = 10) -> str | list[str]:
        self._check_tokenizer()
        batched = is_batch(images)
        items = list(images) if batched else [images]
        asked = [questions] if isinstance(questions, str) else list(questions)
        if len(asked) != len(items):
            raise InputError(f"{len(items)} images but {len(asked)} questions")
        shot_images = list(self._images([s[0] for s in shots])) if shots else []
        shot_pieces = [(image, q, a) for image, (_, q, a) in zip(shot_images, shots)]
        answers: list[str] = []
        for start in range(0, len(items), batch_size):
            pixels = self._images(items[start : start + batch_size])
            prompts = vqa_prompts(list(pixels), asked[start : start + batch_size], shot_pieces)
            texts = generate_text(self.model, prompts, self.tokenizer, num_beams=num_beams,
                                  max_new_tokens=max_new_tokens)
            answers += [truncate_answer(t) for t in texts]
        return answers if batched else answers[0]
