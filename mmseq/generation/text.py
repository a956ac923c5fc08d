"""Token generation: batched greedy search, nucleus / temperature sampling and beam search (optionally with joint
CTC/attention scoring), over the decodings of :mod:`mmseq.generation.engine` -- one decoder step per new token
with the KV cache.

Rows that finish leave the batch (their cache rows are dropped), so a batch costs what its live rows cost.
:func:`generate` is the entry point for both model kinds: an encoder-decoder model generates from its encoder
input (rows start with ``start_id``), a decoder-only model continues a prompt (rows hold the new tokens only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmseq.errors import InputError
from mmseq.generation.ctc import CTCPrefixScorer
from mmseq.generation.engine import DecoderOnlyDecoding, Seq2SeqDecoding
from mmseq.generation.mode import generation_mode
from mmseq.models.compose import DecoderOnlyModel, EncoderDecoderModel


def _pad(rows: list[list[int]], pad_id: int, device: torch.device) -> Tensor:
    width = max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits ``[N, V]`` scaled by ``1 / temperature``, with tokens outside the ``top_k`` best and outside the
    smallest set whose probability reaches ``top_p`` (nucleus) set to -inf; the best token always stays."""
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature} (use greedy search for temperature 0)")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def _search(decoding: Any, choose, max_new_tokens: int, eos_id: int, pad_id: int) -> Tensor:
    """Extend every row one chosen token at a time until it emits ``eos_id`` or has ``max_new_tokens`` new ones."""
    batch, device = decoding.batch_size, decoding.device
    rows: list[list[int]] = [list(decoding.initial_tokens) for _ in range(batch)]
    alive = torch.arange(batch, device=device)
    logits = decoding.first_logits()
    for step in range(max_new_tokens):
        next_tokens = choose(logits)
        for row, token in zip(alive.tolist(), next_tokens.tolist()):
            rows[row].append(token)
        keep = next_tokens.ne(eos_id)
        if step == max_new_tokens - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):
            index = keep.nonzero().squeeze(1)
            decoding.select(index)
            alive, next_tokens = alive[index], next_tokens[index]
        logits = decoding.step(next_tokens)
    return _pad(rows, pad_id, device)


def greedy_search(decoding: Any, *, max_new_tokens: int = 200, eos_id: int = 2, pad_id: int = 1) -> Tensor:
    """The most likely token at every step. Returns ``[B, L]`` token ids padded with ``pad_id`` (an
    encoder-decoder decoding's rows start with its start token); each row ends with ``eos_id`` unless it hit
    ``max_new_tokens``."""
    return _search(decoding, lambda logits: logits.argmax(-1), max_new_tokens, eos_id, pad_id)


def sample(decoding: Any, *, max_new_tokens: int = 200, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, generator: torch.Generator | None = None, eos_id: int = 2, pad_id: int = 1) -> Tensor:
    """Ancestral sampling from :func:`filter_logits` (temperature, top-k, nucleus top-p); ``generator`` seeds it.
    Returns rows as :func:`greedy_search` does."""
    filter_logits(torch.zeros(1, 2), temperature, top_k, top_p)  # argument errors before any work

    def choose(logits: Tensor) -> Tensor:
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
        return torch.multinomial(probs.to(generator.device if generator is not None else probs.device), 1,
                                 generator=generator).squeeze(1).to(logits.device)

    return _search(decoding, choose, max_new_tokens, eos_id, pad_id)


