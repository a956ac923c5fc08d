"""Frame generation (TTS, voice conversion, enhancement) for models whose decoder post-net predicts mel frames
and stop logits (:class:`~mmseq.postnets.speech.SpeechDecoderPostnet`).

Each step runs the decoder pre-net on the newest frame only (positions continue from the cache), the decoder on
one step with the KV cache, and the post-net's linear heads. A row that stops gets its convolutional post-net
and leaves the batch, so long and short utterances in one batch cost what they cost alone.

The fast paths are chosen here, on purpose: the pre-net's one-frame :meth:`~mmseq.prenets.speech.
SpeechDecoderPrenet.step`, the decoder's fused step (:class:`~mmseq.nn.incremental.StepDecoder`) and the post-net's
one-product heads (:class:`~mmseq.postnets.speech.StepHeads`) each only when the modules they read are the plain
ones they know; otherwise that part runs its module path. ``fast=False`` runs the module path throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.features import SpeechT5LogMel
from mmseq.errors import InputError
from mmseq.generation.engine import Encoded
from mmseq.generation.mode import generation_mode
from mmseq.models.compose import EncoderDecoderModel
from mmseq.nn.incremental import StepDecoder, is_plain
from mmseq.postnets.speech import SpeechOutput
from mmseq.prenets.speech import STEP_MODULES


@dataclass
class SpeechGenerationOutput:
    """``mel [B, T, n_mels]`` padded with zeros, ``lengths [B]`` in frames; ``waveform [B, S]`` and
    ``waveform_lengths`` when a vocoder was given."""

    mel: Tensor
    lengths: Tensor
    waveform: Tensor | None = None
    waveform_lengths: Tensor | None = None


@generation_mode
def generate_speech(model: EncoderDecoderModel, x, lengths: Tensor | None = None, *,
                    speaker_embeddings: Tensor | None = None, threshold: float = 0.5, stop_rule: str = "sum",
                    min_len_ratio: float = 0.0, max_len_ratio: float = 20.0, vocoder=None,
                    generator: torch.Generator | None = None, fast: bool = True) -> SpeechGenerationOutput:
    """Generate mel frames until each row stops.

    Args:
        x, lengths: encoder inputs (token ids for TTS, waveforms for VC/SE) and their lengths.
        speaker_embeddings: ``[B, S]`` x-vectors (cast to the model's dtype).
        threshold: stop threshold on sigmoid stop probabilities.
        stop_rule: ``"sum"`` -- the sum of a step's ``r`` stop probabilities reaches the threshold
            (transformers); ``"any"`` -- any of them does (fairseq / ESPnet).
        min_len_ratio / max_len_ratio: bounds on decoder steps as ratios of the encoder length divided by the
            reduction factor; the maximum guarantees termination.
        vocoder: optional module mapping ``[B, T, n_mels]`` to waveforms (with ``samples_per_frame``).
        generator: seeds the decoder pre-net's always-on dropout.
        fast: allow the one-step fast paths (False: the module path throughout, the reference).
    """
    if stop_rule not in ("sum", "any"):
        raise InputError(f"stop_rule must be 'sum' or 'any', got {stop_rule!r}")
    if not isinstance(model, EncoderDecoderModel) or model.writes != "mel":
        raise InputError(f"generate_speech needs an encoder-decoder model that writes mel frames; "
                         f"{type(model).__name__} writes {getattr(model, 'writes', None)}")
    prenet, postnet = model.decoder_prenet, model.decoder_postnet
    enc = Encoded(model, x, lengths)
    enc_lengths = enc.lengths
    batch, device = enc.memory.shape[0], enc.memory.device
    dtype = prenet.final_layer.weight.dtype  # the pre-net's (fp32 on a CPU under set_precision)
    out_dtype = postnet.feat_out.weight.dtype
    r, n_mels = postnet.reduction_factor, postnet.num_mel_bins
    # Per-row step bounds and the stop test run in Python on one synced list per step; the threshold is rounded
    # to the probabilities' dtype first, as a tensor comparison would round it.
    max_steps = (enc_lengths.float() * max_len_ratio / r).long().clamp(min=1).tolist()
    min_steps = (enc_lengths.float() * min_len_ratio / r).long().tolist()
    threshold = torch.tensor(threshold, dtype=out_dtype).item()
    spk = None
    if speaker_embeddings is not None:
        spk = torch.as_tensor(speaker_embeddings, device=device).to(dtype)
        if spk.dim() == 1:
            spk = spk[None].expand(batch, -1)
        if spk.shape[0] != batch:
            raise InputError(f"got {spk.shape[0]} speaker embeddings for a batch of {batch}")
    # The fast paths read weights directly: only for the plain modules they know (see the module notes).
    fast_prenet = fast and is_plain(prenet, STEP_MODULES) and not prenet.training
    heads = postnet.step_heads() if fast else None  # frames and stop logits in one product, or None
    stepper = StepDecoder(model.decoder, fast)
    previous_generator = prenet.generator
    prenet.generator = generator
    try:
        cache = model.decoder.new_cache()
        alive = list(range(batch))
        frames: list[list[Tensor]] = [[] for _ in range(batch)]
        results: list[Tensor | None] = [None] * batch
        last = torch.zeros(batch, 1, n_mels, device=device, dtype=dtype)
        # The speaker layer split once per call (W_x x + a per-row speaker term) instead of once per step.
        conditioning = None if spk is None or not fast_prenet else prenet.speaker_conditioning(spk)
        step = 0
        while alive:
            step += 1
            if fast_prenet:
                hidden = prenet.step(last[:, 0], cache.length, conditioning)
            else:
                hidden, _ = prenet(last, None, offset=cache.length, speaker_embeddings=spk)
            out = stepper(hidden, cache, enc.memory, enc.padding_mask)[:, 0].to(out_dtype)
            if heads is not None:
                new, logits = heads(out)  # [b, r, n_mels], [b, r]
            else:
                new, logits = postnet.frames(out[:, None]), postnet.stop_logits(out[:, None])
            prob = torch.sigmoid(logits)
            scores = (prob.sum(-1) if stop_rule == "sum" else prob.amax(-1)).tolist()
            stopped = []
            for i, row in enumerate(alive):
                frames[row].append(new[i])
                if (scores[i] >= threshold and step >= min_steps[row]) or step >= max_steps[row]:
                    stopped.append(i)
            if stopped:
                for i in stopped:
                    row = alive[i]
                    results[row] = postnet.postnet(torch.cat(frames[row])[None])[0]
                    frames[row] = []
                kept = [i for i in range(len(alive)) if i not in stopped]
                keep = torch.tensor(kept, dtype=torch.long, device=device)
                cache.select(keep)
                enc.select(keep)
                if conditioning is not None:
                    conditioning = (conditioning[0], conditioning[1].index_select(0, keep))
                if spk is not None:
                    spk = spk.index_select(0, keep)
                alive, new = [alive[i] for i in kept], new[keep]
            last = new[:, -1:, :].to(dtype)
    finally:
        prenet.generator = previous_generator
    out_lengths = torch.tensor([m.shape[0] for m in results], device=device)
    mel = torch.zeros(batch, int(out_lengths.max()), n_mels, device=device, dtype=out_dtype)
    for i, m in enumerate(results):
        mel[i, : m.shape[0]] = m
    result = SpeechGenerationOutput(mel, out_lengths)
    if vocoder is not None:
        result.waveform = vocoder(mel)
        result.waveform_lengths = out_lengths * vocoder.samples_per_frame
    return result


def se_estimate(raw: SpeechOutput, source: Tensor | None, se_predict: str) -> SpeechOutput:
    """The frames an enhancement model estimates from its raw outputs and the noisy frames ``source [B, T, M]``
    (``se_predict``: ``target``, ``mask`` or ``delta``, see :func:`mmseq.models.speecht5.speecht5`)."""
    if se_predict == "target":
        return raw
    t = raw.mel_before.shape[1]
    src = source[:, :t]
    if se_predict == "mask":  # log10(sigmoid(x) * 10^noisy) = noisy + logsigmoid(x) / ln 10
        return SpeechOutput(src + F.logsigmoid(raw.mel_before) / math.log(10.0),
                            src + F.logsigmoid(raw.mel_after) / math.log(10.0), raw.stop_logits)
    return SpeechOutput(src + raw.mel_before, src + raw.mel_after, raw.stop_logits)


@generation_mode
def enhance_speech(model: EncoderDecoderModel, wav: Tensor, lengths: Tensor | None = None, *,
                   source_mel: Tensor | None = None, speaker_embeddings: Tensor | None = None, vocoder=None,
                   **generate_kwargs) -> SpeechGenerationOutput:
    """Enhanced frames of noisy waveforms ``wav [B, S]``, as the model was trained to produce them.

    A model whose decoder reads the noisy frames (``se_decoder_input="source"``) runs once on them (their
    SpeechT5 log-mel, or ``source_mel [B, T, M]`` when given) and its output becomes the estimate by its
    ``se_predict`` rule, one frame per noisy frame; any other speech-output model generates frames with
    :func:`generate_speech` (``generate_kwargs`` go there).
    """
    if getattr(model, "se_decoder_input", "previous_target") != "source":
        return generate_speech(model, wav, lengths, speaker_embeddings=speaker_embeddings, vocoder=vocoder,
                               **generate_kwargs)
    postnet = model.decoder_postnet
    r, n_mels = postnet.reduction_factor, postnet.num_mel_bins
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[-1], device=wav.device)
    extractor = SpeechT5LogMel(n_mels=n_mels).to(wav.device)
    if source_mel is None:
        source_mel, frame_lengths = extractor(wav.float(), lengths)
    else:
        frame_lengths = extractor.frame_lengths(lengths).clamp(max=source_mel.shape[1])
    dtype = postnet.feat_out.weight.dtype
    source = source_mel.to(dtype)
    source = F.pad(source, (0, 0, 0, -source.shape[1] % r))
    spk = None if speaker_embeddings is None else torch.as_tensor(speaker_embeddings, device=wav.device).to(dtype)
    out = model(wav, lengths, source[:, r - 1 :: r], None, speaker_embeddings=spk).outputs
    mel = se_estimate(out, source, model.se_predict).mel_after.float()
    frame_lengths = frame_lengths.clamp(max=mel.shape[1])
    mel = mel.masked_fill(torch.arange(mel.shape[1], device=mel.device)[None, :, None] >= frame_lengths[:, None, None],
                          0.0)
    result = SpeechGenerationOutput(mel, frame_lengths)
    if vocoder is not None:
        result.waveform = vocoder(mel)
        result.waveform_lengths = frame_lengths * vocoder.samples_per_frame
    return result

