"""TERA's input alterations (time, frequency, magnitude) and which positions the loss scores.

This follows s3prl's ``pretrain/mockingjay/task.py::generate_masked_acoustic_model_data`` draw for draw:

* **time** (per utterance of ``L`` valid frames): a span width ``w ~ U{span_min..span_max}`` (7), ``n = round(L * p / w)``
  spans (``p`` = 0.15; Python's ``round``, halves to even) with starts drawn without replacement from
  ``0 .. max(L - w - 1, 0)`` (overlap allowed, so at most ``p`` of the frames), or, without overlap, from a grid
  of ``round(w * bucket_ratio)``-frame buckets at a random offset. **One die per utterance**: below 0.8 every
  chosen frame is zeroed, below 0.9 the spans are overwritten by ``n`` other random spans of the same
  utterance, otherwise left unchanged. The chosen frames are scored in every case.
* **frequency** (per utterance): one band of width ``U{0..int(F * q)}`` (``q`` = 0.2: 0 to 16 of 80 bins) at a
  start ``U{0..F - width - 1}`` is zeroed over all frames and scored over the valid frames.
* **magnitude** (per batch): with probability ``noise_probability`` Gaussian noise of std 0.2 is added to the whole
  altered batch. It is not scored on its own.

Where s3prl would fail or score padding, this module does the harmless thing and says so:

* spans never reach past an utterance's end (s3prl indexes past it when ``L <= w`` and ``n >= 1``);
* a no-overlap draw that finds fewer bucket starts than ``n`` replaces only as many spans as it found;
* with time and frequency alteration both off, every *valid* position is scored (s3prl scores padding too);
* an utterance (or a whole batch) with nothing altered is kept and simply contributes nothing to the loss,
  instead of being dropped or tripping ``assert mask_label.sum() > 0`` (s3prl issue #342).

Random draws come from one ``torch.Generator`` (the global one when None), so a seeded run is reproducible
and the training loop's RNG checkpointing makes it resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.errors import ConfigError


@dataclass
class AlterationConfig:
    """Which alterations to apply, with s3prl's TERA defaults (``config_model.yaml``; ``-M`` configs: noise 0.15).

    Attributes:
        time_proportion: fraction of valid frames chosen in spans (``mask_proportion``); 0 disables time
            alteration (the paper's ablations drop ``T``).
        span_min / span_max: span width range in frames (``mask_consecutive_min/max``).
        allow_overlap: spans may overlap (``mask_allow_overlap``).
        bucket_ratio: bucket size over span width when overlap is disallowed (``mask_bucket_ratio``).
        zero_probability: chance the utterance's spans are zeroed.
        random_probability: chance they are replaced by other spans (the rest: left unchanged).
        frequency_proportion: maximum band width as a fraction of the bins (``mask_frequency``); 0 disables ``F``.
        noise_probability: chance per batch of adding Gaussian noise (``noise_proportion``); 0 disables ``M``.
        noise_std: standard deviation of that noise.
    """

    time_proportion: float = 0.15
    span_min: int = 7
    span_max: int = 7
    allow_overlap: bool = True
    bucket_ratio: float = 1.5
    zero_probability: float = 0.8
    random_probability: float = 0.1
    frequency_proportion: float = 0.2
    noise_probability: float = 0.0
    noise_std: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.time_proportion <= 1 or not 0 <= self.frequency_proportion <= 1:
            raise ConfigError("time_proportion and frequency_proportion must lie in [0, 1]")
        if not 1 <= self.span_min <= self.span_max:
            raise ConfigError(f"need 1 <= span_min <= span_max, got {self.span_min}, {self.span_max}")
        if self.zero_probability < 0 or self.random_probability < 0 or \
                self.zero_probability + self.random_probability > 1:
            raise ConfigError("zero_probability and random_probability must be >= 0 and sum to at most 1")
        if not 0 <= self.noise_probability <= 1 or self.noise_std < 0:
            raise ConfigError("noise_probability must lie in [0, 1] and noise_std be >= 0")

    @classmethod
    def ablation(cls, name: str, **overrides: float) -> AlterationConfig:
        """The paper's ablation by letters: ``"T"``, ``"F"``, ``"M"``, ``"T-F"``, ``"T-M"``, ``"F-M"``, ``"T-F-M"``.

        Letters present keep s3prl's defaults (``M`` uses the ``*-M`` configs' noise probability 0.15); absent
        ones are switched off.
        """
        letters = set(name.upper().replace("+", "-").split("-")) - {""}
        if not letters or not letters <= {"T", "F", "M"}:
            raise ConfigError(f"alteration ablation {name!r} must combine the letters T, F and M (e.g. 'T-F-M')")
        base = {
            "time_proportion": 0.15 if "T" in letters else 0.0,
            "frequency_proportion": 0.2 if "F" in letters else 0.0,
            "noise_probability": 0.15 if "M" in letters else 0.0,
        }
        return cls(**{**base, **overrides})


@dataclass
class Altered:
    """Output of :func:`alter`.

    Attributes:
        inputs: altered features ``[B, T, F]`` (the model input).
        target: clean features ``[B, T, F]`` (the reconstruction target).
        mask: bool ``[B, T, F]``, True at positions the loss scores.
        noise_added: whether the magnitude alteration fired for this batch.
    """

    inputs: Tensor
    target: Tensor
    mask: Tensor
    noise_added: bool


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]`` (inclusive, like ``random.randint``)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _spans(starts: Tensor, width: int) -> Tensor:
    """Frame indices of spans ``[n * width]`` from their starts ``[n]``."""
    return (starts[:, None] + torch.arange(width)[None, :]).reshape(-1)


def time_alteration(features: Tensor, length: int, cfg: AlterationConfig, generator: torch.Generator | None
                    ) -> tuple[Tensor, str]:
    """Alter one utterance in time, in place.

    Args:
        features: one utterance's frames ``[T, F]`` (altered in place).
        length: its valid frames L.
        cfg: the alteration config.
        generator: random source.

    Returns:
        ``(chosen frame indices [k], outcome)`` with outcome ``"zero"``, ``"random"`` or ``"unchanged"``.
    """
    width = _randint(cfg.span_min, cfg.span_max, generator)
    start_max = max(length - width - 1, 0)
    count = round(length * cfg.time_proportion / width)
    if cfg.allow_overlap:
        starts = torch.randperm(start_max + 1, generator=generator)[:count]
    else:
        bucket = round(width * cfg.bucket_ratio)
        offset = _randint(0, min(width, start_max), generator)
        grid = torch.arange(offset, start_max + 1, bucket)
        starts = grid[torch.randperm(len(grid), generator=generator)[:count]]
    chosen = _spans(starts, width)
    chosen = chosen[chosen < length]
    dice = _uniform(generator)
    if dice < cfg.zero_probability:
        features[chosen] = 0
        return chosen, "zero"
    if dice < cfg.zero_probability + cfg.random_probability:
        sources = _spans(torch.randperm(start_max + 1, generator=generator)[: len(starts)], width)
        sources = sources[: len(chosen)].clamp(max=max(length - 1, 0))
        features[chosen] = features[sources].clone()
        return chosen, "random"
    return chosen, "unchanged"


def frequency_alteration(features: Tensor, cfg: AlterationConfig, generator: torch.Generator | None) -> Tensor:
    """Zero one band of bins of one utterance ``[T, F]`` in place; returns the band's bin indices ``[width]``."""
    bins = features.shape[-1]
    width = _randint(0, int(bins * cfg.frequency_proportion), generator)
    start = int(torch.randperm(bins - width, generator=generator)[0]) if bins - width > 0 else 0
    band = torch.arange(start, start + width)
    features[:, band] = 0
    return band


