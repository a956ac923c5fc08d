"""``hifigan``: train a HiFi-GAN vocoder (:class:`~mmseq.vocoders.HifiGan`) to invert SpeechT5's log-mel features,
against HiFi-GAN's discriminators (Kong et al. 2020; :mod:`mmseq.vocoders.discriminators`).

The generator reads exactly the features SpeechT5 predicts (:class:`~mmseq.data.features.SpeechT5LogMel`: 16 kHz,
n_fft 1024, hop 256, 80 Slaney mel bands from 80 to 7600 Hz, log10), so a trained checkpoint replaces Griffin-Lim in
``mmseq.pipeline("tts", ..., vocoder=RUN/best)``. Training batches are random segments (``segment_samples``, a
multiple of the hop; 8192 = 32 frames by default) of the manifest's utterances with their mel frames, cut from the
features of the whole utterance: frame ``k`` is centred on sample ``256 k`` and the generator writes samples
``[256 k, 256 (k + 1))`` for it, as the pipeline uses it. A segment's offset is a function of the run's seed, the
epoch and the utterance only (:class:`SegmentDataset`), so DDP, loader workers and resumes all see the same crops.

Losses (the paper's, with its weights as defaults):

- discriminator (LSGAN): ``sum_k E[(D_k(x) - 1)^2] + E[D_k(G(s))^2]`` over the sub-discriminators ``k``;
- generator: ``sum_k E[(D_k(G(s)) - 1)^2]`` + 2 x feature matching ``sum_k sum_i E|D_k^i(x) - D_k^i(G(s))|``
  (every layer's activation, the output included) + 45 x mel L1 ``E|phi(x) - phi(G(s))|``, ``phi`` the SpeechT5
  log-mel of the segment itself (computed on the segment with the same settings, differentiably).

The loop trains the discriminators as the task's :class:`~mmseq.tasks.Adversary` (their own optimizer,
``adversary_optim``) and saves the generator alone. Validation and test resynthesise whole utterances one at a time
and report ``mel_l1``, the mean absolute log10-mel difference to the input features (the ``loss``), and, on the
test split, ``griffin_lim_mel_l1``, the same for Griffin-Lim (32 iterations), the baseline the vocoder replaces.
At the end a few test utterances are written as ``.wav`` (reference, HiFi-GAN, Griffin-Lim) with a mel figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.data.audio import save_audio
from mmseq.data.features import SpeechT5LogMel
from mmseq.data.manifest import AudioDataset
from mmseq.data.samplers import FixedSizeBatches
from mmseq.errors import ConfigError
from mmseq.tasks.base import Adversary, Callback, RunContext, Task, register_task
from mmseq.vocoders import GriffinLimVocoder, HifiGanDiscriminator
from mmseq.vocoders.discriminators import DiscriminatorOutput


@dataclass
class HifiGanTaskConfig:
    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    test_manifest: str | None = "test.jsonl"
    max_seconds: float = 20.0  # longer audio is an error (the manifests of the synthetic corpus stay below 6 s)
    num_mel_bins: int = 80  # SpeechT5's features; must equal the generator's model_in_dim
    segment_samples: int = 8192  # per training item, a multiple of the hop (256); shorter utterances are padded
    mel_weight: float = 45.0
    feature_weight: float = 2.0
    adversarial_weight: float = 1.0
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    scales: int = 3
    discriminator_width: float = 1.0  # multiplies every discriminator channel count (1.0: the paper's V1)
    griffin_lim_baseline: bool = True  # test split: also the mel L1 of Griffin-Lim
    samples: int = 3  # test utterances written as .wav with a mel figure at the end

    def __post_init__(self) -> None:
        if self.segment_samples < 1024 or self.segment_samples % 256:
            raise ConfigError(f"task_args.segment_samples must be a multiple of the hop (256) and at least 1024, "
                              f"got {self.segment_samples}")
        if self.discriminator_width <= 0 or self.scales < 0:
            raise ConfigError("task_args.discriminator_width must be > 0 and task_args.scales >= 0")


# --- losses -----------------------------------------------------------------------------------------------------

def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """LSGAN loss of the discriminators: ``sum_k mean((1 - real_k)^2) + mean(fake_k^2)``.

    Args:
        real / fake: each sub-discriminator's logits on real and on generated audio, ``[B, N_k]``.
    """
    return sum(torch.mean((1 - r.float()) ** 2) + torch.mean(f.float() ** 2) for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[Tensor]) -> Tensor:
    """LSGAN loss of the generator: ``sum_k mean((1 - fake_k)^2)`` over the sub-discriminators' logits."""
    return sum(torch.mean((1 - f.float()) ** 2) for f in fake)


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """``sum_k sum_i mean|real_k^i - fake_k^i|`` over sub-discriminators ``k`` and their layers ``i`` (real
    features are constants: no gradient reaches the discriminator through them)."""
    return sum(torch.mean(torch.abs(r.detach().float() - f.float())) for rs, fs in zip(real, fake)
               for r, f in zip(rs, fs))


