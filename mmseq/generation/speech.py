"""Frame generation (TTS, voice conversion, enhancement) for models whose decoder post-net predicts mel frames
and stop logits (:class:`~mmseq.postnets.speech.SpeechDecoderPostnet`).

Each step runs the decoder pre-net on the newest frame only (positions continue from the cache), the decoder on
one step with the KV cache, and the post-net's linear heads. A row that stops gets its convolutional post-net
and leaves the batch, so long and short utterances in one batch cost what they cost alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.errors import InputError
from mmseq.generation.mode import generation_mode
from mmseq.generation.text import encode
from mmseq.nn.backbone import EncoderDecoderModel


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
                    generator: torch.Generator | None = None) -> SpeechGenerationOutput:
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
    """
    if stop_rule not in ("sum", "any"):
        raise InputError(f"stop_rule must be 'sum' or 'any', got {stop_rule!r}")
    prenet, postnet = model.decoder_prenet, model.decoder_postnet
    enc, enc_lengths = encode(model, x, lengths)
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
    previous_generator = prenet.generator
    prenet.generator = generator
    try:
        cache = model.decoder.new_cache()
        heads = postnet.step_heads()  # frames and stop logits in one product
        alive = list(range(batch))
        frames: list[list[Tensor]] = [[] for _ in range(batch)]
        results: list[Tensor | None] = [None] * batch
        last = torch.zeros(batch, 1, n_mels, device=device, dtype=dtype)
        conditioning = None if spk is None else prenet.speaker_conditioning(spk)  # once, not once per step
        step = 0
        while alive:
            step += 1
            hidden, _ = prenet(last, None, offset=cache.length, speaker_conditioning=conditioning)
            out = model.decoder(hidden, None, enc.memory, enc.padding_mask, cache=cache).last_hidden_state
            new, logits = heads(out[:, 0].to(out_dtype))  # [b, r, n_mels], [b, r]
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
                enc = enc.select(keep)
                if conditioning is not None:
                    conditioning = (conditioning[0], conditioning[1].index_select(0, keep))
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