def alter(features: Tensor, lengths: Tensor, cfg: AlterationConfig,
          generator: torch.Generator | None = None) -> Altered:
    """Apply TERA's alterations to a zero-padded batch.

    Args:
        features: clean frames ``[B, T, F]``.
        lengths: valid frames per row ``[B]``.
        cfg: which alterations, with what parameters.
        generator: random source (CPU); None uses torch's global generator.

    Returns:
        :class:`Altered` with the altered inputs, the clean target and the scored positions.
    """
    target = features
    with torch.no_grad():
        work = features.detach().to("cpu", copy=True)
        batch, frames, bins = work.shape
        scored = torch.zeros(batch, frames, bins, dtype=torch.bool)
        time_on, freq_on = cfg.time_proportion > 0, cfg.frequency_proportion > 0
        for row, length in enumerate(lengths.tolist()):
            length = min(int(length), frames)
            if length <= 0:
                continue
            if time_on:
                chosen, _ = time_alteration(work[row], length, cfg, generator)
                scored[row, chosen] = True
            if freq_on:
                band = frequency_alteration(work[row], cfg, generator)
                scored[row, :length, band] = True
            if not time_on and not freq_on:
                scored[row, :length] = True
        noise_added = False
        if cfg.noise_probability > 0 and _uniform(generator) < cfg.noise_probability:
            work += torch.randn(work.shape, generator=generator) * cfg.noise_std
            noise_added = True
    device = features.device
    return Altered(work.to(device), target, scored.to(device), noise_added)