def log_mel(features: SpeechT5LogMel, wav: Tensor) -> Tensor:
    """``features(wav)`` for full rows, differentiable: ``wav [B, S]`` -> ``[B, 1 + S // hop, n_mels]``.

    The same framing (centred, reflect padding, periodic Hann), magnitude, filterbank and floor as
    :class:`~mmseq.data.features.SpeechT5LogMel`, through ``torch.stft`` (whose ``abs`` has a zero gradient at 0),
    in float32 whatever the autocast precision.
    """
    with torch.autocast(wav.device.type, enabled=False):  # in float32 under bf16 / fp16 autocast too
        spec = torch.stft(wav.float(), features.n_fft, features.hop_length, window=features.window, center=True,
                          pad_mode="reflect", return_complex=True).abs()  # [B, n_fft // 2 + 1, frames]
        mel = spec.transpose(1, 2) @ features.mel_fbank
        return torch.log10(mel.clamp(min=features.mel_floor))


def judge(discriminator: nn.Module, real: Tensor, fake: Tensor) -> tuple[list[DiscriminatorOutput],
                                                                        list[DiscriminatorOutput]]:
    """The discriminators' outputs on ``real`` and ``fake`` waveforms ``[B, S]``, in one pass over both."""
    outputs = discriminator(torch.cat([real, fake.to(real.dtype)]))
    b = real.shape[0]
    split = [(DiscriminatorOutput(o.logits[:b], [f[:b] for f in o.features]),
              DiscriminatorOutput(o.logits[b:], [f[b:] for f in o.features])) for o in outputs]
    return [r for r, _ in split], [f for _, f in split]


# --- data -------------------------------------------------------------------------------------------------------

class VocoderDataset(Dataset):
    """Utterances of a manifest with their SpeechT5 log-mel: ``{"id", "audio" [S], "mel" [1 + S // 256, M]}``.

    Audio shorter than ``min_samples`` is zero-padded first (a training segment must fit)."""

    def __init__(self, manifest: Path, features: SpeechT5LogMel, max_seconds: float, min_samples: int = 0):
        self.audio = AudioDataset(manifest, features.sample_rate, max_seconds)
        self.features, self.min_samples = features, min_samples

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.audio[index]
        wav = item["audio"]
        if wav.shape[0] < self.min_samples:
            wav = F.pad(wav, (0, self.min_samples - wav.shape[0]))
        with torch.no_grad():
            mel, _ = self.features(wav[None])
        return {"id": item["id"], "audio": wav, "mel": mel[0]}


