"""Captioning metrics against pycocoevalcap (its scorers on pre-tokenised text; its Java PTB tokenizer where Java is
installed), VQA accuracy on known examples, and the synthetic captions' attribute accuracy."""

import contextlib
import io
import shutil

import pytest

from mmseq.errors import InputError
from mmseq.metrics import attribute_accuracy, bleu4, caption_scores, cider_d, ptb_tokenize, vqa_accuracy

# COCO-style captions with the punctuation, clitics, numbers and brackets real references have.
HYPOTHESES = [
    "A man riding a wave on top of a surfboard.",
    "Two dogs' toys aren't on the (red) couch!",
    "The cat's sitting on a 1,000-year-old rock...",
    "a plate w/ food and a fork",
]
REFERENCES = [
    ["A surfer rides a large wave.", "A man on a surfboard riding a wave!", "Man surfing; a big wave.",
     "a person riding a surf board on a wave"],
    ["Dog toys on a red couch.", "The couch (red) has two toys on it", "Toys aren't on the floor, they're on a sofa."],
    ["A cat sits on an old rock", "The cat's on a rock -- a 1,000-year-old one.", "a grey cat sitting on a stone"],
    ["A plate with food and a fork.", "food on a plate w/ a fork", "A white plate of food and/or a fork"],
]
# What PTB (Stanford CoreNLP 3.4.1, -lowerCase) plus pycocoevalcap's punctuation removal give for them.
PTB_TOKENISED = {
    "Two dogs' toys aren't on the (red) couch!": "two dogs toys are n't on the -lrb- red -rrb- couch",
    "The cat's sitting on a 1,000-year-old rock...": "the cat 's sitting on a 1,000-year-old rock",
    "Toys aren't on the floor, they're on a sofa.": "toys are n't on the floor they 're on a sofa",
    "A white plate of food and/or a fork": "a white plate of food and/or a fork",
    "a plate w/ food and a fork": "a plate w / food and a fork",
    'It\'s 5% off "big" $20 items; isn\'t it?': "it 's 5 % off big $ 20 items is n't it",
}


def _reference_scores(gts, res):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(gts, res)
    return Cider().compute_score(gts, res)[0], bleu[3]


def test_ptb_tokenize_known_outputs():
    for text, expected in PTB_TOKENISED.items():
        assert ptb_tokenize(text) == expected, text


def test_cider_and_bleu_are_pycocoevalcaps_scores_of_the_tokenised_text():
    gts = {i: [ptb_tokenize(r) for r in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(HYPOTHESES)}
    cider, bleu = _reference_scores(gts, res)
    scores = caption_scores(HYPOTHESES, REFERENCES)
    assert scores["cider_d"] == pytest.approx(cider, rel=1e-12) and cider > 0.1
    assert scores["bleu4"] == pytest.approx(bleu, rel=1e-12) and bleu > 0.05
    assert cider_d(HYPOTHESES, REFERENCES) == scores["cider_d"]
    assert bleu4(HYPOTHESES, REFERENCES) == scores["bleu4"]
    # a perfect hypothesis set scores higher than shuffled ones
    shuffled = HYPOTHESES[1:] + HYPOTHESES[:1]
    assert cider_d(shuffled, REFERENCES) < scores["cider_d"] / 3


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs Java")
def test_python_tokenisation_gives_the_java_ptb_tokenizers_scores():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = [t for refs in REFERENCES for t in refs] + HYPOTHESES + list(PTB_TOKENISED)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        java = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    for i, text in enumerate(texts):
        assert java[i][0] == ptb_tokenize(text), text
    gts = PTBTokenizer().tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)})
    res = PTBTokenizer().tokenize({i: [{"caption": h}] for i, h in enumerate(HYPOTHESES)})
    cider, bleu = _reference_scores(gts, res)
    scores = caption_scores(HYPOTHESES, REFERENCES)
    assert scores["cider_d"] == pytest.approx(cider, rel=1e-12)
    assert scores["bleu4"] == pytest.approx(bleu, rel=1e-12)


def test_bad_caption_inputs_are_input_errors():
    with pytest.raises(InputError, match="2 captions but 1"):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(InputError, match="image 0"):
        bleu4(["a"], ["a cat"])


def test_vqa_accuracy_is_min_agreeing_over_three_averaged_over_leave_one_out():
    humans = ["2"] * 2 + ["3"] * 8
    # for "2": leave out a "2" (2 subsets): 1 agreeing -> 1/3; leave out a "3" (8 subsets): 2 agreeing -> 2/3
    assert vqa_accuracy("2", humans) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_accuracy("two", humans) == pytest.approx(vqa_accuracy("2", humans))  # number words normalised
    assert vqa_accuracy("3", humans) == pytest.approx(1.0)
    assert vqa_accuracy("4", humans) == 0.0


def test_attribute_accuracy_on_synthetic_style_captions():
    objects = [[{"colour": "red", "shape": "cube"}, {"colour": "red", "shape": "cube"}, {"colour": "blue", "shape": "torus"}],
               [{"colour": "gray", "shape": "sphere"}]]
    right = ["two small red cubes to the left of a blue torus", "a grey ball"]
    got = attribute_accuracy(right, objects)
    assert got == {"shape_accuracy": 1.0, "shape_recall": 1.0, "colour_accuracy": 1.0, "colour_recall": 1.0,
                   "count_accuracy": 1.0}
    wrong = ["a green cone", "three red spheres"]
    got = attribute_accuracy(wrong, objects)
    assert got["colour_accuracy"] == 0.0 and got["count_accuracy"] == 0.0
    assert got["shape_accuracy"] == 0.5  # "spheres" is right for the second image
    partial = attribute_accuracy(["two red cubes", "a grey ball"], objects)
    assert partial["shape_recall"] == pytest.approx(0.75) and partial["count_accuracy"] == 0.5
    with pytest.raises(InputError, match="2 captions but object lists for 1"):
        attribute_accuracy(right, objects[:1])


def test_clip_score_is_weighted_clipped_cosine():
    import torch

    from mmseq.metrics import clip_score

    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [-1.0, 0.2], [0.0, 3.0]])
    # cos: 1/sqrt(2), negative -> 0, 1
    assert clip_score(image, text) == pytest.approx(2.5 * (2 ** -0.5 + 0 + 1) / 3)
    assert clip_score(image, text, weight=100) == pytest.approx(100 * (2 ** -0.5 + 1) / 3)
    with pytest.raises(InputError, match="paired"):
        clip_score(image, text[:2])


def test_clip_scorer_uses_the_named_model_from_a_local_file(tmp_path):
    import open_clip
    import torch
    from PIL import Image

    from mmseq.metrics import CLIPScorer

    torch.manual_seed(0)
    source, _, preprocess = open_clip.create_model_and_transforms("ViT-S-32")
    torch.save(source.state_dict(), tmp_path / "clip.pt")
    scorer = CLIPScorer("ViT-S-32", pretrained=str(tmp_path / "clip.pt"))
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    images[1].save(tmp_path / "blue.png")
    captions = ["a red square", "a blue square"]
    source.eval()
    with torch.no_grad():
        img = source.encode_image(torch.stack([preprocess(i) for i in images]))
        txt = source.encode_text(open_clip.get_tokenizer("ViT-S-32")(captions))
    cos = torch.nn.functional.cosine_similarity(img, txt).clamp(min=0)
    assert scorer([images[0], tmp_path / "blue.png"], captions) == pytest.approx(float(2.5 * cos.mean()), rel=1e-5)
    with pytest.raises(InputError, match="2 images but 1 captions"):
        scorer(images, captions[:1])
