"""SpeechT5 tasks with speech output: text-to-speech (``speecht5_tts``), voice conversion (``speecht5_vc``) and
speech enhancement (``speecht5_se``), on speech manifests (:mod:`mmseq.data.manifest`).

Every task predicts SpeechT5's log10 mel frames (:class:`~mmseq.data.features.SpeechT5LogMel` of the target audio,
cached beside the manifest) from a source -- the text's character ids (TTS), the source speaker's waveform (VC),
the noisy waveform (SE) -- and a speaker x-vector. The loss is SpeechT5's (transformers' ``SpeechT5SpectrogramLoss``,
fairseq's ``TexttoSpeechLoss``):

* targets padded to a multiple of the reduction factor ``r``; decoder inputs are every ``r``-th target frame
  (``r - 1``, ``2r - 1``, ...) shifted right by one step, a zero frame first;
* L1 between the frames before the post-net and the target, plus L1 after it, each a mean over the valid frames and
  bins of the batch;
* BCE on the stop logits with ``pos_weight`` 5: label 1 at each row's last valid frame, 0 before, mean over valid
  frames;
* optionally the guided attention loss (:func:`guided_attention_loss`) on the cross-attention probabilities of the
  first ``guided_attention_heads`` heads of every decoder layer, times ``guided_attention_weight`` (transformers
  uses 10; fairseq's criterion effectively 1). Only those heads are computed explicitly (``attention_heads`` of
  :meth:`~mmseq.models.compose.EncoderDecoderModel.forward`); the others keep the SDPA kernel.

An SE model says what its frames mean (model arguments, so checkpoints and the pipeline keep them): the clean
frames themselves (``se_predict: target``), a mask on the noisy frames' mel magnitudes (``mask``: ``estimate = noisy
+ log10(sigmoid(output))``, the log form of ``sigmoid(output) * noisy`` in the magnitude domain, which is what the
official code's ``sigmoid(output) * source`` amounts to on magnitudes), or a difference (``delta``: ``estimate =
noisy + output``); and its decoder reads the previous clean frames (``se_decoder_input: previous_target``) or the
noisy frames themselves (``source``: no autoregression, one pass), the two choices of the official
``--se-predict`` / ``--se-decoder-input``. Mask and delta need the source as the decoder input (the frame they
modify must be there when the frame is predicted); such a model enhances with
:func:`mmseq.generation.speech.enhance_speech`, not with autoregressive generation.

Speaker x-vectors come from each manifest line's ``extra.xvector`` (a ``.npy`` path relative to the manifest's
folder, written by ``mmseq data embed-speakers``); VC takes the target speaker's (``extra.target_xvector``, else the
x-vector of the utterance whose audio is the target audio in the corpus' main manifests); SE the line's own.
``speaker_embedding: speaker_random`` gives every speaker a fixed random vector instead (seeded by its name) and
``zero`` a zero vector: for quick experiments without a speaker encoder.

Evaluation (``evaluate``) generates the first ``eval_utterances`` of the split with :func:`mmseq.generate_speech`
and reports MCD-DTW to the reference (TTS, VC) or SI-SDR, PESQ and STOI of the vocoded estimate against the clean
speech, with the noisy input's for comparison (SE); with ``asr_model`` (an ASR checkpoint folder) also the ASR word
and character error rates of the generated speech and of the recordings of the same utterances, and their ratio
(:mod:`mmseq.tasks.speecht5.asr_score`). The callback draws cross-attention alignments, the mel before and after
the post-net against the target, and writes a few ``.wav`` samples.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.data.audio import load_audio, save_audio
from mmseq.data.feature_cache import manifest_features
from mmseq.data.features import SpeechT5LogMel
from mmseq.data.manifest import Utterance, read_manifest
from mmseq.data.samplers import LengthBucketBatches
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError, InputError
from mmseq.generation import generate_speech
from mmseq.generation.speech import enhance_speech, se_estimate
from mmseq.metrics import mel_cepstral_distortion, pesq_wb, si_sdr, stoi
from mmseq.postnets.speech import SpeechOutput
from mmseq.tasks.base import Callback, RunContext, Task, register_task
from mmseq.tasks.speecht5.asr_score import KEY as ASR_KEY
from mmseq.tasks.speecht5.asr_score import AsrScorer, error_rates, with_ratio
from mmseq.tasks.speecht5.data import bind_tokenizer

SAMPLE_RATE = 16000
HOP_LENGTH = 256  # SpeechT5LogMel's
MEL_TAG = "speecht5_logmel"
EMBED_COMMAND = "mmseq data embed-speakers MANIFEST --model DIR"
MIN_VOCODER_FRAMES = 8
SILENT_LOG_MEL = -5.0  # log10 mel of near silence


# --- configuration ----------------------------------------------------------------------------------------------

@dataclass
class SpeechOutputConfig:
    """What the three tasks share (each task's own config adds its fields)."""

    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"
    test_manifest: str = "test.jsonl"
    num_mel_bins: int = 80  # must equal the model's
    max_seconds: float = 20.0  # longer training utterances (source or target) are left out
    speaker_embedding: str = "xvector"  # xvector (extra.xvector) | speaker_random | zero
    speaker_embedding_dim: int = 512  # must equal the model's
    speaker_seed: int = 0  # seeds the speaker_random vectors
    stop_pos_weight: float = 5.0
    guided_attention_weight: float = 0.0  # 0: off
    guided_attention_sigma: float = 0.4
    guided_attention_heads: int = 2  # first heads of every decoder layer's cross-attention
    eval_utterances: int = 8  # generation-based metrics on the first N utterances of val / test (0: none)
    max_len_ratio: float = 20.0  # generation bound (decoder steps per encoder step, see generate_speech)
    vocoder: str | None = None  # HiFi-GAN checkpoint for evaluation and samples; None: Griffin-Lim
    samples: int = 3  # .wav samples and plotted utterances at the end
    asr_model: str | None = None  # an ASR checkpoint folder: asr_wer / asr_cer of the generated speech (None: off)
    asr_num_beams: int = 5  # its beam size (the ASR task's num_beams)
    asr_ctc_weight: float = 0.3  # its joint CTC/attention weight where it has a CTC head (the ASR task's)

    def __post_init__(self) -> None:
        if self.speaker_embedding not in ("xvector", "speaker_random", "zero"):
            raise ConfigError("task_args.speaker_embedding must be xvector, speaker_random or zero, got "
                              f"{self.speaker_embedding!r}")
        if self.guided_attention_weight < 0 or self.guided_attention_heads < 1 or self.guided_attention_sigma <= 0:
            raise ConfigError("task_args: guided_attention_weight must be >= 0, guided_attention_heads >= 1 and "
                              "guided_attention_sigma > 0")
        if self.asr_num_beams < 1 or not 0 <= self.asr_ctc_weight < 1:
            raise ConfigError("task_args.asr_num_beams must be >= 1 and task_args.asr_ctc_weight in [0, 1)")


@dataclass
class TTSConfig(SpeechOutputConfig):
    tokenizer: str = "train"  # train (a character vocabulary of the training texts) | a folder with spm_char.model
    alphabet: str = "abcdefghijklmnopqrstuvwxyz'"  # "train": always in the vocabulary (34 tokens with these alone)
    guided_attention_weight: float = 10.0  # transformers' guided_attention_loss_scale


@dataclass
class VCConfig(SpeechOutputConfig):
    train_manifest: str = "vc/train.jsonl"
    val_manifest: str = "vc/dev.jsonl"
    test_manifest: str = "vc/test.jsonl"


@dataclass
class SEConfig(SpeechOutputConfig):
    train_manifest: str = "se/train.jsonl"
    val_manifest: str = "se/dev.jsonl"
    test_manifest: str = "se/test.jsonl"


# --- losses -----------------------------------------------------------------------------------------------------

def pad_to_multiple(frames: Tensor, multiple: int) -> Tensor:
    """Zero-pad ``frames [B, T, M]`` in time to a multiple of ``multiple`` frames."""
    extra = (-frames.shape[1]) % multiple
    return F.pad(frames, (0, 0, 0, extra)) if extra else frames


def shift_right_reduced(target: Tensor, reduction_factor: int) -> Tensor:
    """Decoder inputs of teacher forcing: frames ``r - 1, 2r - 1, ...`` of ``target [B, T, M]`` (``T`` a multiple
    of ``r``) shifted right by one step, a zero frame first: ``[B, T / r, M]``."""
    thinned = target[:, reduction_factor - 1 :: reduction_factor]
    return torch.cat([torch.zeros_like(thinned[:, :1]), thinned[:, :-1]], dim=1)


def spectrogram_losses(output: SpeechOutput, target: Tensor, lengths: Tensor,
                       pos_weight: float = 5.0) -> tuple[Tensor, Tensor]:
    """SpeechT5's frame losses: ``(L1 before + L1 after the post-net, stop BCE)``.

    Args:
        output: ``mel_before`` / ``mel_after [B, T, M]`` and ``stop_logits [B, T]``.
        target: ``[B, T, M]`` frames (values past ``lengths`` are ignored).
        lengths: valid frames per row ``[B]``.
        pos_weight: weight of the positive (stop) label.

    Returns:
        Each L1 is the mean absolute error over the valid frames and bins of the batch; the BCE is the mean over
        valid frames, with label 1 at each row's last valid frame.
    """
    t = target.shape[1]
    valid = torch.arange(t, device=target.device)[None, :] < lengths[:, None]  # [B, T]
    count = valid.sum() * target.shape[2]
    weight = valid[..., None].to(target.dtype)
    l1 = (((output.mel_before - target).abs() * weight).sum() + ((output.mel_after - target).abs() * weight).sum())
    l1 = l1 / count
    labels = (torch.arange(t, device=target.device)[None, :] == (lengths - 1)[:, None]).to(output.stop_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(output.stop_logits, labels, reduction="none",
                                             pos_weight=torch.tensor(pos_weight, device=target.device))
    return l1, (bce * valid).sum() / valid.sum()


def guided_attention_weights(input_length: int, output_length: int, sigma: float,
                             device: torch.device | None = None) -> Tensor:
    """``W[t, n] = 1 - exp(-(n / N - t / T)^2 / (2 sigma^2))`` for output step ``t < T`` and input step ``n < N``
    (Tachibana et al. 2017): ``[T, N]``, small near the diagonal."""
    n = torch.arange(input_length, device=device, dtype=torch.float32)[None, :] / input_length
    t = torch.arange(output_length, device=device, dtype=torch.float32)[:, None] / output_length
    return 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma**2))