def beam_search(decoding: Any, *, num_beams: int = 5, max_new_tokens: int = 200, length_penalty: float = 1.0,
                ctc_weight: float = 0.0, pre_beam: int | None = None, eos_id: int = 2, pad_id: int = 1,
                blank_id: int | None = None) -> Tensor:
    """Batched beam search, optionally with joint CTC/attention scoring.

    A hypothesis scores ``sum(step scores) / length ** length_penalty``; a step's score is the attention
    log-probability, or with ``ctc_weight`` = w: ``(1 - w) * log p_att + w * (CTC prefix score gain)`` over the
    ``pre_beam`` best attention candidates (default ``1.5 * num_beams``); the CTC head is the encoder post-net. A
    row stops once it holds ``num_beams`` finished hypotheses and no live beam can beat the worst of them. Returns
    the best hypothesis per row, ``[B, L]`` padded with ``pad_id``.
    """
    batch, k, device = decoding.batch_size, num_beams, decoding.device
    if k < 1:
        raise InputError(f"num_beams must be >= 1, got {num_beams}")
    scorer = None
    if ctc_weight > 0:
        log_probs = decoding.ctc_log_probs()
        blank = log_probs.shape[-1] - 1 if blank_id is None else blank_id
        scorer = CTCPrefixScorer(log_probs, decoding.encoded.lengths, blank=blank, eos=eos_id)
        scorer.repeat(k)
        width = pre_beam or max(2, int(1.5 * k))
    else:
        width = 2 * k  # the best 2k of all k*V continuations are among each beam's best 2k
    decoding.repeat(k)
    # Only the first beam of each row is live at the start, so the k beams do not start as copies.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    initial = list(decoding.initial_tokens)
    tokens = torch.tensor([initial] * (batch * k), dtype=torch.long, device=device).view(batch * k, len(initial))
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(1, max_new_tokens + 1):
        logits = decoding.first_logits() if step == 1 else decoding.step(tokens[:, -1])
        width = min(width, logits.shape[-1])  # a small vocabulary has fewer candidates than 2 * num_beams
        att, candidates = logits.float().log_softmax(-1).topk(width, dim=-1)  # [B*k, C]
        step_scores = att
        if scorer is not None:
            ctc_gain, ctc_state = scorer.score(candidates)
            step_scores = (1 - ctc_weight) * att + ctc_weight * ctc_gain
        total = (scores.view(-1, 1) + step_scores).view(batch, k * width)
        top_scores, top_index = total.topk(2 * k, dim=1)
        beam_of, choice_of = top_index // width, top_index % width
        token_of = candidates.view(batch, k * width).gather(1, top_index)
        new_scores = torch.full((batch, k), float("-inf"), device=device)
        source = torch.zeros(batch, k, dtype=torch.long, device=device)
        choice = torch.zeros(batch, k, dtype=torch.long, device=device)
        new_token = torch.full((batch, k), pad_id, dtype=torch.long, device=device)
        for b in range(batch):
            if done[b]:
                continue
            filled = 0
            for score, beam, ch, token in zip(top_scores[b].tolist(), beam_of[b].tolist(), choice_of[b].tolist(),
                                              token_of[b].tolist()):
                if score == float("-inf"):
                    break
                if token == eos_id:
                    hyp = tokens[b * k + beam].tolist() + [eos_id]
                    finished[b].append((score / step**length_penalty, hyp))
                    continue
                new_scores[b, filled], source[b, filled], choice[b, filled] = score, beam, ch
                new_token[b, filled] = token
                filled += 1
                if filled == k:
                    break
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:k]
            best_live = new_scores[b].max().item()
            if len(finished[b]) == k and best_live / step**length_penalty <= finished[b][-1][0]:
                done[b] = True
        if all(done):
            break
        flat_source = (source + torch.arange(batch, device=device)[:, None] * k).view(-1)
        decoding.select(flat_source, same_inputs=True)  # beams move within their row: same encoder output
        if scorer is not None:
            scorer.advance(ctc_state, flat_source, choice.view(-1), new_token.view(-1))
        tokens = torch.cat([tokens.index_select(0, flat_source), new_token.view(-1, 1)], dim=1)
        scores = new_scores
    rows = []
    for b in range(batch):
        if not finished[b]:  # nothing ended with eos: take the best live beam
            best = int(scores[b].argmax())
            finished[b].append((0.0, tokens[b * k + best].tolist()))
        rows.append(max(finished[b], key=lambda h: h[0])[1])
    return _pad(rows, pad_id, device)


@generation_mode
def generate(model: EncoderDecoderModel | DecoderOnlyModel, x: Any, lengths: Tensor | None = None, *,
             prefix: Any = None, num_beams: int = 1, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
             max_new_tokens: int = 200, length_penalty: float = 1.0, ctc_weight: float = 0.0,
             pre_beam: int | None = None, start_id: int = 2, eos_id: int = 2, pad_id: int = 1,
             blank_id: int | None = None, fast: bool = True) -> Tensor:
    """Generate token ids with the KV cache: greedy (default), beam search (``num_beams > 1``) or sampling
    (``do_sample=True``: ``temperature``, ``top_k``, ``top_p``, seeded by ``generator``).

    Args:
        model: an encoder-decoder model (``x``: its encoder input, e.g. waveforms ``[B, S]``) or a decoder-only
            model (``x``: prompt token ids ``[B, L]``, right-padded; ``prefix``: its prefix pre-net's input).
        lengths: valid steps of ``x`` per row (None: no padding).
        max_new_tokens: the most tokens generated per row.
        ctc_weight / pre_beam / blank_id: joint CTC/attention beam search (encoder-decoder with a CTC head).
        start_id / eos_id / pad_id: special ids (SpeechT5's: 2 / 2 / 1).
        fast: allow the decoder's fused one-step path (False: the module path, the reference).

    Returns:
        ``[B, L]`` ids padded with ``pad_id``: for an encoder-decoder model starting with ``start_id``, for a
        decoder-only model the new tokens only; each row ends with ``eos_id`` unless it hit ``max_new_tokens``.
    """
    if num_beams > 1 and do_sample:
        raise InputError("choose beam search (num_beams > 1) or sampling (do_sample=True), not both")
    if getattr(model, "writes", None) != "text":
        raise InputError(f"generate makes tokens, but {type(model).__name__} writes "
                         f"{getattr(model, 'writes', None)} (speech output: mmseq.generate_speech)")
    if isinstance(model, DecoderOnlyModel):
        decoding: Any = DecoderOnlyDecoding(model, x, lengths, prefix=prefix, fast=fast)
    elif isinstance(model, EncoderDecoderModel):
        if prefix is not None:
            raise InputError("prefix= is for decoder-only models")
        decoding = Seq2SeqDecoding(model, x, lengths, start_id=start_id, fast=fast)
    else:
        raise InputError(f"{type(model).__name__} does not generate tokens: it is neither an encoder-decoder nor a "
                         "decoder-only model")
    if num_beams > 1:
        return beam_search(decoding, num_beams=num_beams, max_new_tokens=max_new_tokens,
                           length_penalty=length_penalty, ctc_weight=ctc_weight, pre_beam=pre_beam, eos_id=eos_id,
                           pad_id=pad_id, blank_id=blank_id)
    if ctc_weight > 0:
        raise InputError("ctc_weight needs beam search (num_beams > 1)")
    if do_sample:
        return sample(decoding, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                      generator=generator, eos_id=eos_id, pad_id=pad_id)
    return greedy_search(decoding, max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id)
