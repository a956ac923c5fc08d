"""LiMBeR's task: the loss scores caption tokens only, cached features equal recomputed ones and are invalidated
with the encoder or transform, KV-cache generation equals recomputing the whole sequence, VQA prompts."""

import math
import os
import time

import pytest
import torch

import mmseq
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.data.vision.synth_captions import build_captions
from mmseq.errors import ConfigError, InputError
from mmseq.tasks import build_task
from mmseq.tasks.limber import (CaptionSet, ImageFeatures, LimberDecoding, _MEMORY, cached_features, caption_batch,
                                compute_features, encoder_fingerprint, generate_text, limber_caption_loss,
                                prepare_images, prompt_embeddings, truncate_answer, vqa_prompts)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_captions")
    build_captions(root, profile="tiny", seed=0, jobs=1)
    return root


@pytest.fixture(scope="module")
def tokenizer(corpus):
    texts = [t for refs in CaptionSet(corpus, "train2014").references for t in refs]
    return SpeechT5CharTokenizer.train(texts + ["A picture of", "Q: what? A: yes"])


def _model(tokenizer, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = mmseq.create_model("limber_tiny", lm={"builder": "text_lm_tiny", "args": {"vocab_size": len(tokenizer)}},
                               **kwargs)
    model.tokenizer = tokenizer
    return model


def _scramble(model, std):
    """Large random LM weights: a tiny random LM otherwise repeats one token, which hides position mistakes."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.lm.parameters():
            if p.dim() >= 2:
                p.normal_(0, std)
    return model


def _tiny_gpt2_limber():
    from transformers import GPT2Config, GPT2LMHeadModel

    from mmseq.models.limber import LimberModel, ImagePrefix, TransformersCausalLM, build_image_encoder

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_positions=128, n_embd=32, n_layer=2, n_head=4)).eval()
    encoder = build_image_encoder({"library": "mmseq", "name": "conv_tiny"})
    return LimberModel(encoder, ImagePrefix(encoder.output_dim, 32, 2), TransformersCausalLM(gpt2)).eval()


def test_loss_scores_caption_tokens_only(tokenizer):
    model = _model(tokenizer).eval()
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    batch = caption_batch(tokenizer, feats, ["a red cube", "two blue spheres"], prompt="A picture of")
    prompt_len = len(tokenizer.encode("A picture of", add_eos=False))
    assert not batch["scored"][:, :prompt_len].any()
    assert batch["scored"].sum(1).tolist() == [len(tokenizer.encode(c)) for c in ["a red cube", "two blue spheres"]]
    captured = {}

    class Spy(torch.nn.Module):  # keeps the logits to look at their gradient
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *args, **kwargs):
            out = self.inner(*args, **kwargs)
            out.outputs.retain_grad()
            captured["out"] = out
            return out

    loss, metrics = limber_caption_loss(Spy(), batch)
    out = captured["out"]
    # by hand: per-item mean of the caption tokens' cross-entropy, averaged over the items
    logits = out.token_logits()
    manual = []
    for i in range(2):
        idx = batch["scored"][i].nonzero().squeeze(1)
        manual.append(torch.nn.functional.cross_entropy(logits[i, idx], batch["tokens"][i, idx]))
    torch.testing.assert_close(loss, torch.stack(manual).mean())
    loss.backward()
    grad = out.outputs.grad.abs().sum(-1)  # [B, P + L]: position t predicts token t - P + 1
    p = out.prefix_length
    assert bool((grad[:, : p - 1 + prompt_len] == 0).all())  # image positions and prompt-predicting ones: ignored
    for i in range(2):  # every scored position gets a gradient, padding ones none
        scored_positions = batch["scored"][i].nonzero().squeeze(1) + p - 1
        assert bool((grad[i, scored_positions] > 0).all())
        assert int((grad[i] > 0).sum()) == len(scored_positions)
    assert metrics["token_accuracy"].denominator == int(batch["scored"].sum())


def test_cached_features_equal_recomputed_and_are_invalidated(corpus, tokenizer, tmp_path):
    data = CaptionSet(corpus, "train2014")
    paths = data.paths[:5]
    model = _model(tokenizer)
    fresh = compute_features(model, paths)
    first = cached_features(model, paths, tmp_path / "train")
    files = list(tmp_path.glob("train.*.pt"))
    assert len(files) == 1 and encoder_fingerprint(model) in files[0].name
    _MEMORY.clear()
    again = cached_features(model, paths, tmp_path / "train")  # read back from disk
    assert torch.equal(first, fresh) and torch.equal(again, fresh)
    # the cached features are the model's own features of the transformed images
    torch.testing.assert_close(fresh, model.encode_images(prepare_images(model, paths)))

    changed = _model(tokenizer)
    with torch.no_grad():
        changed.encoder.backbone.layers[0].weight[0, 0, 0, 0] += 1.0
    assert encoder_fingerprint(changed) != encoder_fingerprint(model)
    got = cached_features(changed, paths, tmp_path / "train")
    assert torch.equal(got, compute_features(changed, paths)) and not torch.equal(got, fresh)
    assert len(list(tmp_path.glob("train.*.pt"))) == 2

    resized = _model(tokenizer, image_size=48)  # another transform: same weights, other input size
    assert encoder_fingerprint(resized) != encoder_fingerprint(model)
    assert torch.equal(cached_features(resized, paths, tmp_path / "train"), compute_features(resized, paths))

    # an image rewritten on disk: its stamps differ, so the file is recomputed
    _MEMORY.clear()
    image = prepare_images(model, [paths[0]])
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert torch.equal(cached_features(model, paths, tmp_path / "train"), fresh)
    torch.testing.assert_close(model.encode_images(image), fresh[:1])


def _naive_greedy(model, prompt, tokenizer, steps):
    embeds, _ = prompt_embeddings(model, tokenizer, [prompt])
    out = []
    for _ in range(steps):
        logits = model.lm(embeds, torch.arange(embeds.shape[1])[None])
        token = int(logits[0, -1].argmax())
        if token == tokenizer.eos_id:
            break
        out.append(token)
        embeds = torch.cat([embeds, model.embed_tokens(torch.tensor([[token]]))], 1)
    return tokenizer.decode(out).strip()


@pytest.mark.parametrize("lm", ["mmseq", "transformers"])
def test_kv_cache_generation_equals_recomputing_the_sequence(lm, tokenizer):
    model = _scramble(_model(tokenizer).eval(), 0.5) if lm == "mmseq" else _scramble(_tiny_gpt2_limber(), 0.3)
    if lm == "transformers":
        class Ids:  # token ids below the GPT-2 vocabulary, as text
            eos_id, pad_id = 0, 0

            def encode(self, text, add_eos=True):
                return [3 + (ord(c) % 50) for c in text]

            def decode(self, ids):
                return " ".join(str(int(i)) for i in ids)

        tok = Ids()
    else:
        tok = tokenizer
    torch.manual_seed(3)
    images = list(torch.randn(3, 3, 32, 32))
    prompts = [[images[0], "A picture of"], [images[1], "a"], ["Q: what? A: yes", images[2], "Q: what? A:"]]
    with torch.no_grad():
        batched = generate_text(model, prompts, tok, max_new_tokens=8)
        assert len(set(batched)) == 3 and all(batched)
        for prompt, text in zip(prompts, batched):
            assert text == _naive_greedy(model, prompt, tok, 8)
            assert generate_text(model, [prompt], tok, max_new_tokens=8) == [text]
        # beam search with one beam is greedy; more beams and sampling run on the same cache
        assert generate_text(model, prompts, tok, num_beams=1, max_new_tokens=8) == batched
        assert len(generate_text(model, prompts, tok, num_beams=3, max_new_tokens=8)) == 3
        a = generate_text(model, prompts, tok, do_sample=True, max_new_tokens=8, generator=torch.Generator().manual_seed(1))
        b = generate_text(model, prompts, tok, do_sample=True, max_new_tokens=8, generator=torch.Generator().manual_seed(1))
        assert a == b


def test_beam_search_reorders_the_cache(tokenizer):
    """Beam search on the cache finds a continuation the model scores above greedy's (recomputed without cache):
    beams that swap rows only score right when the cache rows follow them."""
    from mmseq.generation.text import beam_search, greedy_search

    model = _scramble(_model(tokenizer, seed=5).eval(), 0.5)
    torch.manual_seed(0)
    prompt = [[torch.randn(3, 32, 32), "A picture of"]]
    with torch.no_grad():
        embeds, lengths = prompt_embeddings(model, tokenizer, prompt)

        def score(ids):
            full = torch.cat([embeds, model.embed_tokens(torch.tensor([ids]))], 1)
            logp = model.lm(full, torch.arange(full.shape[1])[None])[0].log_softmax(-1)
            return sum(float(logp[int(lengths[0]) - 1 + i, t]) for i, t in enumerate(ids))

        kwargs = {"max_new_tokens": 6, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}
        greedy = greedy_search(LimberDecoding(model, embeds, lengths), **kwargs)[0].tolist()
        beam = beam_search(LimberDecoding(model, embeds, lengths), num_beams=4, length_penalty=0.0, **kwargs)
        beam = beam[0].tolist()
    assert tokenizer.eos_id not in greedy + beam and beam != greedy  # both run to the length limit
    assert score(beam) > score(greedy)


def test_vqa_prompts_interleave_shots_and_answers_stop_at_newline_or_period():
    img = [ImageFeatures(torch.zeros(1, 4)) for _ in range(3)]
    prompts = vqa_prompts(img[:1], ["what color is it?"], shots=[(img[1], "how many?", "2"), (img[2], "is it red?", "no")])
    assert prompts[0][1::2] == ["Q: how many? A: 2\n", "Q: is it red? A: no\n", "Q: what color is it? A:"]
    assert prompts[0][0::2] == [img[1], img[2], img[0]]
    assert vqa_prompts(img[:1], ["what?"]) == [[img[0], "Q: what? A:"]]
    assert truncate_answer(" red. Q: next\nmore") == "red"
    assert truncate_answer(" two cubes\nQ: how") == "two cubes"
    with pytest.raises(InputError, match="2 images but 1 questions"):
        vqa_prompts(img[:2], ["what?"])


def test_task_builds_batches_from_cached_features_and_evaluates(corpus, tokenizer, tmp_path, monkeypatch):
    task = build_task("limber_caption", {"root": str(corpus), "feature_cache": str(tmp_path), "eval_images": 4,
                                         "eval_questions": 4, "max_new_tokens": 5, "train_prompt": "A picture of", "vqa_shots": [0, 2],
                                         "vqa_max_new_tokens": 11})
    model = _model(tokenizer)
    task.prepare_model(model)
    # what the loop's init_from does after prepare_model: load other encoder weights
    with torch.no_grad():
        model.encoder.backbone.layers[0].weight.mul_(-2.0)
    items = [task.train_set[i] for i in range(3)]
    batch = task.collate(items)
    model.eval()  # no map dropout: the two losses below compare
    loss, _ = task.loss(model, batch)
    features = task.train_set.features  # computed on first use, with the loaded weights
    assert torch.equal(features, compute_features(model, task.train_set.paths))
    by_hand = caption_batch(tokenizer, features[torch.tensor([it["image"] for it in items])],
                            [it["caption"] for it in items], "A picture of")
    torch.testing.assert_close(loss, limber_caption_loss(model, by_hand)[0])
    assert list(tmp_path.glob("train2014.*.pt"))
    import mmseq.tasks.limber as limber

    written = []  # every caption the evaluation generates
    real = limber.caption_images

    def counting(*args, **kwargs):
        captions = real(*args, **kwargs)
        written.extend(captions)
        return captions

    monkeypatch.setattr(limber, "caption_images", counting)
    answer_lengths = []  # max_new_tokens of every VQA generation
    real_generate = limber.generate_text

    def answering(model, prompts, *args, **kwargs):
        if any(isinstance(p, str) and p.startswith("Q: ") for prompt in prompts for p in prompt):
            answer_lengths.append(kwargs["max_new_tokens"])
        return real_generate(model, prompts, *args, **kwargs)

    monkeypatch.setattr(limber, "generate_text", answering)
    metrics = task.evaluate(model.eval(), "val")
    assert answer_lengths and set(answer_lengths) == {11}
    assert {"cider_d", "bleu4", "shape_accuracy", "colour_accuracy", "count_accuracy", "vqa_accuracy_0shot", "vqa_accuracy_2shot", "cider_d/out-domain", "shape_accuracy/in-domain"} <= set(metrics)
    # the images are captioned once; each domain's scores are those of its images' captions
    val = task.val_set
    assert len(written) == 4 and len({val.domains[i] for i in range(4)}) > 1
    for domain in {val.domains[i] for i in range(4)} - {""}:
        keep = [i for i in range(4) if val.domains[i] == domain]
        part = limber.score_captions([written[i] for i in keep], [val.references[i] for i in keep],
                                     [val.objects[i] for i in keep])
        assert metrics[f"cider_d/{domain}"] == part["cider_d"]


def test_text_lm_task_and_its_tokenizer_travel_into_limber(corpus, tmp_path):
    from mmseq.checkpoint import build_model  # the training CLI's builder: sub-model paths are loaded
    from mmseq.errors import ConfigError

    task = build_task("limber_text_lm", {"root": str(corpus)})
    size = task.info["vocab_size"]
    with pytest.raises(ConfigError, match=f"vocab_size={size}"):
        task.prepare_model(mmseq.create_model("text_lm_tiny", vocab_size=size + 1))
    lm = mmseq.create_model("text_lm_tiny", vocab_size=size)
    task.prepare_model(lm)
    texts = [task.train_set[i] for i in range(len(task.train_set))]
    assert any(t.startswith("Q: ") and " A: " in t for t in texts) and any(not t.startswith("Q: ") for t in texts)
    batch = task.collate(texts[:3])
    assert bool((batch["tokens"][:, 0] == lm.tokenizer.bos_id).all())
    loss, _ = task.loss(lm, batch)
    assert torch.isfinite(loss)
    mmseq.save_pretrained(lm, tmp_path / "lm")
    model = build_model("limber_tiny", {"lm": str(tmp_path / "lm")})
    assert model.tokenizer.encode("a red cube") == lm.tokenizer.encode("a red cube")
    assert "tmp" not in str(model.mmseq_config["args"]["lm"])
    mmseq.save_pretrained(model, tmp_path / "limber")
    loaded = mmseq.load(tmp_path / "limber")
    assert loaded.tokenizer.encode("a red cube") == lm.tokenizer.encode("a red cube")


def test_text_lm_chains_are_few_shot_prompt_text_encoded_as_prompts_are(corpus):
    from mmseq.tasks.limber import split_texts, text_lm_rows

    singles = split_texts(corpus, "train2014", True)
    texts = split_texts(corpus, "train2014", True, qa_chains=4, seed=3)
    assert texts[: len(singles)] == singles and texts == split_texts(corpus, "train2014", True, qa_chains=4, seed=3)
    chains = texts[len(singles):]
    assert chains and all(isinstance(c, tuple) for c in chains) and chains != split_texts(
        corpus, "train2014", True, qa_chains=4, seed=4)[len(singles):]
    assert all(2 <= len(c) <= 4 for c in chains[:-1]) and 1 <= len(chains[-1]) <= 4
    questions = sorted(t for t in singles if t.startswith("Q: "))
    assert sorted(p.rstrip("\n") for c in chains for p in c) == questions  # each question once in a chain
    assert all(p.endswith("\n") for c in chains for p in c[:-1]) and not any(c[-1].endswith("\n") for c in chains)
    with pytest.raises(ConfigError, match="qa_chains=1"):
        split_texts(corpus, "train2014", True, qa_chains=1)

    task = build_task("limber_text_lm", {"root": str(corpus), "qa_chains": 3, "max_tokens": 400})
    lm = mmseq.create_model("text_lm_tiny", vocab_size=task.info["vocab_size"])
    task.prepare_model(lm)
    tok = lm.tokenizer
    chain = next(t for t in task.train_set if isinstance(t, tuple))
    row = text_lm_rows(tok, [chain], 400)[0]
    # the ids a few-shot prompt's text pieces get in prompt_embeddings (piece by piece), newlines kept
    assert row == [tok.bos_id] + [i for p in chain for i in tok.encode(p, add_eos=False)] + [tok.eos_id]
    assert tok.decode(row).count("\n") == len(chain) - 1
    assert text_lm_rows(tok, [chain], 10)[0] == row[:10]
    batch = task.collate([chain, task.train_set[0]])
    assert int(batch["lengths"][0]) == len(row)
    assert torch.isfinite(task.loss(lm, batch)[0])


def test_shuffled_pairing_control_pairs_captions_with_other_images(corpus):
    plain = build_task("limber_caption", {"root": str(corpus)}).train_set
    shuffled = build_task("limber_caption", {"root": str(corpus), "shuffle_pairs": True}).train_set
    assert [it["caption"] for it in plain.items] == [it["caption"] for it in shuffled.items]
    moved = sum(a["image"] != b["image"] for a, b in zip(plain.items, shuffled.items))
    assert moved > len(plain.items) // 2
    # a permutation of the images: each image still has as many captions
    count = lambda items: sorted(sum(it["image"] == i for it in items) for i in range(len(plain.paths)))  # noqa: E731
    assert count(plain.items) == count(shuffled.items)


def test_fingerprint_covers_batch_norm_buffers():
    """A timm encoder with batch norm (0-d ``num_batches_tracked`` buffers): hashed, stable, and its statistics
    count."""
    spec = {"library": "timm", "name": "test_resnet", "image_size": 32}
    torch.manual_seed(0)
    model = mmseq.create_model("limber", encoder=spec)
    assert encoder_fingerprint(model) == encoder_fingerprint(model)
    torch.manual_seed(0)
    other = mmseq.create_model("limber", encoder=spec)
    assert encoder_fingerprint(other) == encoder_fingerprint(model)
    name = next(n for n, _ in other.encoder.named_buffers() if n.endswith("running_mean"))
    other.encoder.get_buffer(name).add_(1.0)
    assert encoder_fingerprint(other) != encoder_fingerprint(model)


def test_label_encoder_task_and_its_backbone_loaded_into_limber(corpus, tokenizer, tmp_path):
    from mmseq.tasks.limber import attribute_labels
    from mmseq.train.config import InitFromConfig
    from mmseq.train.init import init_from

    objects = [{"colour": "red", "shape": "cube"}, {"colour": "red", "shape": "table"}]
    target = attribute_labels(objects)
    assert target.sum() == 4 and target[0] == 1 and target[8] == 1 and target[8 + 11] == 1 and target[8 + 12 + 1] == 1
    task = build_task("limber_encoder_labels", {"root": str(corpus)})
    torch.manual_seed(0)
    encoder = mmseq.create_model("limber_label_encoder", backbone="test_resnet", image_size=32)
    task.prepare_model(encoder)
    batch = task.collate([task.train_set[i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 32, 32) and batch["labels"].shape == (4, 24)
    loss, _ = task.loss(encoder, batch)
    assert torch.isfinite(loss)
    mmseq.save_pretrained(encoder, tmp_path / "enc")
    model = mmseq.create_model("limber", encoder={"library": "timm", "name": "test_resnet", "image_size": 32},
                               lm={"builder": "text_lm_tiny", "args": {"vocab_size": len(tokenizer)}})
    init_from(model, InitFromConfig(checkpoint=str(tmp_path / "enc"), include=["backbone.*"],
                                    prefix_map={"backbone.": "encoder.backbone."}, strict=False))
    encoder.eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_images(images)[:, 0], encoder.backbone(images))
    assert (model.encoder.mean, model.encoder.std) == (encoder.mean, encoder.std)


def test_clip_loss_is_the_symmetric_cross_entropy_of_scaled_cosines():
    from mmseq.tasks.limber import clip_loss

    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=-1)
    text = torch.nn.functional.normalize(image + 0.3 * torch.randn(3, 4, generator=g), dim=-1)  # near their images
    scale = torch.tensor(7.0)
    logits = [[float(scale * (image[i] * text[j]).sum()) for j in range(3)] for i in range(3)]
    # -log softmax of the matching pair, over a row (image -> texts) and over a column (text -> images)
    rows = [-logits[i][i] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(3)]
    cols = [-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(3))) for j in range(3)]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert clip_loss(image, text, scale).item() == pytest.approx(expected, rel=1e-5)
    # swapping the towers gives the same loss; a wrong pairing a higher one
    assert clip_loss(text, image, scale).item() == pytest.approx(expected, rel=1e-5)
    assert clip_loss(image, text[[1, 2, 0]], scale).item() > expected


def test_masked_pixel_loss_scores_masked_pixels_only():
    from mmseq.tasks.limber import masked_pixel_loss, random_patch_mask

    g = torch.Generator().manual_seed(0)
    mask = random_patch_mask(2, 4, 0.6, g)
    assert mask.shape == (2, 4, 4) and mask.sum(dim=(1, 2)).tolist() == [10, 10]  # round(0.6 * 16)
    assert not torch.equal(mask[0], mask[1])
    images, prediction = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    total, count = 0.0, 0
    for b in range(2):
        for c in range(3):
            for y in range(8):
                for x in range(8):
                    if mask[b, y // 2, x // 2]:
                        total += abs(float(prediction[b, c, y, x] - images[b, c, y, x]))
                        count += 1
    value = masked_pixel_loss(prediction, images, mask, patch_size=2)
    assert value.item() == pytest.approx(total / count, rel=1e-5)
    pixels = mask.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, None].expand_as(images)
    changed = torch.where(pixels, prediction, prediction + 5.0)  # only the visible pixels move
    assert masked_pixel_loss(changed, images, mask, patch_size=2).item() == pytest.approx(value.item(), rel=1e-6)
    moved = torch.where(pixels, prediction + 5.0, prediction)
    assert masked_pixel_loss(moved, images, mask, patch_size=2).item() > value.item() + 1
    squared = masked_pixel_loss(prediction, images, mask, patch_size=2, kind="mse")
    assert squared.item() == pytest.approx(float(((prediction - images)[pixels] ** 2).mean()), rel=1e-5)


def test_mim_encoder_replaces_masked_pixels_with_its_mask_token():
    torch.manual_seed(0)
    model = mmseq.create_model("limber_mim_encoder", backbone="test_resnet", image_size=32, patch_size=8).eval()
    images = torch.randn(2, 3, 32, 32)
    none = torch.zeros(2, 4, 4, dtype=torch.bool)
    assert model(images, none).shape == (2, 3, 32, 32)
    mask = none.clone()
    mask[:, 0, 0] = True
    changed = images.clone()
    changed[:, :, :8, :8] = 100.0  # inside the masked patch: the model never sees it
    torch.testing.assert_close(model(changed, mask), model(images, mask))
    assert not torch.allclose(model(changed, none), model(images, none))
    with pytest.raises(InputError, match="mask must be"):
        model(images, torch.zeros(2, 2, 2, dtype=torch.bool))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        mmseq.create_model("limber_mim_encoder", backbone="test_resnet", image_size=32, patch_size=7)


@pytest.mark.parametrize("kind", ["contrastive", "mim"])
def test_contrastive_and_mim_encoder_tasks_lower_their_loss(corpus, kind):
    task_args = {"root": str(corpus)}
    model_args = {"backbone": "test_resnet", "image_size": 32}
    task = build_task(f"limber_encoder_{kind}", task_args)
    if kind == "contrastive":
        model_args.update(vocab_size=task.info["vocab_size"], pad_id=task.info["pad_id"], text_dim=32,
                          embed_dim=32, text_ffn_dim=64, text_layers=1, dropout=0.0)
    torch.manual_seed(0)
    model = mmseq.create_model(f"limber_{kind}_encoder", **model_args)
    task.prepare_model(model)
    batch = task.collate([task.train_set[i] for i in range(8)])
    if kind == "contrastive":
        assert batch["images"].shape == (8, 3, 32, 32) and int(batch["caption_counts"].sum()) == len(batch["tokens"])
        assert model.tokenizer is not None
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.eval()
    with torch.no_grad():
        before, _ = task.loss(model, batch)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        value, metrics = task.loss(model, batch)
        value.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after, metrics = task.loss(model, batch)
        again, _ = task.loss(model, batch)
    assert again.item() == after.item()  # evaluation scores the same captions / masks every time
    # measured: contrastive 2.34 -> 0.37 (chance ln 8 = 2.08), mim 0.48 -> 0.14
    assert after.item() < 0.8 * before.item(), (before.item(), after.item())
    with pytest.raises(ConfigError, match="trains a limber"):
        task.prepare_model(mmseq.create_model("limber_label_encoder", backbone="test_resnet", image_size=32))


def test_contrastive_task_names_the_vocabulary_the_text_tower_needs(corpus):
    task = build_task("limber_encoder_contrastive", {"root": str(corpus)})
    model = mmseq.create_model("limber_contrastive_encoder", backbone="test_resnet", image_size=32,
                               vocab_size=task.info["vocab_size"] + 1)
    with pytest.raises(ConfigError, match=f"model_args.vocab_size={task.info['vocab_size']}"):
        task.prepare_model(model)


def test_caption_evaluation_reports_clip_score_with_the_contrastive_encoder(corpus, tokenizer, tmp_path):
    from mmseq.tasks.limber import ContrastiveEncoderScorer, clip_scorer, evaluate_captions

    encoder_task = build_task("limber_encoder_contrastive", {"root": str(corpus)})
    torch.manual_seed(0)
    clip = mmseq.create_model("limber_contrastive_encoder", backbone="test_resnet", image_size=32, text_dim=32,
                              embed_dim=16, text_ffn_dim=64, text_layers=1, vocab_size=encoder_task.info["vocab_size"])
    encoder_task.prepare_model(clip)
    mmseq.save_pretrained(clip, tmp_path / "clip")
    scorer = clip_scorer(str(tmp_path / "clip"))
    assert isinstance(scorer, ContrastiveEncoderScorer)
    # CLIPScore by hand: 2.5 * max(cos, 0) of the towers' embeddings, averaged over the pairs
    paths = sorted(str(p) for p in (corpus / "val2014").glob("*.jpg"))[:3]
    captions = ["a red cube", "two blue cones", "a small green table"]
    clip.eval()
    with torch.no_grad():
        pixels = torch.stack([encoder_task_transform(clip, p) for p in paths])
        tokens, lengths = clip.tokenizer.batch_encode(captions)
        cos = (clip.encode_image(pixels) * clip.encode_text(tokens, lengths)).sum(-1)
    assert scorer(paths, captions) == pytest.approx(float((2.5 * cos.clamp(min=0)).mean()), rel=1e-5)
    assert scorer(paths, captions) != pytest.approx(scorer(paths, captions[::-1]), rel=1e-5)

    task = build_task("limber_caption", {"root": str(corpus), "feature_cache": str(tmp_path / "f"), "eval_images": 4,
                                         "eval_questions": 0, "vqa_shots": [0], "max_new_tokens": 5,
                                         "clip_score": str(tmp_path / "clip")})
    model = _model(tokenizer)
    task.prepare_model(model)
    metrics = task.evaluate(model.eval(), "val")
    # the task's score is the scorer's on the same captions of the evaluated images
    data = task.val_set
    images = [ImageFeatures(data.features[i]) for i in range(4)]
    captions = generate_text(model, [[im, "A picture of"] for im in images], tokenizer, max_new_tokens=5)
    assert metrics["clip_score"] == pytest.approx(scorer(data.paths[:4], captions), rel=1e-5)
    assert "clip_score/out-domain" in metrics
    without = evaluate_captions(model, tokenizer, images, data.references[:4], max_new_tokens=5)
    assert "clip_score" not in without
    with pytest.raises(ConfigError, match="neither a checkpoint folder nor an open_clip model"):
        build_task("limber_caption", {"root": str(corpus), "clip_score": "no-such-clip"})
    with pytest.raises(ConfigError, match="not an mmseq checkpoint folder"):
        build_task("limber_caption", {"root": str(corpus), "clip_score": str(tmp_path / "f")})


def encoder_task_transform(model, path):
    from mmseq.data.vision.readers_common import load_image
    from mmseq.tasks.limber import encoder_input_transform

    return encoder_input_transform(model)({"image": load_image(path)}, torch.Generator())["image"]


def _map_loss_and_grad(task, model, batch, seed=1):
    """The task's loss in training mode (map dropout drawn from ``seed``) and the map's gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, _ = task.loss(model, batch)
    loss.backward()
    return loss.detach(), model.prefix.proj.weight.grad.clone(), model.prefix.proj.bias.grad.clone()


def test_per_batch_encoding_gives_the_cached_loss_and_map_gradients(corpus, tokenizer, tmp_path):
    args = {"root": str(corpus), "feature_cache": str(tmp_path / "cache"), "train_prompt": "A picture of"}
    cached = build_task("limber_caption", args)
    per_batch = build_task("limber_caption", {**args, "feature_store": "none"})
    model = _model(tokenizer)
    for task in (cached, per_batch):
        task.prepare_model(model)
    items = [cached.train_set[i] for i in (0, 5, 9)]
    batch = per_batch.collate(items)
    # the collate read and transformed the batch's images (in a loader, the workers do this)
    paths = [per_batch.train_set.paths[it["image"]] for it in items]
    assert torch.equal(batch["images"], prepare_images(model, paths))
    assert "images" not in cached.collate(items)
    loader = torch.utils.data.DataLoader(items, batch_size=3, collate_fn=per_batch.collate, num_workers=1)
    assert torch.equal(next(iter(loader))["images"], batch["images"])
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("prefix.")}

    want = _map_loss_and_grad(cached, model, cached.collate(items))
    got = _map_loss_and_grad(per_batch, model, batch)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert float(got[1].abs().sum()) > 0
    # the encoder ran in eval mode without gradients; nothing frozen changed, nothing was stored
    assert not model.encoder.training and all(p.grad is None for p in model.encoder.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())
    assert per_batch.train_set.features is None
    assert len(list((tmp_path / "cache").glob("train2014.*"))) == 1  # the cached task's file only
    with pytest.raises(InputError, match="needs the batch's images"):
        per_batch.loss(model, cached.collate(items))
    with pytest.raises(ConfigError, match="feature_store"):
        build_task("limber_caption", {**args, "feature_store": "gpu"})