def guided_attention_loss(attentions: list[Tensor], input_lengths: Tensor, output_lengths: Tensor,
                          sigma: float = 0.4) -> Tensor:
    """Mean of ``W * A`` over the valid (output, input) positions of every row and attention map.

    Args:
        attentions: per decoder layer ``[B, k, T, S]`` cross-attention probabilities (the first ``k`` heads).
        input_lengths: valid encoder steps per row ``[B]``.
        output_lengths: valid decoder steps per row ``[B]`` (frames // r: a step whose last frame is padding
            does not count, as transformers masks it).
        sigma: width of the diagonal band.
    """
    attn = torch.cat(attentions, dim=1)  # [B, L * k, T, S]
    b, _, t, s = attn.shape
    weights = attn.new_zeros(b, t, s)
    for i, (n, m) in enumerate(zip(input_lengths.tolist(), output_lengths.tolist())):
        if n and m:
            weights[i, :m, :n] = guided_attention_weights(n, m, sigma, attn.device)
    valid = ((torch.arange(t, device=attn.device)[None, :, None] < output_lengths[:, None, None])
             & (torch.arange(s, device=attn.device)[None, None, :] < input_lengths[:, None, None]))
    total = (attn * weights[:, None]).sum()  # weights are 0 outside the valid positions
    return total / (valid.sum() * attn.shape[1]).clamp(min=1)


