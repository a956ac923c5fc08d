"""Text metrics: word and character error rates (jiwer), BLEU and chrF (sacrebleu).

Every function takes ``(hypotheses, references)`` in that order -- sacrebleu's and torchmetrics' order; jiwer's
own functions take the reference first -- one hypothesis per reference. Text is compared as given: normalise
(case, punctuation, numbers) before calling, the same way for both sides.

Error rates come with their edit counts (:class:`ErrorRate`), which add up exactly over a split: summing
per-batch results gives the corpus rate, not a mean of rates. BLEU and chrF are corpus-level scores and come
with sacrebleu's signature string, which says how they were computed (tokeniser, smoothing, version).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import sacrebleu

from mmseq.errors import InputError


@dataclass(frozen=True)
class ErrorRate:
    """Edit counts of hypotheses against references, and the rate they give.

    Attributes:
        substitutions / deletions / insertions / hits: the counts of the minimum-edit alignment, summed over
            every pair (words for WER, characters for CER).

    ``a + b`` adds the counts, so results of batches sum to the result of the whole split.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_length(self) -> int:
        """Reference units (words or characters): hits + substitutions + deletions."""
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """``(S + D + I) / (H + S + D)``; with no reference unit at all, the insertion count (as jiwer)."""
        if self.reference_length == 0:
            return float(self.insertions)
        return self.errors / self.reference_length

    def __add__(self, other: ErrorRate) -> ErrorRate:
        return ErrorRate(self.substitutions + other.substitutions, self.deletions + other.deletions,
                         self.insertions + other.insertions, self.hits + other.hits)


@dataclass(frozen=True)
class CorpusScore:
    """A sacrebleu corpus-level score (0 - 100) and the signature that says how it was computed."""

    score: float
    signature: str


def _pairs(hypotheses: Sequence[str] | str, references: Sequence[str] | str, what: str) -> tuple[list[str], list[str]]:
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    refs = [references] if isinstance(references, str) else list(references)
    if len(hyps) != len(refs):
        raise InputError(f"{what}: {len(hyps)} hypotheses but {len(refs)} references; give one hypothesis per "
                         f"reference")
    for name, items in (("hypothesis", hyps), ("reference", refs)):
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InputError(f"{what}: {name} {i} is a {type(item).__name__}, not a string")
    return hyps, refs


def word_error_rate(hypotheses: Sequence[str] | str, references: Sequence[str] | str) -> ErrorRate:
    """Word edit counts of ``hypotheses`` against ``references`` (``jiwer.process_words``).

    Words are split at white space (jiwer's default transform: surrounding and repeated spaces removed).

    Args:
        hypotheses: system outputs, one per reference (or one string).
        references: the reference transcripts.

    Returns:
        :class:`ErrorRate`; ``.rate`` is the WER (e.g. 1 substitution in 4 words: 0.25).
    """
    hyps, refs = _pairs(hypotheses, references, "word error rate")
    if not refs:
        return ErrorRate()
    out = jiwer.process_words(refs, hyps)
    return ErrorRate(out.substitutions, out.deletions, out.insertions, out.hits)


def character_error_rate(hypotheses: Sequence[str] | str, references: Sequence[str] | str) -> ErrorRate:
    """Character edit counts (``jiwer.process_characters``); spaces between words count as characters.

    Returns:
        :class:`ErrorRate`; ``.rate`` is the CER.
    """
    hyps, refs = _pairs(hypotheses, references, "character error rate")
    if not refs:
        return ErrorRate()
    out = jiwer.process_characters(refs, hyps)
    return ErrorRate(out.substitutions, out.deletions, out.insertions, out.hits)


def _reference_streams(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                       what: str) -> tuple[list[str], list[list[str]]]:
    """sacrebleu's layout: reference *streams*, each holding one reference per hypothesis."""
    hyps = list(hypotheses)
    if not hyps:
        raise InputError(f"{what}: no hypotheses")
    refs = list(references)
    if refs and all(isinstance(r, str) for r in refs):
        hyps, flat = _pairs(hyps, refs, what)
        return hyps, [flat]
    if len(refs) != len(hyps):
        raise InputError(f"{what}: {len(hyps)} hypotheses but {len(refs)} reference lists")
    counts = {len(r) for r in refs if not isinstance(r, str)}
    if any(isinstance(r, str) for r in refs) or len(counts) != 1 or 0 in counts:
        raise InputError(f"{what}: references must be one string per hypothesis, or the same number (>= 1) of "
                         f"reference strings for every hypothesis")
    for i, group in enumerate(refs):
        _pairs([hyps[i]] * len(group), list(group), what)
    return hyps, [list(stream) for stream in zip(*refs)]


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], tokenize: str = "13a",
         lowercase: bool = False) -> CorpusScore:
    """Corpus BLEU (``sacrebleu.BLEU``), 0 - 100.

    Args:
        hypotheses: system outputs, detokenised.
        references: one reference per hypothesis, or for each hypothesis a list of its references (the same
            number for every hypothesis).
        tokenize: sacrebleu tokeniser ('13a' -- WMT's default, 'intl', 'zh', 'char', 'none', ...).
        lowercase: case-insensitive BLEU.

    Returns:
        :class:`CorpusScore` with e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``.
    """
    hyps, streams = _reference_streams(hypotheses, references, "BLEU")
    try:
        metric = sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase)
    except Exception as e:  # sacrebleu raises assorted errors for unknown tokenisers
        raise InputError(f"BLEU: tokenizer {tokenize!r} is not available in sacrebleu: {e}") from None
    return CorpusScore(metric.corpus_score(hyps, streams).score, str(metric.get_signature()))


def chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
         word_order: int = 0) -> CorpusScore:
    """Corpus chrF (``sacrebleu.CHRF``: character 6-grams, beta 2), 0 - 100; ``word_order=2`` gives chrF++.

    Args:
        hypotheses / references: as :func:`bleu`.
        word_order: word n-gram order added to the character n-grams.
    """
    hyps, streams = _reference_streams(hypotheses, references, "chrF")
    metric = sacrebleu.CHRF(word_order=word_order)
    return CorpusScore(metric.corpus_score(hyps, streams).score, str(metric.get_signature()))