def test_per_batch_and_disk_evaluation_equal_the_cached_one(corpus, tokenizer, tmp_path):
    args = {"root": str(corpus), "eval_images": 4, "eval_questions": 4, "max_new_tokens": 5, "vqa_shots": [0, 2],
            "feature_shard_dtype": "float32"}
    model = _model(tokenizer).eval()
    results = {}
    for store in ("memory", "disk", "none"):
        task = build_task("limber_caption", {**args, "feature_store": store, "feature_cache": str(tmp_path / store)})
        task.prepare_model(model)
        results[store] = task.evaluate(model, "val")
    assert {"cider_d", "vqa_accuracy_2shot", "cider_d/out-domain"} <= set(results["memory"])
    assert results["disk"] == pytest.approx(results["memory"])
    assert results["none"] == pytest.approx(results["memory"])
    assert not (tmp_path / "none").exists()
    # the disk store: shards of the val and (for the shots) train images, nothing else
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "disk").iterdir()) == ["train2014", "val2014"]


def test_sharded_cache_equals_recomputed_is_invalidated_and_reads_lazily(corpus, tokenizer, tmp_path):
    import numpy as np

    from mmseq.data.feature_cache import ShardedFeatures
    from mmseq.tasks.limber import image_stamps, sharded_features

    paths = CaptionSet(corpus, "train2014").paths[:5]
    model = _model(tokenizer)
    fresh = compute_features(model, paths, batch_size=2)  # encoded in the shards' batches: bit for bit
    store = sharded_features(model, paths, tmp_path / "train", shard_size=2)
    folder = tmp_path / f"train.{encoder_fingerprint(model)}"
    assert store.folder == folder and sorted(p.name for p in folder.glob("*.npy")) == [
        "shard_000000.npy", "shard_000001.npy", "shard_000002.npy"]
    # lazily: nothing is open until an item is read, then only that item's shard, as a memory map
    assert store.opened == {}
    assert torch.equal(store[4], fresh[4].half().float())
    assert list(store.opened) == [2] and isinstance(store.opened[2], np.memmap)
    assert torch.equal(store[torch.tensor([3, 0])], fresh[[3, 0]].half().float())
    assert sorted(store.opened) == [0, 1, 2]
    assert np.load(folder / "shard_000000.npy").dtype == np.float16  # half the disk of fp32
    assert not torch.equal(fresh.half().float(), fresh)  # fp16 rounding is visible: the test above can fail

    def never(rows):
        raise AssertionError("a valid shard was computed again")

    again = ShardedFeatures(folder, image_stamps(paths), 2)
    assert again.fill(never) == []  # read back: every shard valid
    assert torch.equal(again[list(range(5))], fresh.half().float())

    # an image rewritten on disk: only its shard is encoded again
    os.utime(paths[3], ns=(time.time_ns(), time.time_ns() + 10**9))
    computed = []

    def counting(rows):
        computed.append(rows)
        return compute_features(model, [paths[i] for i in rows])

    assert ShardedFeatures(folder, image_stamps(paths), 2).fill(counting) == [1] and computed == [[2, 3]]

    # another encoder: another folder, its own features
    changed = _model(tokenizer)
    with torch.no_grad():
        changed.encoder.backbone.layers[0].weight[0, 0, 0, 0] += 1.0
    other = sharded_features(changed, paths, tmp_path / "train", shard_size=2, dtype="float32")
    assert other.folder != folder and len(list(tmp_path.glob("train.*"))) == 2
    assert torch.equal(other[list(range(5))], compute_features(changed, paths, batch_size=2))
    assert not torch.equal(other[list(range(5))], store[list(range(5))])

    with pytest.raises(InputError, match="exceed float16's range"):
        ShardedFeatures(tmp_path / "big", [0, 1], 2).fill(lambda rows: torch.full((2, 3), 1e6))
    with pytest.raises(ConfigError, match="dtype"):
        ShardedFeatures(tmp_path / "x", [0], 2, dtype="bfloat16")
