"""VQA accuracy as the official VQAv2 evaluation computes it (GT-Vision-Lab/VQA ``vqaEval.py``, master).

For one question with 10 human answers ``g_1 .. g_10`` and a predicted answer ``p``::

    acc_i = min(1, #{j != i : g_j == p} / 3)          (leave human i out: one of the 10 choose-9 subsets)
    score = mean_i acc_i

so an answer given by 3 or more other humans scores 1 for that subset, and the score is the average over the 10
subsets. Corpus accuracy is ``100 * mean(score)`` rounded to 2 decimals, also per question type and answer type.

Answers are compared after the official normalisation, with its quirks kept so numbers match the official tool:

1. ``\\n`` and ``\\t`` become spaces and every answer is stripped.
2. **Only when the 10 human answers are not all the same string**, the humans' answers *and* the prediction go
   through :func:`process_punctuation` and :func:`process_digit_article`. When all 10 agree nothing else is
   normalised, so ``"Yes"`` against ten ``"yes"`` scores 0 (as in the official tool).
3. :func:`process_punctuation`: for each mark of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``, if the
   *original* text has that mark next to a space, or the text holds a digit-comma-digit anywhere (``1,000``), every
   copy of the mark is deleted; otherwise every copy becomes a space. Then ``.`` not followed by a digit is deleted
   -- at most 32 of them, because the official code passes ``re.UNICODE`` (= 32) where ``re.sub`` takes its count.
   Apostrophes and ``:`` are kept.
4. :func:`process_digit_article`: lower-case, split on whitespace, number words ``none/zero..ten`` become digits,
   the articles ``a/an/the`` are dropped, contractions written without their apostrophe (``dont``) get it back
   from the official table, and the words are joined by single spaces.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mmseq.errors import InputError

__all__ = [
    "process_punctuation", "process_digit_article", "normalize_answer", "vqa_accuracy", "vqa_evaluate",
]

_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]  # fmt: skip
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a (malformed) look-ahead that never blocks a
# match at a '.', so in effect it deletes a period that is not followed by a digit.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_COUNT = int(re.UNICODE)  # 32: the official call passes the flag as re.sub's count
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = {"a", "an", "the"}


def _contraction_table() -> dict[str, str]:
    """The official contraction table: a word written without apostrophes -> the word with them."""
    # Entries are "written=fixed", as in the official table (its capitalised keys never match: words are
    # lower-cased first; "somebody'd=somebodyd" is the table's own typo, kept).
    pairs = (
        "aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've "
        "couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've "
        "hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's "
        "howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd "
        "itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've "
        "mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've "
        "oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't "
        "shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't "
        "shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've "
        "somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd "
        "someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's "
        "somethingd=something'd somethingd've=something'd've something'dve=something'd've "
        "somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've "
        "therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll "
        "theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've "
        "werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd "
        "wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's "
        "whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't "
        "wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll "
        "yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've "
        "you'dve=you'd've youll=you'll youre=you're youve=you've"
    )
    return dict(pair.split("=", 1) for pair in pairs.split())


_CONTRACTIONS = _contraction_table()


def process_punctuation(text: str) -> str:
    """The official punctuation step (see the module docstring, step 3)."""
    out = text
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official number-word, article and contraction step (see the module docstring, step 4)."""
    words = [_NUMBERS.get(word, word) for word in text.lower().split()]
    words = [_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """Whitespace clean-up, punctuation and digit/article steps in the official order (steps 1, 3, 4).

    This is what the official tool applies whenever a question's human answers disagree; :func:`vqa_accuracy`
    decides per question whether to apply it.
    """
    return process_digit_article(process_punctuation(_clean(text)))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one predicted answer.

    Args:
        prediction: The model's answer.
        answers: The human answers, 10 in VQAv2 (any number >= 2 is accepted; each one is left out in turn).

    Returns:
        The mean over humans ``i`` of ``min(1, #{j != i : answers[j] == prediction} / 3)``, after the official
        normalisation (which runs only when the human answers are not all identical), in ``[0, 1]``.

    Raises:
        InputError: Fewer than 2 human answers.
    """
    if len(answers) < 2:
        raise InputError(f"VQA accuracy needs at least 2 human answers, got {len(answers)}")
    humans = [_clean(a) for a in answers]
    pred = _clean(prediction)
    if len(set(humans)) > 1:
        humans = [process_digit_article(process_punctuation(a)) for a in humans]
        pred = process_digit_article(process_punctuation(pred))
    matches = sum(a == pred for a in humans)
    # Leaving human i out removes one match exactly when human i agreed with the prediction.
    total = sum(min(1.0, (matches - (a == pred)) / 3.0) for a in humans)
    return total / len(humans)


def vqa_evaluate(annotations: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
                 decimals: int = 2) -> dict[str, Any]:
    """Corpus VQA accuracy, overall and per question and answer type, as the official ``VQAEval.evaluate``.

    Args:
        annotations: The ``annotations`` list of a ``v2_mscoco_*_annotations.json`` (or :class:`VQAv2` items):
            each with ``question_id``, ``answers`` (a list of ``{"answer": ...}`` or of strings), and optionally
            ``question_type`` and ``answer_type``.
        results: ``[{"question_id", "answer"}]``, covering exactly the annotations' question ids (the official
            ``loadRes`` asserts the same).
        decimals: Rounding of the percentages (the official tool uses 2).

    Returns:
        ``{"overall": float, "per_question_type": {type: float}, "per_answer_type": {type: float},
        "per_question": {question_id: float}}``, percentages in ``[0, 100]``.

    Raises:
        InputError: A result repeats or misses a question id, names one without annotation, or lacks a field.
    """
    gts: dict[Any, Mapping[str, Any]] = {}
    for i, ann in enumerate(annotations):
        if "question_id" not in ann or "answers" not in ann:
            raise InputError(f"annotation {i} needs 'question_id' and 'answers', has {sorted(ann)}")
        gts[ann["question_id"]] = ann
    preds: dict[Any, str] = {}
    for i, res in enumerate(results):
        if "question_id" not in res or "answer" not in res:
            raise InputError(f"result {i} needs 'question_id' and 'answer', has {sorted(res)}")
        qid = res["question_id"]
        if qid in preds:
            raise InputError(f"result {i}: question_id {qid!r} is answered twice")
        if qid not in gts:
            raise InputError(f"result {i}: question_id {qid!r} has no annotation")
        preds[qid] = res["answer"]
    missing = [qid for qid in gts if qid not in preds]
    if missing:
        raise InputError(f"results do not answer {len(missing)} annotated questions, e.g. {missing[:5]}")

    scores: list[float] = []
    per_question: dict[Any, float] = {}
    by_qtype: dict[str, list[float]] = defaultdict(list)
    by_atype: dict[str, list[float]] = defaultdict(list)
    for qid, ann in gts.items():
        answers = [a["answer"] if isinstance(a, Mapping) else a for a in ann["answers"]]
        acc = vqa_accuracy(preds[qid], answers)
        scores.append(acc)
        per_question[qid] = round(100 * acc, decimals)
        by_qtype[ann.get("question_type", "")].append(acc)
        by_atype[ann.get("answer_type", "")].append(acc)

    def pct(values: list[float]) -> float:
        return round(100 * sum(values) / len(values), decimals) if values else 0.0

    return {
        "overall": pct(scores),
        "per_question_type": {k: pct(v) for k, v in by_qtype.items()},
        "per_answer_type": {k: pct(v) for k, v in by_atype.items()},
        "per_question": per_question,
    }