def random_segment(item: dict[str, Any], segment_samples: int, hop: int,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """A random segment of an utterance starting on a frame: ``{"mel": [segment / hop, M], "audio": [segment]}``,
    frame ``k`` of the segment paired with samples ``[hop k, hop (k + 1))``."""
    frames = segment_samples // hop
    last = min(item["mel"].shape[0], item["audio"].shape[0] // hop) - frames
    start = int(torch.randint(0, last + 1, (), generator=generator))
    return {"mel": item["mel"][start : start + frames], "audio": item["audio"][start * hop : (start + frames) * hop]}


class SegmentDataset(Dataset):
    """Training items: index ``epoch * N + i`` is a random segment of utterance ``i`` drawn from
    ``(seed, epoch, i)`` alone (:class:`EpochBatches` hands out such indices), so the crops of a run are the same
    with any number of DDP processes or loader workers and after a resume."""

    def __init__(self, utterances: VocoderDataset, segment_samples: int, hop: int):
        self.utterances, self.segment_samples, self.hop = utterances, segment_samples, hop
        self.seed = 0  # the run's seed, set by the task's batch plan

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return random_segment(self.utterances[index % len(self)], self.segment_samples, self.hop, generator)


class EpochBatches:
    """A batch plan whose indices carry the epoch: ``plan``'s index ``i`` of epoch ``e`` becomes ``e * N + i``."""

    def __init__(self, plan: Any, num_items: int):
        self.plan, self.num_items = plan, num_items

    def batches(self, epoch: int) -> list[list[int]]:
        return [[epoch * self.num_items + i for i in batch] for batch in self.plan.batches(epoch)]


def stack_segments(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Training batches: ``{"mel": [B, frames, M], "audio": [B, segment]}``."""
    return {"mel": torch.stack([x["mel"] for x in items]), "audio": torch.stack([x["audio"] for x in items])}


def whole_utterances(items: list[dict[str, Any]]) -> dict[str, list]:
    """Validation / test batches: the utterances as lists (each is resynthesised alone)."""
    return {"id": [x["id"] for x in items], "mel": [x["mel"] for x in items], "audio": [x["audio"] for x in items]}


# --- the task ---------------------------------------------------------------------------------------------------

def resynthesis_mel_l1(vocoder: nn.Module, features: SpeechT5LogMel, mel: Tensor, samples: int) -> Tensor:
    """Mean ``|log-mel(vocoder(mel)) - mel|`` of one utterance: ``mel [F, M]`` of ``samples`` samples."""
    wav = vocoder(mel[None])[0, :samples]
    return (features(wav[None].float())[0][0] - mel).abs().mean()


@register_task(config=HifiGanTaskConfig)
def hifigan(cfg: HifiGanTaskConfig) -> Task:
    """HiFi-GAN training on ``cfg.corpus``'s manifests (see the module notes)."""
    features = SpeechT5LogMel(n_mels=cfg.num_mel_bins)  # of the data (on the CPU)
    loss_features = SpeechT5LogMel(n_mels=cfg.num_mel_bins)  # of the losses, moved to the model's device
    hop = features.hop_length
    root = Path(cfg.corpus)
    train_set = SegmentDataset(VocoderDataset(root / cfg.train_manifest, features, cfg.max_seconds,
                                              cfg.segment_samples), cfg.segment_samples, hop)
    val_set = VocoderDataset(root / cfg.val_manifest, features, cfg.max_seconds)
    test_set = (VocoderDataset(root / cfg.test_manifest, features, cfg.max_seconds)
                if cfg.test_manifest else None)
    discriminator = HifiGanDiscriminator(cfg.periods, cfg.scales, cfg.discriminator_width)

    def feats_on(device: torch.device) -> SpeechT5LogMel:
        return loss_features.to(device)

    def generate(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        wav = model(batch["mel"])
        if wav.shape != batch["audio"].shape:
            raise ConfigError(f"the vocoder turns {batch['mel'].shape[1]} frames into {wav.shape[-1]} samples; the "
                              f"features have a hop of {hop} samples (it needs upsample rates whose product is {hop})")
        return wav

    def adversary_loss(d: nn.Module, batch: dict[str, Tensor], fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        real_out, fake_out = judge(d, batch["audio"], fake)
        real, fake_logits = [o.logits for o in real_out], [o.logits for o in fake_out]
        loss = discriminator_loss(real, fake_logits)
        return loss, {"real_score": torch.stack([r.detach().float().mean() for r in real]).mean().item(),
                      "fake_score": torch.stack([f.detach().float().mean() for f in fake_logits]).mean().item()}

    def model_loss(d: nn.Module, batch: dict[str, Tensor], fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        real_out, fake_out = judge(d, batch["audio"], fake)
        adversarial = generator_adversarial_loss([o.logits for o in fake_out])
        matching = feature_matching_loss([o.features for o in real_out], [o.features for o in fake_out])
        phi = feats_on(fake.device)
        mel = F.l1_loss(log_mel(phi, fake), log_mel(phi, batch["audio"]))
        loss = cfg.adversarial_weight * adversarial + cfg.feature_weight * matching + cfg.mel_weight * mel
        return loss, {"mel_l1": mel.item(), "feature_matching": matching.item(),
                      "adversarial": adversarial.item()}

    def eval_loss(model: nn.Module, batch: dict[str, list]) -> tuple[Tensor, dict[str, float]]:
        phi = feats_on(batch["mel"][0].device)
        per_item = torch.stack([resynthesis_mel_l1(model, phi, mel, wav.shape[0])
                                for mel, wav in zip(batch["mel"], batch["audio"])])
        return per_item.mean(), {"mel_l1": per_item.mean().item()}

    baselines: dict[str, float] = {}

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        if split != "test" or not cfg.griffin_lim_baseline:
            return {}
        if split not in baselines:  # the same for every model: computed once
            griffin_lim = GriffinLimVocoder(n_mels=cfg.num_mel_bins)
            dataset = test_set
            with torch.no_grad():
                values = [float(resynthesis_mel_l1(griffin_lim, features, x["mel"], x["audio"].shape[0]))
                          for x in (dataset[i] for i in range(len(dataset)))]
            baselines[split] = sum(values) / max(len(values), 1)
        return {"griffin_lim_mel_l1": baselines[split]}

    def train_plan(batch_size: int, seed: int) -> EpochBatches:
        train_set.seed = seed
        return EpochBatches(FixedSizeBatches(len(train_set), batch_size, shuffle=True, seed=seed), len(train_set))

    callbacks = [VocoderSamples(test_set or val_set, features, cfg.samples)] if cfg.samples > 0 else []
    return Task(train_set=train_set, val_set=val_set, test_set=test_set, collate=stack_segments,
                eval_collate=whole_utterances, train_plan=train_plan, loss=eval_loss, evaluate=evaluate,
                callbacks=callbacks,
                adversary=Adversary(discriminator, generate, adversary_loss, model_loss),
                info={"sample_rate": features.sample_rate, "hop_length": hop, "segment_samples": cfg.segment_samples,
                      "discriminator_parameters": sum(p.numel() for p in discriminator.parameters())})


class VocoderSamples(Callback):
    """At the end: ``samples/{id}_{reference,hifigan,griffin_lim}.wav`` of the first utterances of ``dataset``
    (the best checkpoint's resynthesis) and ``samples/mel.png`` (reference / HiFi-GAN / Griffin-Lim log-mels)."""

    def __init__(self, dataset: Dataset, features: SpeechT5LogMel, count: int):
        self.dataset, self.features, self.count = dataset, features, count

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        model = (run.best_model if run.best_model is not None else run.model)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = run.out_dir / "samples"
        out.mkdir(parents=True, exist_ok=True)
        griffin_lim = GriffinLimVocoder(n_mels=self.features.output_dim)
        rows = []
        with torch.no_grad():
            for i in range(min(self.count, len(self.dataset))):
                item = self.dataset[i]
                n = item["audio"].shape[0]
                waves = {"reference": item["audio"],
                         "hifigan": model(item["mel"][None].to(device))[0, :n].float().cpu(),
                         "griffin_lim": griffin_lim(item["mel"][None])[0, :n]}
                for name, wav in waves.items():
                    save_audio(out / f"{item['id']}_{name}.wav", wav.clamp(-1, 1).numpy(), self.features.sample_rate)
                rows.append((item["id"], {k: self.features(w[None])[0][0] for k, w in waves.items()}))
        model.train(was_training)
        if rows:
            _plot_mels(rows, out / "mel.png")


def _plot_mels(rows: list[tuple[str, dict[str, Tensor]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 2.4 * len(rows)), squeeze=False)
    for r, (utt, mels) in enumerate(rows):
        for c, (name, mel) in enumerate(mels.items()):
            axes[r, c].imshow(mel.T.numpy(), origin="lower", aspect="auto", vmin=-5, vmax=1)
            axes[r, c].set_title(f"{utt}: {name}", fontsize=8)
            axes[r, c].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