def _core(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DDP wraps the model


def check_model(model: nn.Module, cfg: SpeechOutputConfig) -> int:
    """The model's reduction factor, after checking that it predicts ``cfg``'s frames and speaker vectors."""
    core = _core(model)
    postnet, prenet = getattr(core, "decoder_postnet", None), getattr(core, "decoder_prenet", None)
    if postnet is None or getattr(core, "writes", None) != "mel":
        raise ConfigError(f"a speech-output task needs a model that writes mel frames (speecht5_tts_*, "
                          f"speecht5_vc_*, speecht5_se_*); got {type(core).__name__}")
    if postnet.num_mel_bins != cfg.num_mel_bins:
        raise ConfigError(f"the model predicts {postnet.num_mel_bins} mel bins but task_args.num_mel_bins is "
                          f"{cfg.num_mel_bins}; set model_args.num_mel_bins={cfg.num_mel_bins}")
    if prenet.speaker_embedding_dim != cfg.speaker_embedding_dim:
        raise ConfigError(f"the model takes {prenet.speaker_embedding_dim}-d speaker embeddings but "
                          f"task_args.speaker_embedding_dim is {cfg.speaker_embedding_dim}; set "
                          f"model_args.speaker_embedding_dim={cfg.speaker_embedding_dim}")
    return postnet.reduction_factor


def decoder_inputs(batch: dict[str, Tensor], reduction_factor: int, from_source: bool) -> tuple[Tensor, Tensor]:
    """``(targets padded to a multiple of r [B, T, M], decoder inputs [B, T / r, M])``; with ``from_source`` the
    decoder reads the source frames at each step's last frame (SE with ``decoder_input: source``)."""
    target = pad_to_multiple(batch["mel"], reduction_factor)
    if not from_source:
        return target, shift_right_reduced(target, reduction_factor)
    source = _fit(batch["source_mel"], target.shape[1])
    return target, source[:, reduction_factor - 1 :: reduction_factor]


def _fit(frames: Tensor, length: int) -> Tensor:
    """``frames [B, T', M]`` cut or zero-padded to ``length`` frames."""
    if frames.shape[1] >= length:
        return frames[:, :length]
    return F.pad(frames, (0, 0, 0, length - frames.shape[1]))


def se_mode(model: nn.Module) -> tuple[str, bool]:
    """An SE model's ``(se_predict, decoder reads the source)``; ``("target", False)`` for any other model."""
    core = _core(model)
    return getattr(core, "se_predict", "target"), getattr(core, "se_decoder_input", "previous_target") == "source"


def speech_output_loss(model: nn.Module, batch: dict[str, Tensor],
                       cfg: SpeechOutputConfig) -> tuple[Tensor, dict[str, float]]:
    """SpeechT5's speech-output loss of a collated batch (see the module notes) and its parts."""
    r = check_model(model, cfg)
    se_predict, from_source = se_mode(model)
    target, dec_in = decoder_inputs(batch, r, from_source)
    guided = cfg.guided_attention_weight > 0
    # The decoder gets no padding mask (as transformers): padded steps come after every valid one, so causal
    # attention keeps them out of the valid steps.
    out = model(batch["src"], batch["src_lengths"], dec_in, None, output_attentions=guided,
                attention_heads=cfg.guided_attention_heads if guided else None,
                speaker_embeddings=batch["xvector"])
    source = None if se_predict == "target" else _fit(batch["source_mel"], target.shape[1])
    pred = se_estimate(out.outputs, source, se_predict)
    l1, bce = spectrogram_losses(pred, target, batch["mel_lengths"], cfg.stop_pos_weight)
    loss = l1 + bce
    metrics = {"l1": l1.item(), "stop_bce": bce.item()}
    if guided:
        attn = guided_attention_loss(out.cross_attentions, out.encoder_lengths, batch["mel_lengths"] // r,
                                     cfg.guided_attention_sigma)
        loss = loss + cfg.guided_attention_weight * attn
        metrics["guided_attention"] = attn.item()
    return loss, metrics


# --- data -------------------------------------------------------------------------------------------------------

def manifest_path(corpus: str, name: str) -> Path:
    path = Path(corpus) / name
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist; build the corpus with "
                          "`mmseq data synth speech --out data/synth_speech --profile quick` or set task_args.corpus")
    return path


