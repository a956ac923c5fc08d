"""WER / CER (jiwer), BLEU / chrF (sacrebleu) and accuracy: hand-checkable values, agreement with the libraries'
own calls, exact summing over batches, and errors for bad input."""

import jiwer
import pytest
import sacrebleu
import torch

from mmseq.errors import InputError
from mmseq.metrics import (Accuracy, ErrorRate, accuracy, bleu, character_error_rate, chrf, word_error_rate)


def test_wer_counts_one_substitution_in_four_words():
    out = word_error_rate(["the cat sat down"], ["the dog sat down"])
    assert (out.substitutions, out.deletions, out.insertions, out.hits) == (1, 0, 0, 3)
    assert out.rate == 0.25


def test_wer_counts_deletions_and_insertions():
    out = word_error_rate(["a b c", "x y z w"], ["a b c d", "x y z"])  # one deletion, one insertion
    assert (out.substitutions, out.deletions, out.insertions, out.hits) == (0, 1, 1, 6)
    assert out.reference_length == 7
    assert out.rate == pytest.approx(2 / 7)


def test_wer_agrees_with_jiwer_and_sums_exactly_over_batches():
    hyps = ["hello wold", "a quick brown fox", "jumps over", "", "the lazy dog dog"]
    refs = ["hello world", "the quick brown fox", "jumps over the", "nothing here", "the lazy dog"]
    whole = word_error_rate(hyps, refs)
    assert whole.rate == pytest.approx(jiwer.wer(refs, hyps))  # jiwer takes the reference first
    parts = word_error_rate(hyps[:2], refs[:2]) + word_error_rate(hyps[2:], refs[2:])
    assert parts == whole
    assert parts.rate == pytest.approx(jiwer.wer(refs, hyps))
    # The mean of per-batch rates is not the corpus rate: the counts are what makes summing exact.
    assert (word_error_rate(hyps[:2], refs[:2]).rate + word_error_rate(hyps[2:], refs[2:]).rate) / 2 != whole.rate


def test_cer_counts_characters_and_agrees_with_jiwer():
    out = character_error_rate(["abd"], ["abc"])
    assert (out.substitutions, out.hits) == (1, 2)
    assert out.rate == pytest.approx(1 / 3)
    hyps, refs = ["helo world", "kitten"], ["hello world", "sitting"]
    assert character_error_rate(hyps, refs).rate == pytest.approx(jiwer.cer(refs, hyps))


def test_empty_references_follow_jiwer():
    assert word_error_rate([""], [""]).rate == 0.0
    assert word_error_rate(["two words"], [""]).rate == pytest.approx(jiwer.wer([""], ["two words"])) == 2.0
    assert word_error_rate([], []) == ErrorRate()


def test_error_rate_inputs_are_checked():
    with pytest.raises(InputError, match="2 hypotheses but 1 references"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(InputError, match="hypothesis 1 is a int"):
        character_error_rate(["a", 3], ["a", "b"])


def test_bleu_of_identical_text_is_100_and_signature_names_the_tokenizer():
    out = bleu(["the cat sat on the mat", "it rained all day"], ["the cat sat on the mat", "it rained all day"])
    assert out.score == pytest.approx(100.0)
    assert "tok:13a" in out.signature and "nrefs:1" in out.signature


def test_bleu_and_chrf_agree_with_sacrebleu():
    hyps = ["the cat is on the mat", "there is a dog in the garden today"]
    refs = ["the cat sat on the mat", "a dog is in the garden today"]
    assert bleu(hyps, refs).score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert bleu(hyps, refs, tokenize="char").score == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="char").score)
    assert chrf(hyps, refs).score == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert chrf(hyps, refs, word_order=2).score == pytest.approx(
        sacrebleu.CHRF(word_order=2).corpus_score(hyps, [refs]).score)
    assert "nw:2" in chrf(hyps, refs, word_order=2).signature


def test_bleu_takes_several_references_per_hypothesis():
    hyps = ["the cat is on the mat"]
    refs = [["the cat sat on the mat", "the cat is on the mat"]]
    out = bleu(hyps, refs)
    assert out.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [[refs[0][0]], [refs[0][1]]]).score)
    assert out.score == pytest.approx(100.0)  # the second reference matches exactly
    assert "nrefs:2" in out.signature


def test_bleu_inputs_are_checked():
    with pytest.raises(InputError, match="no hypotheses"):
        bleu([], [])
    with pytest.raises(InputError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(InputError, match="same number"):
        chrf(["a", "b"], [["a"], ["b", "c"]])
    with pytest.raises(InputError, match="tokenizer 'klingon'"):
        bleu(["a"], ["a"], tokenize="klingon")


def test_accuracy_counts_and_sums():
    out = accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    assert out == Accuracy(3, 4) and out.rate == 0.75
    logits = torch.tensor([[2.0, 0.1], [0.0, 1.0], [3.0, -1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == Accuracy(2, 3)
    assert (Accuracy(3, 4) + Accuracy(2, 3)).rate == 5 / 7
    assert accuracy(torch.tensor([1, 1, 0]), torch.tensor([1, -100, 0]), ignore_index=-100) == Accuracy(2, 2)


def test_accuracy_inputs_are_checked():
    with pytest.raises(InputError, match="predictions \\[3\\] and targets \\[2\\]"):
        accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="scores must be \\[N, classes\\]"):
        accuracy(torch.randn(2, 3, 4), torch.tensor([0, 1]))
