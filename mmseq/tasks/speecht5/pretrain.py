"""SpeechT5 pre-training (``speecht5_pretrain``): unlabelled speech and unpaired text through one shared
encoder-decoder (:mod:`mmseq.models.speecht5_pretrain`), as microsoft/SpeechT5's ``--t5-task pretrain`` with its
``speecht5`` criterion.

**Data.** Speech: the utterances of speech manifests (their transcripts unused) with k-means unit labels written
beside them by ``mmseq data units`` (``task_args.units`` names the tag) and the log-mel of their audio (cached
beside the manifest). Text: a plain text file of one sentence per line (``mmseq data synth text`` writes one from the
synthetic grammar; LibriSpeech's LM text has the same form), encoded ``<s> ids </s>`` with the character vocabulary
(``tokenizer: train`` trains it on the text, or a folder with ``spm_char.model``); it goes into every checkpoint,
so ASR / TTS fine-tuning can name the pre-training checkpoint as its ``task_args.tokenizer``.

**Batches** hold one modality each and alternate speech, text, speech, ... (:class:`AlternatingBatches`; the official
multitask sampler also gives each update one modality); speech batches group utterances of similar length. Validation batches may hold both; each part gets its loss.

**Losses** (weights in the config; the defaults are the official ones):

* speech -- ``unit_weight * CE`` of the unit logits on the masked frames only (mean over them; units past the
  label file's end are ignored) ``+ feature_penalty_weight * mean(features^2)`` (10) ``+ reconstruction_weight *
  (L1 before + L1 after the post-net + stop BCE with pos_weight 5)`` on the log-mel of the same audio, decoded
  teacher-forced from a zero speaker vector unless ``speaker_embedding`` says otherwise. The official criterion
  sums the CE over masked frames and adds the other terms times that count before fairseq divides by it: the same
  per-frame mean as here;
* text -- BART denoising (:func:`bart_noise`: 30% of the words masked in Poisson(3.5)-long spans, each span
  replaced by one ``<mask>`` (a 0-long span inserts one), 10% of the replacements a random ordinary token instead;
  words start at SpeechT5's ``▁`` boundary token) and ``text_weight * CE`` of the original ids (mean over tokens);
* both -- ``diversity_weight * (num_vars - perplexity) / num_vars`` of the codebook (0.1).

The quantiser's temperature follows its own update count (one per training forward pass). Random choices (masks,
noise, codebook positions) come from the global random state, which the training loop seeds and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.checkpoint import load
from mmseq.data.audio import load_audio
from mmseq.data.manifest import Utterance
from mmseq.data.samplers import FixedSizeBatches, LengthBucketBatches
from mmseq.data.tokenizers import SpeechT5CharTokenizer, pad_id_lists
from mmseq.data.units import read_units, register_feature_source
from mmseq.errors import ConfigError, InputError
from mmseq.tasks.base import Ratio, Task, register_task
from mmseq.tasks.speecht5.data import bind_tokenizer, pad_waveforms, read_split, unwrap
from mmseq.tasks.speecht5.speech import log_mel, pad_to_multiple, shift_right_reduced, spectrogram_losses, speaker_vectors

__all__ = ["AlternatingBatches", "PretrainConfig", "PretrainLoss", "bart_noise", "insertion_noise", "masked_unit_loss",
           "model_layer_features", "speecht5_pretrain"]

SAMPLE_RATE = 16000
IGNORE = -100  # unit label of frames without one


@dataclass
class PretrainConfig:
    corpus: str = "data/synth_speech"
    train_manifest: str = "train.jsonl"
    val_manifest: str = "dev.jsonl"  # "": no speech validation
    units: str = "mfcc_km100"  # the tag of `mmseq data units` files beside the manifests
    text_train: str = ""  # a text file, one sentence per line (relative to the working directory)
    text_val: str = ""  # "": no text validation
    tokenizer: str = "train"  # train | a folder with spm_char.model
    alphabet: str = "abcdefghijklmnopqrstuvwxyz'"  # "train": always in the vocabulary
    lowercase: bool = True
    max_seconds: float = 20.0  # longer training utterances are left out
    text_batch_size: int = 0  # sentences per text batch; 0: trainer.batch_size
    num_mel_bins: int = 80
    speaker_embedding: str = "zero"  # zero | speaker_random | xvector (extra.xvector)
    speaker_embedding_dim: int = 512  # must equal the model's
    speaker_seed: int = 0
    unit_weight: float = 1.0
    feature_penalty_weight: float = 10.0
    reconstruction_weight: float = 1.0
    stop_pos_weight: float = 5.0
    text_weight: float = 1.0
    diversity_weight: float = 0.1
    text_mask: float = 0.3
    text_random: float = 0.1
    poisson_lambda: float = 3.5

    def __post_init__(self) -> None:
        if not self.text_train:
            raise ConfigError("task_args.text_train must name a text file of one sentence per line (write one with "
                              "`mmseq data synth text --out FILE --sentences N`)")
        for key in ("unit_weight", "feature_penalty_weight", "reconstruction_weight", "text_weight",
                    "diversity_weight", "poisson_lambda", "text_batch_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"task_args.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.text_mask <= 1 or not 0 <= self.text_random <= 1:
            raise ConfigError("task_args.text_mask and text_random must be in [0, 1]")
        if self.speaker_embedding not in ("zero", "speaker_random", "xvector"):
            raise ConfigError(f"task_args.speaker_embedding must be zero, speaker_random or xvector, got "
                              f"{self.speaker_embedding!r}")


# --- text noising -----------------------------------------------------------------------------------------------

def poisson_span_lengths(count: int, lam: float, generator: torch.Generator | None = None) -> Tensor:
    """``count`` span lengths from Poisson(``lam``) truncated at 128 (fairseq's categorical over 0..128)."""
    k = torch.arange(129, dtype=torch.float64)
    log_pmf = k * math.log(lam) - lam - torch.lgamma(k + 1)
    return torch.multinomial(log_pmf.exp(), count, replacement=True, generator=generator)


def _random_tokens(count: int, low: int, high: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(low, high, (count,), generator=generator)


def insertion_noise(tokens: Tensor, count: int, mask_id: int, random_ratio: float, random_range: tuple[int, int],
                    generator: torch.Generator | None = None) -> Tensor:
    """Insert ``count`` tokens at random places strictly inside ``tokens`` (never before ``<s>`` or after
    ``</s>``): ``<mask>``, or a random token for ``ceil(count * random_ratio)`` of them."""
    if count <= 0:
        return tokens
    n = tokens.numel()
    places = torch.randperm(n + count - 2, generator=generator)[:count] + 1
    inserted = torch.zeros(n + count, dtype=torch.bool)
    inserted[places] = True
    out = torch.full((n + count,), -1, dtype=tokens.dtype)
    randoms = math.ceil(count * random_ratio)
    out[places[randoms:]] = mask_id
    out[places[:randoms]] = _random_tokens(randoms, *random_range, generator)
    out[~inserted] = tokens
    return out


def bart_noise(tokens: Tensor, word_starts: Tensor, mask_id: int, random_range: tuple[int, int],
               mask_ratio: float = 0.3, random_ratio: float = 0.1, poisson_lambda: float = 3.5,
               generator: torch.Generator | None = None) -> Tensor:
    """BART's whole-word span masking with ``replace_length`` 1 (fairseq ``DenoisingDataset.add_whole_word_mask``).

    Args:
        tokens: one sentence ``[L]``, ``<s>`` first and ``</s>`` last.
        word_starts: ``[L]`` bool, the tokens that begin a word (never the first or the last).
        mask_id: the ``<mask>`` id.
        random_range: ``[low, high)`` of the ids a random replacement takes.
        mask_ratio: share of the words masked (``ceil``).
        random_ratio: share of the masked spans whose one replacement is a random token instead of ``<mask>``.
        poisson_lambda: mean span length in words.

    Returns:
        The noised ids: every span's first token replaced, its other tokens deleted.
    """
    starts = word_starts.clone()
    starts[0] = starts[-1] = False
    budget = math.ceil(float(starts.sum()) * mask_ratio)
    if budget == 0:
        return tokens.clone()
    lengths = poisson_span_lengths(budget, poisson_lambda, generator)
    while int(lengths.sum()) < budget:
        lengths = torch.cat([lengths, poisson_span_lengths(budget, poisson_lambda, generator)])
    cum = torch.cumsum(lengths, 0)
    last = int(torch.searchsorted(cum, torch.tensor(budget)))  # first span reaching the budget
    lengths = lengths[: last + 1].clone()
    lengths[last] = budget - (int(cum[last - 1]) if last > 0 else 0)
    inserts = int((lengths == 0).sum())
    lengths = lengths[lengths > 0]
    source = tokens.clone()
    if lengths.numel():
        positions = starts.nonzero().squeeze(1)
        chosen = positions[torch.randperm(positions.numel(), generator=generator)[: lengths.numel()]]
        lengths = lengths[: chosen.numel()]
        randomised = torch.rand(chosen.numel(), generator=generator) < random_ratio
        source[chosen] = mask_id
        source[chosen[randomised]] = _random_tokens(int(randomised.sum()), *random_range, generator)
        keep = torch.ones(source.numel(), dtype=torch.bool)
        boundary = starts.clone().long()
        boundary[-1] = 255  # a span never runs past </s>
        remaining = lengths - 1
        index = chosen
        while index.numel():
            remaining = remaining - boundary[index + 1]
            going = remaining >= 0
            index, remaining = index[going] + 1, remaining[going]
            keep[index] = False
        source = source[keep]
    if inserts:
        source = insertion_noise(source, inserts, mask_id, random_ratio, random_range, generator)
    return source


def word_boundary_id(tokenizer: SpeechT5CharTokenizer) -> int | None:
    """The id of the character vocabulary's word-boundary piece ``▁`` (None when words have no own token)."""
    ids = tokenizer.encode("a", add_eos=False)
    return ids[0] if len(ids) == 2 else None


# --- data -------------------------------------------------------------------------------------------------------

def read_sentences(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"text file {path!r} does not exist; write one with `mmseq data synth text --out {path} "
                          "--sentences N` or give a corpus of one sentence per line")
    lines = [" ".join(line.split()) for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"text file {path!r} has no sentence")
    return lines


class PretrainData(Dataset):
    """Speech items (indices ``0 .. n_speech - 1``) then text items. A speech item is ``{"kind": "speech", "audio",
    "units", "mel", "xvector"}``, a text item ``{"kind": "text", "ids"}``."""

    def __init__(self, utterances: Sequence[Utterance], units: Sequence[list[int]], mels: Sequence[Tensor],
                 vectors: Sequence[Tensor], sentences: Sequence[list[int]]):
        self.utterances, self.units, self.mels, self.vectors = list(utterances), list(units), list(mels), list(vectors)
        self.sentences = list(sentences)

    @property
    def num_speech(self) -> int:
        return len(self.utterances)

    @property
    def num_text(self) -> int:
        return len(self.sentences)

    def __len__(self) -> int:
        return self.num_speech + self.num_text

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < self.num_speech:
            return {"kind": "speech", "audio": load_audio(self.utterances[i].audio, SAMPLE_RATE),
                    "units": torch.tensor(self.units[i], dtype=torch.long), "mel": self.mels[i],
                    "xvector": self.vectors[i]}
        return {"kind": "text", "ids": torch.tensor(self.sentences[i - self.num_speech], dtype=torch.long)}


class AlternatingBatches:
    """One speech batch, then one text batch, and so on: an epoch has as many pairs as speech batches; text batches
    run on through the text's own shuffled epochs (so a large text corpus is seen over several speech epochs).

    With ``speech_lengths`` the speech batches hold utterances of similar length (in a new order every epoch), as
    fairseq batches by size: the span masks give every row of a batch the masked-frame count of its shortest one,
    so mixing lengths would leave long rows with few masks."""

    def __init__(self, num_speech: int, num_text: int, speech_batch: int, text_batch: int, seed: int = 0,
                 speech_lengths: Sequence[float] | None = None):
        if num_speech < 1 or num_text < 1:
            raise ConfigError("pre-training needs speech and text training items")
        self.num_speech = num_speech
        if speech_lengths is None:
            self.speech: Any = FixedSizeBatches(num_speech, speech_batch, shuffle=True, seed=seed)
        else:
            self.speech = LengthBucketBatches(list(speech_lengths), float("inf"), shuffle=True, seed=seed,
                                              max_items=speech_batch)
        self.text = FixedSizeBatches(num_text, text_batch, shuffle=True, seed=seed + 1)
        self._pairs = len(self.speech.batches(0))
        self._text_per_epoch = len(self.text.batches(0))

    def batches(self, epoch: int) -> list[list[int]]:
        out = []
        for i, speech in enumerate(self.speech.batches(epoch)):
            g = epoch * self._pairs + i
            text = self.text.batches(g // self._text_per_epoch)[g % self._text_per_epoch]
            out += [speech, [self.num_speech + j for j in text]]
        return out


def collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, dict[str, Tensor]]:
    """``{"speech": {...}, "text": {...}}`` with the parts the items have."""
    batch: dict[str, dict[str, Tensor]] = {}
    speech = [it for it in items if it["kind"] == "speech"]
    text = [it for it in items if it["kind"] == "text"]
    if speech:
        wav, lengths = pad_waveforms([it["audio"] for it in speech])
        units, unit_lengths = pad_id_lists([it["units"].tolist() for it in speech], IGNORE)
        mel_lengths = torch.tensor([it["mel"].shape[0] for it in speech])
        mel = torch.zeros(len(speech), int(mel_lengths.max()), speech[0]["mel"].shape[1])
        for row, it in enumerate(speech):
            mel[row, : it["mel"].shape[0]] = it["mel"]
        batch["speech"] = {"audio": wav, "audio_lengths": lengths, "units": units, "unit_lengths": unit_lengths,
                           "mel": mel, "mel_lengths": mel_lengths, "xvector": torch.stack([it["xvector"] for it in speech])}
    if text:
        ids, lengths = pad_id_lists([it["ids"].tolist() for it in text], pad_id)
        batch["text"] = {"ids": ids, "lengths": lengths}
    return batch


def batch_size_of(batch: dict[str, dict[str, Tensor]]) -> int:
    return sum(len(part["lengths" if kind == "text" else "audio_lengths"]) for kind, part in batch.items())


# --- losses -----------------------------------------------------------------------------------------------------

def align_units(units: Tensor, frames: int) -> Tensor:
    """Unit labels ``[B, L]`` cut or padded (with the ignore label) to the encoder's ``frames``."""
    if units.shape[1] >= frames:
        return units[:, :frames]
    return F.pad(units, (0, frames - units.shape[1]), value=IGNORE)


def masked_unit_loss(logits: Tensor, mask: Tensor, units: Tensor) -> tuple[Tensor, Ratio]:
    """Mean CE of ``logits [B, T, K]`` against ``units [B, T]`` over the masked frames that have a label, and the
    accuracy there."""
    chosen = mask & units.ge(0)
    if not bool(chosen.any()):
        return logits.sum() * 0.0, Ratio(0.0, 0.0)
    picked = logits[chosen]
    ce = F.cross_entropy(picked.float(), units[chosen])
    correct = float((picked.argmax(-1) == units[chosen]).sum())
    return ce, Ratio(correct, float(chosen.sum()))


def shift_tokens_right(ids: Tensor, lengths: Tensor, start_id: int, pad_id: int) -> Tensor:
    """Decoder inputs of teacher forcing: ``start_id`` then ``ids`` without its last valid token, padded."""
    out = torch.full_like(ids, pad_id)
    out[:, 0] = start_id
    for row, n in enumerate(lengths.tolist()):
        out[row, 1:n] = ids[row, : n - 1]
    return out


class PretrainLoss:
    """``loss(model, batch)`` of the task (see the module notes)."""

    def __init__(self, cfg: PretrainConfig, tokenizer: SpeechT5CharTokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.boundary = word_boundary_id(tokenizer)
        first_ordinary = max(tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id) + 1
        self.random_range = (first_ordinary, tokenizer.mask_id)

    def noise(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The BART-noised rows of ``ids [B, L]`` (on the CPU, from the global random state), padded."""
        rows = []
        for row, n in zip(ids.cpu(), lengths.tolist()):
            tokens = row[:n]
            starts = tokens.eq(self.boundary) if self.boundary is not None else torch.ones(n, dtype=torch.bool)
            starts |= tokens < self.random_range[0]  # fairseq counts special tokens as word starts
            rows.append(bart_noise(tokens, starts, self.tokenizer.mask_id, self.random_range, self.cfg.text_mask,
                                   self.cfg.text_random, self.cfg.poisson_lambda).tolist())
        noised, noised_lengths = pad_id_lists(rows, self.tokenizer.pad_id)
        return noised.to(ids.device), noised_lengths.to(ids.device)

    def speech_inputs(self, model: nn.Module, part: dict[str, Tensor]) -> tuple[dict[str, Any], Tensor]:
        r = unwrap(model).speech_decoder_postnet.reduction_factor
        target = pad_to_multiple(part["mel"], r)
        speaker = part["xvector"] if part["xvector"].shape[1] else None
        return {"wav": part["audio"], "lengths": part["audio_lengths"],
                "decoder_input": shift_right_reduced(target, r), "speaker_embeddings": speaker}, target

    def text_inputs(self, part: dict[str, Tensor]) -> dict[str, Any]:
        noised, noised_lengths = self.noise(part["ids"], part["lengths"])
        dec_in = shift_tokens_right(part["ids"], part["lengths"], self.tokenizer.eos_id, self.tokenizer.pad_id)
        return {"tokens": noised, "lengths": noised_lengths, "decoder_input": dec_in,
                "decoder_lengths": part["lengths"]}

    def __call__(self, model: nn.Module, batch: dict[str, dict[str, Tensor]]) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.cfg
        speech_in = target = text_in = None
        if "speech" in batch:
            speech_in, target = self.speech_inputs(model, batch["speech"])
        if "text" in batch:
            text_in = self.text_inputs(batch["text"])
        out = model(speech=speech_in, text=text_in)
        loss = torch.zeros((), device=next(unwrap(model).parameters()).device)
        metrics: dict[str, Any] = {}
        if out.speech is not None:
            s, part = out.speech, batch["speech"]
            ce, accuracy = masked_unit_loss(s.unit_logits, s.mask, align_units(part["units"], s.mask.shape[1]))
            l1, bce = spectrogram_losses(s.speech, target, part["mel_lengths"], cfg.stop_pos_weight)
            loss = loss + cfg.unit_weight * ce + cfg.feature_penalty_weight * s.feature_penalty + \
                cfg.reconstruction_weight * (l1 + bce)
            metrics.update(unit_ce=ce.item(), unit_accuracy=accuracy, feature_penalty=s.feature_penalty.item(),
                           l1=l1.item(), stop_bce=bce.item(), masked_share=Ratio(float(s.mask.sum()),
                                                                                 float(s.encoder_lengths.sum())))
        if out.text is not None:
            t, part = out.text, batch["text"]
            valid = part["ids"].ne(self.tokenizer.pad_id)
            text_ce = F.cross_entropy(t.logits.float()[valid], part["ids"][valid])
            loss = loss + cfg.text_weight * text_ce
            correct = float((t.logits.argmax(-1)[valid] == part["ids"][valid]).sum())
            metrics.update(text_ce=text_ce.item(), text_accuracy=Ratio(correct, float(valid.sum())))
        if out.diversity is not None:
            loss = loss + cfg.diversity_weight * out.diversity
            parts = [o.codebook for o in (out.speech, out.text) if o is not None]
            metrics.update(diversity=out.diversity.item() / len(parts),
                           code_perplexity=sum(float(q.code_perplexity) for q in parts) / len(parts),
                           temperature=parts[0].temperature)
        return loss, metrics


# --- the task ---------------------------------------------------------------------------------------------------

def _speech_split(cfg: PretrainConfig, name: str, training: bool):
    utts = read_split(cfg.corpus, name, cfg.max_seconds if training else 0.0)
    path = Path(name) if Path(name).is_absolute() else Path(cfg.corpus) / name
    units, meta = read_units(path, cfg.units)
    if len(units) != len(read_split(cfg.corpus, name)):
        raise InputError(f"{path}: the units file {cfg.units!r} has {len(units)} lines for a manifest of another size; "
                         "write the units again")
    by_id = dict(zip([u.id for u in read_split(cfg.corpus, name)], units))
    mels = log_mel(utts, path, cfg.num_mel_bins)
    vectors = speaker_vectors(utts, path, cfg, target_speaker=False) if cfg.speaker_embedding_dim else \
        [torch.zeros(0) for _ in utts]
    return utts, [by_id[u.id] for u in utts], mels, vectors, meta


def check_model(model: nn.Module, cfg: PretrainConfig, meta: dict[str, Any]) -> None:
    """The model is a pre-training model whose unit vocabulary, frame rate and mel bins fit the data."""
    core = unwrap(model)
    if not hasattr(core, "label_embs") or not hasattr(core, "speech_decoder_postnet"):
        raise ConfigError(f"speecht5_pretrain needs a speecht5_pretrain_* model, got {type(core).__name__}")
    if core.num_units != meta["clusters"]:
        raise ConfigError(f"the units {cfg.units!r} have {meta['clusters']} clusters but the model predicts "
                          f"{core.num_units}; set model_args.num_units={meta['clusters']}")
    if core.downsample_rate != meta["hop"]:
        raise ConfigError(f"the units {cfg.units!r} have one label per {meta['hop']} samples but the model's encoder "
                          f"has one frame per {core.downsample_rate}; write units with --hop {core.downsample_rate}")
    if core.speech_decoder_postnet.num_mel_bins != cfg.num_mel_bins:
        raise ConfigError(f"the model predicts {core.speech_decoder_postnet.num_mel_bins} mel bins but "
                          f"task_args.num_mel_bins is {cfg.num_mel_bins}")
    if core.speech_decoder_prenet.speaker_embedding_dim != cfg.speaker_embedding_dim:
        raise ConfigError(f"the model takes {core.speech_decoder_prenet.speaker_embedding_dim}-d speaker vectors but "
                          f"task_args.speaker_embedding_dim is {cfg.speaker_embedding_dim}")


@register_task(config=PretrainConfig)
def speecht5_pretrain(cfg: PretrainConfig) -> Task:
    """Joint speech / text pre-training of SpeechT5 (see the module notes)."""
    train_text = [t.lower() if cfg.lowercase else t for t in read_sentences(cfg.text_train)]
    if cfg.tokenizer == "train":
        alphabet = " ".join(cfg.alphabet)
        tokenizer = SpeechT5CharTokenizer.train([*train_text, alphabet] if alphabet.strip() else train_text)
    else:
        folder = Path(cfg.tokenizer)
        if not (folder / SpeechT5CharTokenizer.model_file_name).is_file():
            raise ConfigError(f"task_args.tokenizer {cfg.tokenizer!r} is neither 'train' nor a folder holding "
                              f"{SpeechT5CharTokenizer.model_file_name}")
        tokenizer = SpeechT5CharTokenizer.from_dir(folder)

    def encode(lines: list[str]) -> list[list[int]]:
        return [[tokenizer.bos_id, *tokenizer.encode(line)] for line in lines]

    speech = _speech_split(cfg, cfg.train_manifest, training=True)
    train = PretrainData(*speech[:4], encode(train_text))
    meta = speech[4]
    val = None
    val_text = [t.lower() if cfg.lowercase else t for t in read_sentences(cfg.text_val)] if cfg.text_val else []
    if cfg.val_manifest or val_text:
        v = _speech_split(cfg, cfg.val_manifest, training=False) if cfg.val_manifest else ([], [], [], [], None)
        val = PretrainData(*v[:4], encode(val_text))
    loss = PretrainLoss(cfg, tokenizer)

    def plan(batch_size: int, seed: int) -> AlternatingBatches:
        return AlternatingBatches(train.num_speech, train.num_text, batch_size, cfg.text_batch_size or batch_size, seed,
                                  speech_lengths=[u.duration for u in train.utterances])

    def prepare(model: nn.Module) -> None:
        check_model(model, cfg, meta)
        bind_tokenizer(model, tokenizer)

    return Task(train, val, lambda items: collate(items, tokenizer.pad_id), loss, train_plan=plan,
                batch_size_of=batch_size_of, prepare_model=prepare,
                info={"speech_utterances": train.num_speech, "sentences": train.num_text, "units": cfg.units,
                      "clusters": meta["clusters"], "vocab_size": len(tokenizer)})


# --- units from a trained model's layer (HuBERT's second iteration) ---------------------------------------------

def model_layer_features(spec: str):
    """``--features MODEL:LAYER`` of ``mmseq data units``: hidden state ``LAYER`` of ``forward_features`` of any
    checkpoint ``mmseq.load`` reads (a pre-training run's ``best``, an ASR model ...), at its frame rate."""
    if ":" not in spec:
        return None
    path, layer = spec.rsplit(":", 1)
    if not Path(path).exists() or not layer.lstrip("-").isdigit():
        return None
    model = load(path).eval()
    if not hasattr(model, "forward_features"):
        raise ConfigError(f"{path} has no forward_features: it cannot give layer features")
    index = int(layer)

    def features(wav: Tensor) -> Tensor:
        with torch.no_grad():
            out = model.forward_features(wav[None], torch.tensor([wav.numel()]))
        if not -len(out.hidden_states) <= index < len(out.hidden_states):
            raise ConfigError(f"{path} has {len(out.hidden_states)} hidden states; layer {index} does not exist")
        return out.hidden_states[index][0, : int(out.lengths[0])]

    return features, int(model.downsample_rate)


register_feature_source(model_layer_features)
