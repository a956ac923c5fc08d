"""The official VQA accuracy: normalisation steps and the leave-one-human-out average, on hand-made cases."""

from __future__ import annotations

import itertools

import pytest

from mmseq.data.vision.vqa_eval import (
    normalize_answer, process_digit_article, process_punctuation, vqa_accuracy, vqa_evaluate,
)
from mmseq.errors import InputError


def subset_average(prediction: str, answers: list[str]) -> float:
    """The definition written out: mean over the 10 choose 9 subsets of min(#matches / 3, 1) (no normalisation)."""
    scores = [min(1.0, sum(a == prediction for a in subset) / 3)
              for subset in itertools.combinations(answers, len(answers) - 1)]
    return sum(scores) / len(scores)


@pytest.mark.parametrize("k", range(11))
def test_k_humans_agreeing(k):
    answers = ["red"] * k + ["blue"] * (10 - k)
    expected = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}.get(k, 1.0)
    assert vqa_accuracy("red", answers) == pytest.approx(expected)
    assert vqa_accuracy("red", answers) == pytest.approx(subset_average("red", answers))


def test_normalisation_applies_only_when_humans_disagree():
    # Ten identical answers: the official tool compares raw (stripped) strings, so case matters.
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace is always cleaned
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    # Disagreeing humans: both sides are normalised, so number words, case and articles no longer matter.
    answers = ["2"] * 3 + ["two"] * 7
    assert vqa_accuracy("Two", answers) == 1.0
    assert vqa_accuracy("2", ["a dog"] * 5 + ["the dog"] * 5) == 0.0
    assert vqa_accuracy("Dog.", ["a dog"] * 5 + ["the dog"] * 5) == 1.0


def test_punctuation_rules():
    assert process_punctuation("hot-dog") == "hot dog"  # not next to a space: becomes a space
    assert process_punctuation("red, white") == "red white"  # next to a space: deleted
    assert process_punctuation("1,000") == "1000"  # digit,digit anywhere: every mark deleted
    assert process_punctuation("3.5 m.") == "3.5 m"  # a period before a digit stays
    assert process_punctuation("it's 10:30") == "it's 10:30"  # apostrophes and colons stay
    assert process_punctuation("." * 40) == "." * 8  # the official count bug: at most 32 periods removed


def test_digit_article_rules():
    assert process_digit_article("The Three Dogs") == "3 dogs"
    assert process_digit_article("none") == "0"
    assert process_digit_article("dont  know") == "don't know"
    assert process_digit_article("Im") == "im"  # capitalised table keys never match after lower-casing
    assert normalize_answer("  A T-Shirt!\t") == "t shirt"


def test_corpus_evaluation_matches_hand_computation():
    annotations = [
        {"question_id": 1, "question_type": "what color", "answer_type": "other",
         "answers": [{"answer": "red", "answer_id": i + 1} for i in range(2)]
                    + [{"answer": "blue", "answer_id": i + 3} for i in range(8)]},
        {"question_id": 2, "question_type": "is this", "answer_type": "yes/no", "answers": ["yes"] * 10},
        {"question_id": 3, "question_type": "how many", "answer_type": "number", "answers": ["2"] * 3 + ["3"] * 7},
    ]
    results = [{"question_id": 1, "answer": "red"}, {"question_id": 2, "answer": "yes"},
               {"question_id": 3, "answer": "two"}]
    out = vqa_evaluate(annotations, results)
    assert out["per_question"] == {1: 60.0, 2: 100.0, 3: 90.0}
    assert out["overall"] == pytest.approx(round(100 * (0.6 + 1.0 + 0.9) / 3, 2))
    assert out["per_answer_type"] == {"other": 60.0, "yes/no": 100.0, "number": 90.0}
    assert out["per_question_type"]["how many"] == 90.0


def test_results_must_cover_the_annotations_exactly():
    annotations = [{"question_id": 1, "answers": ["a"] * 10}, {"question_id": 2, "answers": ["b"] * 10}]
    with pytest.raises(InputError, match="do not answer 1"):
        vqa_evaluate(annotations, [{"question_id": 1, "answer": "a"}])
    with pytest.raises(InputError, match="question_id 7 has no annotation"):
        vqa_evaluate(annotations, [{"question_id": 7, "answer": "a"}])
    with pytest.raises(InputError, match="answered twice"):
        vqa_evaluate(annotations, [{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}])
    with pytest.raises(InputError, match="at least 2"):
        vqa_accuracy("a", ["a"])