def log_mel(utterances: list[Utterance], manifest: Path, num_mel_bins: int, field: str = "audio") -> list[Tensor]:
    """SpeechT5 log-mel ``[T_i, M]`` of every utterance's ``field`` audio (cached beside the manifest)."""
    if field == "audio":
        return manifest_features(utterances, manifest, SpeechT5LogMel(n_mels=num_mel_bins), f"{MEL_TAG}{num_mel_bins}")
    missing = [u.id for u in utterances if getattr(u, field) is None]
    if missing:
        raise InputError(f"{manifest}: utterances without {field!r}: {missing[:5]}")
    moved = [replace(u, audio=getattr(u, field)) for u in utterances]
    return manifest_features(moved, manifest, SpeechT5LogMel(n_mels=num_mel_bins),
                             f"{MEL_TAG}{num_mel_bins}_{field}")


def _load_xvector(path: Path, dim: int, where: str) -> Tensor:
    if not path.is_file():
        raise InputError(f"{where}: x-vector file {str(path)!r} does not exist; write them with `{EMBED_COMMAND}`")
    vector = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    if vector.shape[0] != dim:
        raise InputError(f"{where}: x-vector {str(path)!r} has {vector.shape[0]} values, the task expects {dim} "
                         "(task_args.speaker_embedding_dim)")
    return torch.from_numpy(vector)


def _speaker_random(speaker: str | None, dim: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(str(speaker).encode()) + seed * 1_000_003)
    return torch.randn(dim, generator=g)


def _xvector_index(corpus: str) -> dict[str, Path]:
    """Resolved audio path -> x-vector path of every utterance of the corpus' main manifests that has one."""
    index: dict[str, Path] = {}
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        path = Path(corpus) / name
        if path.is_file():
            for u in read_manifest(path):
                if u.extra and isinstance(u.extra.get("xvector"), str):
                    index[str(Path(u.audio).resolve())] = path.parent / u.extra["xvector"]
    return index


def speaker_vectors(utterances: list[Utterance], manifest: Path, cfg: SpeechOutputConfig,
                    target_speaker: bool) -> list[Tensor]:
    """One speaker vector per utterance (see the module notes). ``target_speaker``: VC, the target's."""
    dim = cfg.speaker_embedding_dim
    if cfg.speaker_embedding == "zero":
        return [torch.zeros(dim) for _ in utterances]
    if cfg.speaker_embedding == "speaker_random":
        speakers = [(u.extra or {}).get("target_speaker") if target_speaker else u.speaker for u in utterances]
        return [_speaker_random(s, dim, cfg.speaker_seed) for s in speakers]
    index: dict[str, Path] | None = None
    out = []
    for u in utterances:
        extra = u.extra or {}
        where = f"{manifest} utterance {u.id!r}"
        key = "target_xvector" if target_speaker else "xvector"
        if isinstance(extra.get(key), str):
            out.append(_load_xvector(manifest.parent / extra[key], dim, where))
            continue
        if target_speaker and u.target_audio is not None:
            index = _xvector_index(cfg.corpus) if index is None else index
            found = index.get(str(Path(u.target_audio).resolve()))
            if found is not None:
                out.append(_load_xvector(found, dim, where))
                continue
        raise InputError(f"{where} has no extra.{key} (a speaker x-vector .npy path); write them with "
                         f"`{EMBED_COMMAND}`, or set task_args.speaker_embedding=speaker_random (a fixed random "
                         "vector per speaker) for a quick experiment")
    return out


