"""LiMBeR: only the linear map trains, the maps' shapes, and the two LM paths against the LMs' own forwards."""

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.errors import ConfigError
from mmseq.models.limber import (ImagePrefix, MmseqCausalLM, build_image_encoder, limber_from_pretrained)

TIMM_BN_ENCODER = {"library": "timm", "name": "test_resnet", "features": "pooled", "image_size": 32}


def _tiny_gpt2(folder):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    return model


def test_only_the_map_gets_gradients_and_frozen_weights_stay_bit_identical():
    torch.manual_seed(0)
    model = mmseq.create_model("limber", encoder=TIMM_BN_ENCODER, prefix_length=2)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"prefix.proj.weight", "prefix.proj.bias"}
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("prefix.")}
    map_before = model.prefix.proj.weight.detach().clone()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, betas=(0.9, 0.95))
    model.train()
    assert model.prefix.training and not model.encoder.training and not model.lm.training
    assert not any(m.training for m in model.encoder.modules()) and not any(m.training for m in model.lm.modules())
    for step in range(3):
        inputs = model.dummy_inputs(2)
        out = model(**inputs)
        loss = F.cross_entropy(out.token_logits().transpose(1, 2), inputs["tokens"])
        optim.zero_grad()
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("prefix."))
        optim.step()
    after = model.state_dict()
    # batch-norm running statistics of the frozen encoder included: it never left eval mode
    assert any("running_mean" in k for k in frozen)
    for key, value in frozen.items():
        assert torch.equal(after[key], value), key
    assert not torch.equal(model.prefix.proj.weight, map_before)


def test_pooled_map_reshapes_one_linear_and_grid_map_projects_every_token():
    torch.manual_seed(0)
    pooled = ImagePrefix(6, 4, prefix_length=3).eval()
    x = torch.randn(2, 1, 6)
    hidden, lengths = pooled(x)
    expected = (x[:, 0] @ pooled.proj.weight.T + pooled.proj.bias).view(2, 3, 4)
    torch.testing.assert_close(hidden, expected)
    assert lengths.tolist() == [3, 3]
    grid = ImagePrefix(6, 4, prefix_length=None).eval()
    tokens = torch.randn(2, 5, 6)
    torch.testing.assert_close(grid(tokens)[0], tokens @ grid.proj.weight.T + grid.proj.bias)
    grid.train()
    dropped = grid(torch.randn(64, 5, 6))[0]
    assert 0.05 < float((dropped == 0).float().mean()) < 0.15  # image-embedding dropout 0.1


def test_mmseq_lm_driven_by_embeddings_equals_its_own_forward():
    torch.manual_seed(0)
    lm = mmseq.create_model("text_lm_tiny").eval()
    adapter = MmseqCausalLM(lm).eval()
    tokens = torch.randint(3, 32, (2, 6))
    lengths = torch.tensor([6, 4])
    tokens[1, 4:] = 1
    own = lm(tokens, lengths).outputs
    padding = torch.arange(6)[None] >= lengths[:, None]
    mine = adapter(adapter.embed_tokens(tokens), torch.arange(6)[None].expand(2, -1), padding)
    torch.testing.assert_close(mine[0], own[0])
    torch.testing.assert_close(mine[1, :4], own[1, :4])


def test_transformers_lm_path_equals_the_lms_own_forward(tmp_path):
    from transformers import GPT2LMHeadModel

    gpt2 = _tiny_gpt2(tmp_path / "gpt2")
    model = limber_from_pretrained(TIMM_BN_ENCODER, tmp_path / "gpt2", prefix_length=2).eval()
    assert str(tmp_path) not in str(model.mmseq_config)  # a spec, never a path
    inputs = model.dummy_inputs(2)  # row 1 is one token shorter: padded
    with torch.no_grad():
        out = model(**inputs).outputs
        embeds = torch.cat([model.image_embeddings(inputs["images"]), gpt2.transformer.wte(inputs["tokens"])], 1)
        mask = torch.tensor([[1] * 7, [1] * 6 + [0]])
        reference = gpt2(inputs_embeds=embeds, attention_mask=mask).logits
    torch.testing.assert_close(out[0], reference[0])
    torch.testing.assert_close(out[1, :6], reference[1, :6])
    # through an mmseq checkpoint: the transformers config and every weight come back
    mmseq.save_pretrained(model, tmp_path / "limber")
    loaded = mmseq.load(tmp_path / "limber").eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).outputs, out)
    assert isinstance(loaded.lm.model, GPT2LMHeadModel)


def test_timm_weights_come_from_a_local_file(tmp_path):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    encoder = build_image_encoder(TIMM_BN_ENCODER, tmp_path / "weights.pth")
    for name, value in encoder.backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[name]), name
    assert not any(p.requires_grad for p in encoder.parameters())


def test_open_clip_resnet_grid_is_layer4_before_the_attention_pool(tmp_path):
    import open_clip

    torch.manual_seed(2)
    clip = open_clip.create_model("RN50", force_image_size=64)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    encoder = build_image_encoder({"library": "open_clip", "name": "RN50", "features": "grid", "image_size": 64},
                                  tmp_path / "clip.pt")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        visual = clip.visual.eval()
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
    assert encoder.output_dim == 2048
    torch.testing.assert_close(encoder(images), x.flatten(2).transpose(1, 2))


def test_bad_specs_are_config_errors():
    with pytest.raises(ConfigError, match="prefix_length=None"):
        mmseq.create_model("limber", encoder={"library": "mmseq", "name": "conv_tiny", "features": "grid"})
    with pytest.raises(ConfigError, match="library"):
        mmseq.create_model("limber", encoder={"library": "torchvision", "name": "resnet18"})
    with pytest.raises(ConfigError, match="imagesize"):
        mmseq.create_model("limber", encoder={"library": "mmseq", "name": "conv_tiny", "imagesize": 3})
