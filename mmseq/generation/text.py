"""Token generation: batched greedy and beam search, both incremental (one decoder step per new token).

Rows that finish leave the batch (their cache rows are dropped), so a batch costs what its live rows cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.generation.mode import generation_mode
from mmseq.nn.backbone import EncoderDecoderModel, lengths_to_padding_mask


@dataclass
class Encoded:
    memory: Tensor  # [B, S, D]
    padding_mask: Tensor | None  # [B, S]; None when no row is padded (attention then needs no mask)

    def select(self, index: Tensor) -> Encoded:
        mask = None if self.padding_mask is None else self.padding_mask.index_select(0, index)
        return Encoded(self.memory.index_select(0, index), mask)


def _mask_if_padded(lengths: Tensor, max_length: int) -> Tensor | None:
    return None if bool((lengths == max_length).all()) else lengths_to_padding_mask(lengths, max_length)


def decoder_dtype(model: EncoderDecoderModel) -> torch.dtype:
    return next(model.decoder.parameters()).dtype


def encode(model: EncoderDecoderModel, x, lengths: Tensor | None) -> tuple[Encoded, Tensor]:
    """Encoder output in the decoder's dtype (the two may differ: see ``mmseq.inference.set_precision``)."""
    out, enc_lengths = model.encode(x, lengths)
    memory = out.last_hidden_state.to(decoder_dtype(model))
    return Encoded(memory, _mask_if_padded(enc_lengths, memory.shape[1])), enc_lengths


def _pad(rows: list[list[int]], pad_id: int, device: torch.device) -> Tensor:
    width = max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


@generation_mode
def greedy_search(model: EncoderDecoderModel, x, lengths: Tensor | None = None, *, max_new_tokens: int = 200,
                  start_id: int = 2, eos_id: int = 2, pad_id: int = 1) -> Tensor:
    """Greedy decoding. Returns ``[B, L]`` token ids starting with ``start_id``, padded with ``pad_id``; each
    row ends with ``eos_id`` unless it hit ``max_new_tokens``."""
    enc, _ = encode(model, x, lengths)
    batch = enc.memory.shape[0]
    device = enc.memory.device
    cache = model.decoder.new_cache()
    rows: list[list[int]] = [[start_id] for _ in range(batch)]
    alive = torch.arange(batch, device=device)
    last = torch.full((batch, 1), start_id, dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        logits, _, _ = model.decode(last, None, enc.memory, enc.padding_mask, cache=cache)
        next_tokens = logits[:, -1].argmax(-1)
        for row, token in zip(alive.tolist(), next_tokens.tolist()):
            rows[row].append(token)
        keep = next_tokens.ne(eos_id)
        if not bool(keep.all()):
            if not bool(keep.any()):
                break
            index = keep.nonzero().squeeze(1)
            cache.select(index)
            enc = enc.select(index)
            alive, next_tokens = alive[index], next_tokens[index]
        last = next_tokens[:, None]
    return _pad(rows, pad_id, device)


@generation_mode
def beam_search(model: EncoderDecoderModel, x, lengths: Tensor | None = None, *, num_beams: int = 5,
                max_new_tokens: int = 200, length_penalty: float = 1.0, ctc_weight: float = 0.0,
                pre_beam: int | None = None, start_id: int = 2, eos_id: int = 2, pad_id: int = 1,
                blank_id: int | None = None) -> Tensor:
    """Batched beam search, optionally with joint CTC/attention scoring.

    A hypothesis scores ``sum(step scores) / length ** length_penalty``; a step's score is the attention
    log-probability, or with ``ctc_weight`` = w: ``(1 - w) * log p_att + w * (CTC prefix score gain)`` over the
    ``pre_beam`` best attention candidates (default ``1.5 * num_beams``). The CTC head is the model's encoder
    post-net. A row stops once it holds ``num_beams`` finished hypotheses and no live beam can beat the worst of
    them. Returns the best hypothesis per row, ``[B, L]`` padded with ``pad_id``.
    """
    from mmseq.errors import InputError
    from mmseq.generation.ctc import CTCPrefixScorer

    out, enc_lengths = model.encode(x, lengths)
    memory = out.last_hidden_state
    enc = Encoded(memory.to(decoder_dtype(model)), _mask_if_padded(enc_lengths, memory.shape[1]))
    batch, k = enc.memory.shape[0], num_beams
    device = enc.memory.device
    scorer = None
    if ctc_weight > 0:
        if model.encoder_postnet is None:
            raise InputError("ctc_weight > 0 needs a model with a CTC head (built with ctc=True)")
        log_probs = model.encoder_postnet(memory)
        blank = log_probs.shape[-1] - 1 if blank_id is None else blank_id
        scorer = CTCPrefixScorer(log_probs, enc_lengths, blank=blank, eos=eos_id)
        scorer.repeat(k)
        width = pre_beam or max(2, int(1.5 * k))
    else:
        width = 2 * k  # the best 2k of all k*V continuations are among each beam's best 2k
    # Cross-attention keys/values once per utterance, then repeated for its k beams.
    cache = model.decoder.new_cache()
    model.decoder.fill_cross_cache(cache, enc.memory)
    per_beam = torch.arange(batch, device=device).repeat_interleave(k)
    cache.select(per_beam)
    enc = enc.select(per_beam)
    # Only the first beam of each row is live at the start, so the k beams do not start as copies.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((batch * k, 1), start_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(1, max_new_tokens + 1):
        logits, _, _ = model.decode(tokens[:, -1:], None, enc.memory, enc.padding_mask, cache=cache)
        att, candidates = logits[:, -1].float().log_softmax(-1).topk(width, dim=-1)  # [B*k, C]
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
        cache.select(flat_source, cross=False)  # beams move within their utterance: same encoder output
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