class SpeechOutputDataset(Dataset):
    """Items of one split: ``{"key", "src", "mel", "xvector", ...}``; waveform sources are read when asked for.

    Attributes:
        utterances: the manifest's utterances (kept ones).
        frames: target frames per item (for length bucketing).
    """

    def __init__(self, utterances: list[Utterance], sources: list[Any], mels: list[Tensor], vectors: list[Tensor],
                 source_mels: list[Tensor] | None = None, waveform_source: bool = False):
        self.utterances, self.sources, self.mels, self.vectors = utterances, sources, mels, vectors
        self.source_mels, self.waveform_source = source_mels, waveform_source
        self.frames = [m.shape[0] for m in mels]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> dict[str, Any]:
        src = load_audio(self.sources[i], SAMPLE_RATE) if self.waveform_source else self.sources[i]
        item = {"key": i, "src": src, "mel": self.mels[i], "xvector": self.vectors[i]}
        if self.source_mels is not None:
            item["source_mel"] = self.source_mels[i]
        return item


def _pad(tensors: list[Tensor], value: float = 0.0) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([t.shape[0] for t in tensors])
    out = tensors[0].new_full((len(tensors), int(lengths.max()), *tensors[0].shape[1:]), value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def make_collate(pad_id: float = 0.0):
    """Collate items into ``src [B, L] / [B, S]``, ``src_lengths``, ``mel [B, T, M]`` (zero-padded),
    ``mel_lengths``, ``xvector [B, E]`` (and ``source_mel``), ``key``."""

    def collate(items: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch: dict[str, Tensor] = {}
        batch["src"], batch["src_lengths"] = _pad([it["src"] for it in items], pad_id)
        batch["mel"], batch["mel_lengths"] = _pad([it["mel"] for it in items])
        batch["xvector"] = torch.stack([it["xvector"] for it in items])
        if "source_mel" in items[0]:
            batch["source_mel"] = _pad([it["source_mel"] for it in items])[0]
        batch["key"] = torch.tensor([it["key"] for it in items])
        return batch

    return collate


def length_plan(frames: list[int]):
    """Batches of similar target lengths (fewer padded frames), in a new order every epoch."""
    return lambda batch_size, seed: LengthBucketBatches(frames, float("inf"), seed=seed, max_items=batch_size)


def tts_tokenizer(cfg: TTSConfig, texts: list[str]) -> SpeechT5CharTokenizer:
    if cfg.tokenizer == "train":
        alphabet = " ".join(cfg.alphabet)
        return SpeechT5CharTokenizer.train([*texts, alphabet] if alphabet.strip() else list(texts))
    folder = Path(cfg.tokenizer)
    if not (folder / SpeechT5CharTokenizer.model_file_name).is_file():
        raise ConfigError(f"task_args.tokenizer: no {SpeechT5CharTokenizer.model_file_name} in {str(folder)!r} "
                          "(give a checkpoint folder such as microsoft/speecht5_tts, or 'train')")
    return SpeechT5CharTokenizer.from_dir(folder)


def _split(name: str, cfg: SpeechOutputConfig, kind: str, tokenizer: SpeechT5CharTokenizer | None,
           training: bool) -> SpeechOutputDataset:
    path = manifest_path(cfg.corpus, name)
    utts = read_manifest(path)
    if training:  # long sources or targets left out
        utts = [u for u in utts if max(u.duration, float((u.extra or {}).get("target_duration", 0.0)))
                <= cfg.max_seconds]
    if not utts:
        raise InputError(f"{path} has no utterance of at most task_args.max_seconds={cfg.max_seconds:g} s")
    if kind == "tts":
        missing = [u.id for u in utts if not u.text]
        if missing:
            raise InputError(f"{path}: TTS needs text; utterances without: {missing[:5]}")
        sources: list[Any] = [torch.tensor(tokenizer.encode(u.text)) for u in utts]
        mels = log_mel(utts, path, cfg.num_mel_bins)
    else:
        sources = [u.audio for u in utts]
        mels = log_mel(utts, path, cfg.num_mel_bins, field="target_audio")
    source_mels = None
    if kind == "se":  # the noisy frames, for models whose decoder reads them
        source_mels = log_mel(utts, path, cfg.num_mel_bins)
    vectors = speaker_vectors(utts, path, cfg, target_speaker=kind == "vc")
    return SpeechOutputDataset(utts, sources, mels, vectors, source_mels, waveform_source=kind != "tts")


# --- evaluation -------------------------------------------------------------------------------------------------

def load_vocoder(cfg: SpeechOutputConfig) -> nn.Module:
    if cfg.vocoder is None:
        from mmseq.vocoders import GriffinLimVocoder

        return GriffinLimVocoder(n_mels=cfg.num_mel_bins)
    from mmseq.checkpoint import load

    return load(cfg.vocoder)


def _measured(metric, *args) -> float | None:
    """A metric's value, or None where it is undefined for these signals (too short, silent: InputError)."""
    try:
        value = metric(*args)
    except InputError:
        return None
    return float(getattr(value, "mcd", value))


MCD_DB = 10.0 * math.sqrt(2.0) / math.log(10.0)  # mel-cepstral distance -> the dB convention of VC papers


class SpeechEvaluation:
    """``evaluate(model, split)``: generation-based metrics on the first ``eval_utterances`` of the split.

    With an ``asr`` scorer (``task_args.asr_model``) also what a speech recogniser hears
    (:mod:`mmseq.tasks.speecht5.asr_score`): ``asr_wer`` / ``asr_cer`` of the vocoded generated (SE: enhanced)
    speech against the utterances' transcripts, ``asr_wer_recorded`` / ``asr_cer_recorded`` of the recordings of
    the same utterances (TTS: the utterance's audio; VC: the target speaker's; SE: the clean speech), their ratio
    ``asr_wer_ratio`` where the recorded WER is not 0, and for SE ``asr_wer_noisy`` / ``asr_cer_noisy`` of the
    noisy input.
    """

    def __init__(self, splits: dict[str, SpeechOutputDataset], cfg: SpeechOutputConfig, kind: str,
                 asr: AsrScorer | None = None):
        self.splits, self.cfg, self.kind, self.asr = splits, cfg, kind, asr
        self._vocoder: nn.Module | None = None

    @property
    def vocoder(self) -> nn.Module:
        if self._vocoder is None:
            self._vocoder = load_vocoder(self.cfg).eval()
        return self._vocoder

    def synthesise(self, model: nn.Module, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor, Tensor]:
        """Generated (or enhanced) ``mel``, ``lengths`` and vocoded waveforms ``[B, S]`` (rows padded)."""
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in make_collate(_pad_value(self.kind))(items).items()}
        was_training = model.training
        model.eval()
        try:
            if self.kind == "se":
                out = enhance_speech(model, batch["src"], batch["src_lengths"], source_mel=batch["source_mel"],
                                     speaker_embeddings=batch["xvector"], max_len_ratio=self.cfg.max_len_ratio)
                mel, lengths = out.mel, out.lengths
            else:
                out = generate_speech(model, batch["src"], batch["src_lengths"], speaker_embeddings=batch["xvector"],
                                      max_len_ratio=self.cfg.max_len_ratio)
                mel, lengths = out.mel, out.lengths
        finally:
            model.train(was_training)
        vocoder = self.vocoder.to(device)
        frames = mel.shape[1]
        if frames < MIN_VOCODER_FRAMES:  # an untrained model may stop at once; Griffin-Lim needs a few frames
            mel = F.pad(mel, (0, 0, 0, MIN_VOCODER_FRAMES - frames), value=SILENT_LOG_MEL)
        return mel[:, :frames], lengths, vocoder(mel.float()).float()

    def __call__(self, model: nn.Module, split: str) -> dict[str, float]:
        dataset = self.splits.get(split)
        n = min(self.cfg.eval_utterances, len(dataset) if dataset is not None else 0)
        if n == 0:
            return {}
        items = [dataset[i] for i in range(n)]
        results: dict[str, list[float]] = {}

        def add(key: str, value: float | None) -> None:
            if value is not None and math.isfinite(value):
                results.setdefault(key, []).append(float(value))

        step = self.vocoder.samples_per_frame
        generated: list[Tensor] = []  # for the ASR
        with torch.no_grad():
            for start in range(0, n, 8):
                chunk = items[start : start + 8]
                mel, lengths, wavs = self.synthesise(model, chunk)
                for j, item in enumerate(chunk):
                    utt = dataset.utterances[item["key"]]
                    hyp = wavs[j, : int(lengths[j]) * step].cpu()
                    generated.append(hyp)
                    ref = load_audio(utt.audio if self.kind == "tts" else utt.target_audio, SAMPLE_RATE)
                    add("length_ratio", float(lengths[j]) / item["mel"].shape[0])
                    if self.kind == "se":
                        ceiling = self.vocoder(item["mel"][None].to(wavs.device).float())[0].cpu()
                        self._enhancement_metrics(add, hyp, ref, item["src"], ceiling)
                    else:  # DTW aligns the two, which need not have one length
                        mcd = _measured(mel_cepstral_distortion, hyp.numpy(), ref.numpy(), SAMPLE_RATE)
                        add("mcd_dtw_db", None if mcd is None else MCD_DB * mcd)
                        add("mcd_undefined", float(mcd is None))
        scores = {k: float(np.mean(v)) for k, v in results.items()}
        if self.asr is not None:
            scores.update(self.asr_scores(model, split, generated))
        return scores

    def asr_scores(self, model: nn.Module, split: str, generated: list[Tensor]) -> dict[str, float]:
        """The ASR metrics (see the class notes) of the first ``len(generated)`` utterances of ``split``, whose
        generated waveforms (at the vocoder's rate) are ``generated``."""
        utts = self.splits[split].utterances[: len(generated)]
        texts = [u.text for u in utts]
        device = next(model.parameters()).device
        rate = int(getattr(self.vocoder, "sampling_rate", SAMPLE_RATE))
        with torch.no_grad():
            scores = error_rates(self.asr.transcribe(generated, rate, device), texts)
            recorded = [u.audio if self.kind == "tts" else u.target_audio for u in utts]
            scores.update(error_rates(self.asr.transcribe_files(recorded, device, cache=split), texts, "_recorded"))
            if self.kind == "se":
                noisy = self.asr.transcribe_files([u.audio for u in utts], device, cache=f"{split}/noisy")
                scores.update(error_rates(noisy, texts, "_noisy"))
        return with_ratio(scores)

    @staticmethod
    def _enhancement_metrics(add, enhanced: Tensor, clean: Tensor, noisy: Tensor, vocoded_clean: Tensor) -> None:
        """SI-SDR (dB), wide-band PESQ and STOI against the clean speech of the enhanced speech, of the noisy input
        (``*_noisy``), their difference (``*_improvement``), and of the clean frames through the same vocoder
        (``*_vocoded_clean``: what a perfect mel estimate would score, since the vocoder makes its own phase)."""
        n = min(enhanced.shape[0], clean.shape[0], noisy.shape[0], vocoded_clean.shape[0])
        signals = {"": enhanced[:n], "_noisy": noisy[:n], "_vocoded_clean": vocoded_clean[:n]}
        ref = clean[:n].numpy()
        metrics = {"si_sdr": lambda e, r: si_sdr(e, r), "pesq": lambda e, r: pesq_wb(e, r, SAMPLE_RATE),
                   "stoi": lambda e, r: stoi(e, r, SAMPLE_RATE)}
        for key, metric in metrics.items():
            values = {suffix: _measured(metric, x.numpy(), ref) for suffix, x in signals.items()}
            for suffix, value in values.items():
                add(f"{key}{suffix}", value)
            if values[""] is not None and values["_noisy"] is not None:
                add(f"{key}_improvement", values[""] - values["_noisy"])


def _pad_value(kind: str) -> float:
    return 1.0 if kind == "tts" else 0.0  # SpeechT5's <pad> id for text; silence for waveforms


# --- pictures and samples ---------------------------------------------------------------------------------------

def _plot_alignments(attentions: list[Tensor], out_png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = len(attentions)
    fig, axes = plt.subplots(1, layers, figsize=(3.2 * layers, 3), squeeze=False)
    for ax, (i, a) in zip(axes[0], enumerate(attentions)):
        ax.imshow(a.T.numpy(), origin="lower", aspect="auto", cmap="viridis")
        ax.set_title(f"layer {i}")
        ax.set_xlabel("decoder step")
    axes[0][0].set_ylabel("encoder step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _plot_mels(panels: list[tuple[str, Tensor]], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), squeeze=False)
    ref = panels[0][1]
    vmin, vmax = ref.min().item(), ref.max().item()
    for ax, (title, mel) in zip(axes[:, 0], panels):
        ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame (16 ms)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


class SpeechOutputPictures(Callback):
    """At the end, from the best model, for the first ``samples`` validation utterances: ``alignment_<i>.png``
    (cross-attention of every decoder layer, averaged over heads, teacher-forced), ``mel_<i>.png`` (target, before
    and after the post-net teacher-forced, and generated), and ``samples/<id>_{generated,reference}.wav``."""

    def __init__(self, evaluation: SpeechEvaluation, dataset: SpeechOutputDataset | None, cfg: SpeechOutputConfig):
        self.evaluation, self.dataset, self.cfg = evaluation, dataset, cfg

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        if self.dataset is None or self.cfg.samples <= 0:
            return
        model = run.best_model if run.best_model is not None else run.model
        n = min(self.cfg.samples, len(self.dataset))
        items = [self.dataset[i] for i in range(n)]
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in make_collate(_pad_value(self.evaluation.kind))(items).items()}
        model.eval()
        with torch.no_grad():
            r = check_model(model, self.cfg)
            se_predict, from_source = se_mode(model)
            target, dec_in = decoder_inputs(batch, r, from_source)
            out = model(batch["src"], batch["src_lengths"], dec_in, None, output_attentions=True,
                        speaker_embeddings=batch["xvector"])
            source = None if se_predict == "target" else _fit(batch["source_mel"], target.shape[1])
            pred = se_estimate(out.outputs, source, se_predict)
            mel, lengths, wavs = self.evaluation.synthesise(model, items)
        samples = run.out_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        step = self.evaluation.vocoder.samples_per_frame
        for i, item in enumerate(items):
            utt = self.dataset.utterances[item["key"]]
            frames, enc = int(batch["mel_lengths"][i]), int(out.encoder_lengths[i])
            steps = frames // r
            attn = [a[i, :, : max(steps, 1), :enc].mean(0).float().cpu() for a in out.cross_attentions]
            _plot_alignments(attn, run.out_dir / f"alignment_{i}.png", f"{utt.id}: cross-attention (teacher-forced)")
            _plot_mels([("target", target[i, :frames].cpu()), ("before post-net", pred.mel_before[i, :frames].cpu()),
                        ("after post-net", pred.mel_after[i, :frames].cpu()),
                        ("generated", mel[i, : int(lengths[i])].float().cpu())], run.out_dir / f"mel_{i}.png")
            save_audio(samples / f"{utt.id}_generated.wav", wavs[i, : int(lengths[i]) * step].cpu().numpy(),
                       SAMPLE_RATE)
            ref = utt.audio if self.evaluation.kind == "tts" else utt.target_audio
            save_audio(samples / f"{utt.id}_reference.wav", load_audio(ref, SAMPLE_RATE).numpy(), SAMPLE_RATE)


# --- the tasks --------------------------------------------------------------------------------------------------

def _asr_scorer(cfg: SpeechOutputConfig, splits: dict[str, SpeechOutputDataset]) -> AsrScorer | None:
    """``task_args.asr_model``'s scorer, loaded and checked now (before any training); None when it is not set."""
    if cfg.asr_model is None:
        return None
    for split in ("val", "test"):
        untold = [u.id for u in splits[split].utterances[: cfg.eval_utterances] if not u.text]
        if untold:
            manifest = Path(cfg.corpus) / getattr(cfg, f"{split}_manifest")
            raise InputError(f"{ASR_KEY} scores transcripts, but utterances of {str(manifest)!r} have no text: "
                             f"{untold[:5]}")
    return AsrScorer(cfg.asr_model, num_beams=cfg.asr_num_beams, ctc_weight=cfg.asr_ctc_weight)


def _speech_task(cfg: SpeechOutputConfig, kind: str) -> Task:
    tokenizer = None
    if kind == "tts":
        train_utts = read_manifest(manifest_path(cfg.corpus, cfg.train_manifest))
        tokenizer = tts_tokenizer(cfg, [u.text for u in train_utts if u.text])
    splits = {"train": _split(cfg.train_manifest, cfg, kind, tokenizer, training=True),
              "val": _split(cfg.val_manifest, cfg, kind, tokenizer, training=False),
              "test": _split(cfg.test_manifest, cfg, kind, tokenizer, training=False)}

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return speech_output_loss(model, batch, cfg)

    evaluation = SpeechEvaluation(splits, cfg, kind, asr=_asr_scorer(cfg, splits))
    info = {"train_utterances": len(splits["train"]), "speaker_embedding": cfg.speaker_embedding}
    if tokenizer is not None:
        info["vocab_size"] = len(tokenizer)
    return Task(splits["train"], splits["val"], make_collate(_pad_value(kind)), loss, test_set=splits["test"],
                train_plan=length_plan(splits["train"].frames), batch_size_of=lambda b: len(b["key"]),
                evaluate=evaluation if cfg.eval_utterances > 0 else None,
                callbacks=[SpeechOutputPictures(evaluation, splits["val"], cfg)], info=info,
                prepare_model=None if tokenizer is None else lambda model: bind_tokenizer(model, tokenizer))


@register_task(config=TTSConfig)
def speecht5_tts(cfg: TTSConfig) -> Task:
    """Text to speech: character ids -> log-mel of the utterance's audio, the speaker's x-vector."""
    return _speech_task(cfg, "tts")


@register_task(config=VCConfig)
def speecht5_vc(cfg: VCConfig) -> Task:
    """Voice conversion: source waveform -> log-mel of the target audio, the target speaker's x-vector."""
    return _speech_task(cfg, "vc")


@register_task(config=SEConfig)
def speecht5_se(cfg: SEConfig) -> Task:
    """Speech enhancement: noisy waveform -> log-mel of the clean audio (or a mask / delta on the noisy one)."""
    return _speech_task(cfg, "se")
