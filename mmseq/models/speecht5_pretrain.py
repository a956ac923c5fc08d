"""SpeechT5 pre-training: one shared encoder-decoder with both modalities' pre-nets and post-nets, a HuBERT-style
unit head on the encoder and a cross-modal Gumbel codebook between encoder and decoder (microsoft/SpeechT5
``--t5-task pretrain``).

=========================  ========================================  ===============================================
batch                      encoder side                              decoder side
=========================  ========================================  ===============================================
speech (waveform, units)   speech pre-net with spans of frames       speech decoder pre-net (log-mel of the same
                           replaced by its mask embedding; unit      audio, teacher-forced) -> mel / stop post-net
                           logits on every frame
text (noised ids)          text encoder pre-net                      text decoder pre-net -> LM head (tied)
=========================  ========================================  ===============================================

* **Unit head** (HuBERT's, SpeechT5's ``SpeechEncoderPostnet``): ``final_proj`` maps the encoder output to
  ``final_dim`` (256); the logit of unit ``k`` is ``cos(final_proj(h), label_embs[k]) / logit_temperature`` (0.1).
  The official code scores the true unit against every embedding and masks the duplicate; a softmax over all
  ``num_units`` cosines is the same distribution.
* **Feature penalty**: the mean square of the pre-net's convolutional features (the waveform convolutions'
  output; with the log-mel front-end, the Conv2d subsampling's convolution output, before its projection),
  returned as ``feature_penalty``.
* **Masks**: :func:`mmseq.nn.masking.compute_mask_indices` (``mask_prob`` 0.8, spans of 10, at least 2), drawn
  from the global random state (which the training loop checkpoints) unless the caller passes ``mask``.
* **Codebook**: the quantiser (:class:`~mmseq.nn.quantizer.GumbelVectorQuantizer`, 2 x 100) reads the encoder
  output; ``int(T * codebook_prob)`` random time positions (the same for the whole batch) are replaced by their
  quantised vectors in what the decoder cross-attends to. The unit head reads the encoder output before that
  replacement, as the official model does. The quantiser's statistics count valid positions only.

Parts are built by :func:`mmseq.models.speecht5.speecht5` (the ASR model's speech encoder pre-net, encoder, text
decoder pre-net and LM head; the TTS model's text encoder pre-net, speech decoder pre-net and post-net), so their
parameter names below each prefix are those of the fine-tuning models: :data:`FINETUNE_PREFIXES` gives the
``init_from.prefix_map`` that starts an ASR or TTS model from a pre-trained one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.contracts import Features, as_prenet_output, full_lengths
from mmseq.errors import InputError
from mmseq.models.speecht5 import _TINY, speecht5
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.nn.masking import compute_mask_indices
from mmseq.nn.quantizer import GumbelVectorQuantizer, QuantizerOutput
from mmseq.postnets.speech import SpeechOutput
from mmseq.registry import register_model

# Where the speech pre-net's convolutional features are read (waveform / log-mel front-end): the output of the
# waveform convolutions, which a LayerNorm follows, and for log-mel the convolutions' (ReLU'd, flattened) output as
# the subsampling's projection takes it in (the projection's own output is added to the positions as it is, so a
# penalty there would shrink the speech content against the positions).
FEATURE_MODULES = {"feature_encoder": "output", "subsampling.out": "input"}
# init_from.prefix_map from a pre-trained model to a fine-tuning model's modules (encoder / decoder keep names).
FINETUNE_PREFIXES: dict[str, dict[str, str]] = {
    "asr": {"speech_encoder_prenet.": "encoder_prenet.", "text_decoder_prenet.": "decoder_prenet.",
            "text_decoder_postnet.": "decoder_postnet."},
    "tts": {"text_encoder_prenet.": "encoder_prenet.", "speech_decoder_prenet.": "decoder_prenet.",
            "speech_decoder_postnet.": "decoder_postnet."},
}


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


@dataclass
class SpeechPretrainOutput:
    """A speech batch's outputs.

    Attributes:
        unit_logits: ``[B, T, num_units]`` cosine logits over temperature, every frame.
        mask: ``[B, T]`` the frames replaced by the mask embedding (where the unit loss counts).
        encoder_lengths: valid encoder frames ``[B]``.
        feature_penalty: mean square of the convolutional features (a scalar).
        speech: the decoder's mel / stop outputs.
        codebook: the quantiser's output (None without a codebook).
    """

    unit_logits: Tensor
    mask: Tensor
    encoder_lengths: Tensor
    feature_penalty: Tensor
    speech: SpeechOutput
    codebook: QuantizerOutput | None


@dataclass
class TextPretrainOutput:
    """A text batch's outputs: ``logits [B, L, vocab]``, valid encoder steps and the quantiser's output."""

    logits: Tensor
    encoder_lengths: Tensor
    codebook: QuantizerOutput | None


@dataclass
class PretrainOutput:
    """What :meth:`SpeechT5Pretrain.forward` returns: the part of each modality it was given (None otherwise)."""

    speech: SpeechPretrainOutput | None
    text: TextPretrainOutput | None
    diversity: Tensor | None  # the diversity losses of the batches given, summed


class SpeechT5Pretrain(nn.Module):
    """The shared trunk with every SpeechT5 pre-/post-net, the unit head and the codebook (see the module notes).

    Args:
        speech_encoder_prenet / text_encoder_prenet: the two encoder inputs (waveform, token ids).
        encoder / decoder: the shared stacks.
        speech_decoder_prenet / text_decoder_prenet: the two decoder inputs (mel frames, token ids).
        speech_decoder_postnet / text_decoder_postnet: mel / stop and LM head.
        num_units: size of the unit vocabulary (k-means clusters).
        final_dim: width of the unit head's projection.
        logit_temperature: the cosine logits' divisor.
        mask_prob / mask_length / mask_min_masks: the span masks of speech batches.
        quantizer: the codebook (None: no codebook, the ablation).
        codebook_prob: share of time positions replaced by quantised vectors.
    """

    def __init__(self, speech_encoder_prenet: nn.Module, text_encoder_prenet: nn.Module, encoder: nn.Module,
                 speech_decoder_prenet: nn.Module, text_decoder_prenet: nn.Module, decoder: nn.Module,
                 speech_decoder_postnet: nn.Module, text_decoder_postnet: nn.Module, *, num_units: int,
                 final_dim: int = 256, logit_temperature: float = 0.1, mask_prob: float = 0.8, mask_length: int = 10,
                 mask_min_masks: int = 2, quantizer: GumbelVectorQuantizer | None = None,
                 codebook_prob: float = 0.1):
        super().__init__()
        self.speech_encoder_prenet, self.text_encoder_prenet, self.encoder = (speech_encoder_prenet,
                                                                              text_encoder_prenet, encoder)
        self.speech_decoder_prenet, self.text_decoder_prenet, self.decoder = (speech_decoder_prenet,
                                                                              text_decoder_prenet, decoder)
        self.speech_decoder_postnet, self.text_decoder_postnet = speech_decoder_postnet, text_decoder_postnet
        self.final_proj = nn.Linear(encoder.dim, final_dim)
        self.label_embs = nn.Parameter(torch.empty(num_units, final_dim).uniform_())
        self.logit_temperature = logit_temperature
        self.mask_prob, self.mask_length, self.mask_min_masks = mask_prob, mask_length, mask_min_masks
        self.quantizer, self.codebook_prob = quantizer, codebook_prob
        names = [n for n in FEATURE_MODULES if _has_submodule(speech_encoder_prenet, n)]
        if not names:
            raise ValueError(f"the speech encoder pre-net has none of the feature modules {list(FEATURE_MODULES)}")
        self._feature_module = names[0]

    @property
    def num_units(self) -> int:
        return self.label_embs.shape[0]

    @property
    def downsample_rate(self) -> int:
        """Waveform samples per encoder frame (the unit labels' frame rate)."""
        return self.speech_encoder_prenet.downsample_rate

    @property
    def tokenizer_vocab_size(self) -> int:
        return self.text_decoder_postnet.vocab_size

    def unit_logits(self, hidden: Tensor) -> Tensor:
        """``[B, T, D]`` encoder output -> ``[B, T, num_units]`` cosine logits over the temperature."""
        proj = self.final_proj(hidden).float()
        cos = F.normalize(proj, dim=-1, eps=1e-8) @ F.normalize(self.label_embs.float(), dim=-1, eps=1e-8).t()
        return cos / self.logit_temperature

    def mix_codebook(self, memory: Tensor, lengths: Tensor) -> tuple[Tensor, QuantizerOutput | None]:
        """Replace ``int(T * codebook_prob)`` random time positions of ``memory [B, T, D]`` by their quantised
        vectors (the same positions in every row)."""
        if self.quantizer is None:
            return memory, None
        t = memory.shape[1]
        valid = ~lengths_to_padding_mask(lengths, t)
        q = self.quantizer(memory, valid)
        chosen = torch.randperm(t)[: int(t * self.codebook_prob)].to(memory.device)
        weight = memory.new_zeros(t)
        weight[chosen] = 1.0
        weight = weight[None, :, None]
        return weight * q.x + (1.0 - weight) * memory, q

    def forward_features(self, wav: Tensor, lengths: Tensor | None = None) -> Features:
        """The speech encoder's hidden states (its input, then every layer's output), nothing masked."""
        prenet = self.speech_encoder_prenet
        lengths = full_lengths(wav) if lengths is None else lengths
        total = int(prenet.output_lengths(torch.tensor([wav.shape[1]], device=lengths.device))[0])
        none = torch.zeros(wav.shape[0], total, dtype=torch.bool, device=wav.device)
        out = as_prenet_output(prenet(wav, lengths, time_mask=none))
        enc = self.encoder(out.hidden, lengths_to_padding_mask(out.lengths, out.hidden.shape[1]),
                           output_hidden_states=True)
        return Features(enc.hidden_states, out.lengths, prenet.downsample_rate)

    def forward_speech(self, wav: Tensor, lengths: Tensor, decoder_input: Tensor, decoder_lengths: Tensor | None = None,
                       speaker_embeddings: Tensor | None = None, mask: Tensor | None = None) -> SpeechPretrainOutput:
        """Speech batch: ``wav [B, S]``, ``lengths [B]`` samples; ``decoder_input [B, T', n_mels]`` the teacher-forced
        mel inputs (shifted, every r-th frame); ``mask [B, T]`` the frames to mask (drawn when None)."""
        prenet = self.speech_encoder_prenet
        frames = prenet.output_lengths(lengths).clamp(min=0)
        total = int(prenet.output_lengths(torch.tensor([wav.shape[1]], device=lengths.device))[0])
        if mask is None:
            mask = compute_mask_indices(frames.cpu(), total, self.mask_prob, self.mask_length, self.mask_min_masks)
        if mask.shape != (wav.shape[0], total):
            raise InputError(f"mask must be [batch, frames] = {[wav.shape[0], total]}, got {list(mask.shape)}")
        mask = mask.to(wav.device)
        captured: list[Tensor] = []
        module = prenet.get_submodule(self._feature_module)
        if FEATURE_MODULES[self._feature_module] == "input":
            hook = module.register_forward_pre_hook(lambda m, i: captured.append(i[0]))
        else:
            hook = module.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            out = as_prenet_output(prenet(wav, lengths, time_mask=mask))
        finally:
            hook.remove()
        penalty = captured[-1].float().pow(2).mean()
        memory_padding = lengths_to_padding_mask(out.lengths, out.hidden.shape[1])
        memory = self.encoder(out.hidden, memory_padding).last_hidden_state
        logits = self.unit_logits(memory)
        mixed, q = self.mix_codebook(memory, out.lengths)
        hidden, _ = self.speech_decoder_prenet(decoder_input, decoder_lengths, speaker_embeddings=speaker_embeddings)
        dec = self.decoder(hidden, None, mixed, memory_padding).last_hidden_state
        speech = self.speech_decoder_postnet(dec, decoder_lengths)
        return SpeechPretrainOutput(logits, mask & ~memory_padding, out.lengths, penalty, speech, q)

    def forward_text(self, tokens: Tensor, lengths: Tensor, decoder_input: Tensor,
                     decoder_lengths: Tensor | None = None) -> TextPretrainOutput:
        """Text batch: noised ``tokens [B, L]`` with ``lengths``; ``decoder_input [B, L']`` the original ids shifted
        right -> logits over the original ids."""
        out = as_prenet_output(self.text_encoder_prenet(tokens, lengths))
        memory_padding = lengths_to_padding_mask(out.lengths, out.hidden.shape[1])
        memory = self.encoder(out.hidden, memory_padding).last_hidden_state
        mixed, q = self.mix_codebook(memory, out.lengths)
        hidden, decoder_lengths = self.text_decoder_prenet(decoder_input, decoder_lengths)
        dec = self.decoder(hidden, lengths_to_padding_mask(decoder_lengths, hidden.shape[1]), mixed,
                           memory_padding).last_hidden_state
        return TextPretrainOutput(self.text_decoder_postnet(dec, decoder_lengths), out.lengths, q)

    def forward(self, speech: dict[str, Any] | None = None, text: dict[str, Any] | None = None) -> PretrainOutput:
        """Either or both batches: ``speech`` holds :meth:`forward_speech`'s arguments, ``text``
        :meth:`forward_text`'s. (One entry point, so a DistributedDataParallel wrapper sees every call.)"""
        if speech is None and text is None:
            raise InputError("give a speech batch, a text batch or both")
        s = None if speech is None else self.forward_speech(**speech)
        t = None if text is None else self.forward_text(**text)
        parts = [o.codebook.diversity_loss() for o in (s, t) if o is not None and o.codebook is not None]
        return PretrainOutput(s, t, sum(parts) if parts else None)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        wav, lengths = self.speech_encoder_prenet.dummy_inputs(batch_size)
        g = torch.Generator().manual_seed(2)
        mel = torch.randn(batch_size, 5, self.speech_decoder_postnet.num_mel_bins, generator=g)
        tokens, token_lengths = self.text_encoder_prenet.dummy_inputs(batch_size)
        speaker = self.speech_decoder_prenet.dummy_conditioning(batch_size).get("speaker_embeddings")
        return {"speech": {"wav": wav, "lengths": lengths, "decoder_input": mel, "speaker_embeddings": speaker},
                "text": {"tokens": tokens, "lengths": token_lengths, "decoder_input": tokens,
                         "decoder_lengths": token_lengths}}


# Arguments of speecht5() that only the fine-tuning heads use.
_FINETUNE_ONLY = ("task", "ctc", "num_classes", "sid_pooling", "se_predict", "se_decoder_input", "projection_dim")


def speecht5_pretrain(*, num_units: int = 100, final_dim: int = 256, logit_temperature: float = 0.1,
                      mask_prob: float = 0.8, mask_length: int = 10, mask_min_masks: int = 2, codebook: bool = True,
                      codebook_vars: int = 100, codebook_groups: int = 2,
                      codebook_temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995),
                      codebook_prob: float = 0.1, **trunk: Any) -> SpeechT5Pretrain:
    """Compose the pre-training model; ``trunk`` takes any argument of :func:`mmseq.models.speecht5.speecht5`
    (sizes, dropouts, ``speech_frontend``, ...) except the fine-tuning heads'. ``codebook=False`` leaves the
    quantiser out (the paper's ablation)."""
    bad = sorted(set(trunk) & set(_FINETUNE_ONLY))
    if bad:
        raise ValueError(f"{bad} are fine-tuning arguments, not pre-training ones")
    asr, tts = speecht5("asr", **trunk), speecht5("tts", **trunk)
    quantizer = None
    if codebook:
        quantizer = GumbelVectorQuantizer(asr.encoder.dim, codebook_vars, codebook_groups,
                                          temperature=tuple(codebook_temperature))
    return SpeechT5Pretrain(asr.encoder_prenet, tts.encoder_prenet, asr.encoder, tts.decoder_prenet,
                            asr.decoder_prenet, asr.decoder, tts.decoder_postnet, asr.decoder_postnet,
                            num_units=num_units, final_dim=final_dim, logit_temperature=logit_temperature,
                            mask_prob=mask_prob, mask_length=mask_length, mask_min_masks=mask_min_masks,
                            quantizer=quantizer, codebook_prob=codebook_prob)


def _pretrain_signature(size: dict[str, Any]) -> inspect.Signature:
    own = [p.replace(default=size.get(p.name, p.default)) for p in inspect.signature(speecht5_pretrain).parameters.values()
           if p.kind is inspect.Parameter.KEYWORD_ONLY]
    trunk = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=size.get(p.name, p.default))
             for p in inspect.signature(speecht5).parameters.values() if p.name not in _FINETUNE_ONLY]
    return inspect.Signature(own + trunk)


def _register(size_name: str, size: dict[str, Any]) -> None:
    def builder(**overrides: Any) -> nn.Module:
        return speecht5_pretrain(**{**size, **overrides})

    builder.__name__ = f"speecht5_pretrain_{size_name}"
    builder.__doc__ = f"SpeechT5-{size_name} for pre-training (speech and text batches, unit head, codebook)."
    builder.__signature__ = _pretrain_signature(size)  # type: ignore[attr-defined]
    register_model(builder)


_register("base", {})
_register("tiny", {k: v for k, v in _TINY.items() if k != "num_classes"})
