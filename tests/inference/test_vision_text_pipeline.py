"""The "image-to-text" and "vqa" pipelines: paths, PIL images and arrays give the captions / answers the task's
generation gives on the same normalised images, batched or not, from a checkpoint; the CLI prints them."""

import numpy as np
import pytest
import torch
from PIL import Image

import mmseq
from mmseq.cli import main
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError, InputError
from mmseq.tasks.limber import caption_prompts, generate_text, prepare_images, truncate_answer, vqa_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limber")
    tokenizer = SpeechT5CharTokenizer.train(["a red cube and two blue spheres", "Q: what color? A: green.",
                                             "A picture of a yellow torus"])
    torch.manual_seed(0)
    model = mmseq.create_model("limber_tiny", lm={"builder": "text_lm_tiny", "args": {"vocab_size": len(tokenizer)}})
    with torch.no_grad():  # large random LM weights, so captions differ between images
        for p in model.lm.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.5)
    model.tokenizer = tokenizer
    mmseq.save_pretrained(model, folder / "ckpt")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40 + 8 * i, 36, 3), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(a).save(paths[-1])
    return folder / "ckpt", arrays, paths


def test_image_to_text_from_paths_pil_and_arrays(checkpoint):
    folder, arrays, paths = checkpoint
    pipe = mmseq.pipeline("image-to-text", model=folder, device="cpu")
    with torch.no_grad():
        expected = generate_text(pipe.model, caption_prompts(list(prepare_images(pipe.model, arrays))),
                                 max_new_tokens=12)
    assert len(set(expected)) > 1
    assert pipe(arrays, max_new_tokens=12, batch_size=2) == expected
    assert pipe([str(p) for p in paths], max_new_tokens=12) == expected
    assert pipe([Image.open(p) for p in paths], max_new_tokens=12, batch_size=1) == expected
    assert pipe(torch.from_numpy(arrays[1]).permute(2, 0, 1), max_new_tokens=12) == expected[1]  # one CHW tensor
    assert isinstance(pipe(arrays[0], num_beams=3, max_new_tokens=12), str)
    sampled = pipe(arrays, do_sample=True, max_new_tokens=12, generator=torch.Generator().manual_seed(0))
    assert sampled == pipe(arrays, do_sample=True, max_new_tokens=12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="image 0: expected an RGB image"):
        pipe(np.zeros((8, 8), dtype=np.uint8))


def test_vqa_zero_and_few_shot(checkpoint):
    folder, arrays, paths = checkpoint
    pipe = mmseq.pipeline("vqa", model=folder, device="cpu")
    questions = ["what color is the cube?", "how many spheres?", "is there a torus?"]
    pixels = list(prepare_images(pipe.model, arrays))
    with torch.no_grad():
        raw = generate_text(pipe.model, vqa_prompts(pixels, questions), max_new_tokens=10)
        shots = [(pixels[2], "what color?", "green")]
        raw_shot = generate_text(pipe.model, vqa_prompts(pixels[:2], questions[:2], shots), max_new_tokens=10)
    assert pipe([str(p) for p in paths], questions, batch_size=2) == [truncate_answer(t) for t in raw]
    assert pipe(arrays[0], questions[0]) == truncate_answer(raw[0])
    assert pipe(arrays[:2], questions[:2], shots=[(paths[2], "what color?", "green")]) == \
        [truncate_answer(t) for t in raw_shot]
    with pytest.raises(InputError, match="2 images but 1 questions"):
        pipe(arrays[:2], questions[:1])


def test_pipeline_rejects_a_model_that_does_not_read_images():
    with pytest.raises(ConfigError, match="reads image and writes text"):
        mmseq.pipeline("image-to-text", model=mmseq.create_model("text_lm_tiny"), device="cpu")


def test_infer_cli_prints_captions_and_answers(checkpoint, capsys):
    folder, _, paths = checkpoint
    pipe = mmseq.pipeline("image-to-text", model=folder, device="cpu")
    expected = pipe([str(p) for p in paths[:2]], max_new_tokens=5, prompt="A")
    assert main(["infer", "image-to-text", "--model", str(folder), str(paths[0]), str(paths[1]),
                 "--max-new-tokens", "5", "--prompt", "A"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{paths[0]}\t{expected[0]}", f"{paths[1]}\t{expected[1]}"]
    answers = mmseq.pipeline("vqa", model=folder, device="cpu")([str(p) for p in paths[:2]], ["what color?"] * 2)
    assert main(["infer", "vqa", "--model", str(folder), str(paths[0]), str(paths[1]), "--question",
                 "what color?"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [f"{p}\t{a}" for p, a in zip(paths[:2], answers)]
