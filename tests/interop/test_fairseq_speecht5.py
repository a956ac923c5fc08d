"""fairseq SpeechT5 pre-training checkpoints (``speecht5_base.pt`` layout): a file written here with the official
code's key names (spelled out below from microsoft/SpeechT5's modules, not from the importer's rules) loads with
every key mapped, none missing, none left over; it fine-tunes through ``init_from``; untrusted content is refused."""

from __future__ import annotations

import argparse
import pickle
import sys
import types

import pytest
import torch

import mmseq
from mmseq.errors import CheckpointError
from mmseq.interop.fairseq_speecht5 import DROPPED, parse_conv_layers, read_checkpoint
from mmseq.models.speecht5_pretrain import FINETUNE_PREFIXES
from mmseq.train.config import InitFromConfig
from mmseq.train.init import init_from

D, FFN, HEADS, ENC, DEC, VOCAB, MELS, UNITS = 32, 64, 4, 2, 2, 81, 16, 7
CONV = [(32, 400, 320)]


def official_state(g: torch.Generator) -> dict[str, torch.Tensor]:
    """A tiny model's state under the official names (SpeechT5/speecht5/models/modules/*)."""
    s: dict[str, torch.Tensor] = {}

    def add(name: str, *shape: int) -> None:
        s[name] = torch.randn(*shape, generator=g) * 0.1

    p = "speech_encoder_prenet."
    for i, (c, k, _) in enumerate(CONV):
        add(f"{p}feature_extractor.conv_layers.{i}.0.weight", c, 1 if i == 0 else CONV[i - 1][0], k)
    add(f"{p}feature_extractor.conv_layers.0.2.weight", CONV[0][0])
    add(f"{p}feature_extractor.conv_layers.0.2.bias", CONV[0][0])
    add(f"{p}layer_norm.weight", CONV[-1][0]), add(f"{p}layer_norm.bias", CONV[-1][0])
    add(f"{p}post_extract_proj.weight", D, CONV[-1][0]), add(f"{p}post_extract_proj.bias", D)
    add(f"{p}mask_emb", D)
    add(f"{p}pos_conv.0.bias", D), add(f"{p}pos_conv.0.weight_g", 1, 1, 16), add(f"{p}pos_conv.0.weight_v", D, D // 2, 16)
    s[f"{p}embed_positions._float_tensor"] = torch.zeros(1)
    add("text_encoder_prenet.encoder_prenet.0.weight", VOCAB, D)
    s["text_encoder_prenet.encoder_prenet.1.alpha"] = torch.tensor(1.0)
    for i in range(ENC):
        q = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add(f"{q}self_attn.{proj}.weight", D, D), add(f"{q}self_attn.{proj}.bias", D)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            add(f"{q}{norm}.weight", D), add(f"{q}{norm}.bias", D)
        add(f"{q}fc1.weight", FFN, D), add(f"{q}fc1.bias", FFN), add(f"{q}fc2.weight", D, FFN), add(f"{q}fc2.bias", D)
    add("encoder.layer_norm.weight", D), add("encoder.layer_norm.bias", D)
    add("encoder.pos_emb.pe_k.weight", 2 * 16, D // HEADS)
    add("encoder.proj.weight", VOCAB, D), add("encoder.proj.bias", VOCAB)
    s["encoder.version"] = torch.tensor([3.0])
    for i in range(DEC):
        q = f"decoder.layers.{i}."
        for attn in ("self_attn", "encoder_attn"):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                add(f"{q}{attn}.{proj}.weight", D, D), add(f"{q}{attn}.{proj}.bias", D)
        for norm in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            add(f"{q}{norm}.weight", D), add(f"{q}{norm}.bias", D)
        add(f"{q}fc1.weight", FFN, D), add(f"{q}fc1.bias", FFN), add(f"{q}fc2.weight", D, FFN), add(f"{q}fc2.bias", D)
    add("decoder.pos_emb.pe_k.weight", 2 * 16, D // HEADS)
    s["decoder.version"] = torch.tensor([3.0])
    p = "speech_decoder_prenet."
    add(f"{p}decoder_prenet.0.0.prenet.0.0.weight", 16, MELS), add(f"{p}decoder_prenet.0.0.prenet.0.0.bias", 16)
    add(f"{p}decoder_prenet.0.0.prenet.1.0.weight", 16, 16), add(f"{p}decoder_prenet.0.0.prenet.1.0.bias", 16)
    add(f"{p}decoder_prenet.0.1.weight", D, 16), add(f"{p}decoder_prenet.0.1.bias", D)
    s[f"{p}decoder_prenet.1.alpha"] = torch.tensor(1.0)
    add(f"{p}spkembs_layer.0.weight", D, D + 8), add(f"{p}spkembs_layer.0.bias", D)
    add("text_decoder_prenet.embed_tokens.weight", VOCAB, D)
    s["text_decoder_prenet.embed_positions._float_tensor"] = torch.zeros(1)
    p = "speech_decoder_postnet."
    add(f"{p}feat_out.weight", MELS * 2, D), add(f"{p}feat_out.bias", MELS * 2)
    add(f"{p}prob_out.weight", 2, D), add(f"{p}prob_out.bias", 2)
    for i in range(5):
        c_in, c_out = (MELS if i == 0 else 16), (MELS if i == 4 else 16)
        add(f"{p}postnet.postnet.{i}.0.weight", c_out, c_in, 5)
        for stat in ("weight", "bias", "running_mean"):
            add(f"{p}postnet.postnet.{i}.1.{stat}", c_out)
        s[f"{p}postnet.postnet.{i}.1.running_var"] = torch.rand(c_out, generator=g) + 0.5
        s[f"{p}postnet.postnet.{i}.1.num_batches_tracked"] = torch.tensor(17)
    s["text_decoder_postnet.output_projection.weight"] = s["text_decoder_prenet.embed_tokens.weight"]  # shared
    add("hubert_layer.final_proj.weight", 256, D), add("hubert_layer.final_proj.bias", 256)
    add("hubert_layer.label_embs_concat", UNITS, 256)
    add("quantizer.vars", 1, 2 * 100, D // 2)
    add("quantizer.weight_proj.weight", 200, D), add("quantizer.weight_proj.bias", 200)
    return s


def _fake_fairseq_meter():
    """A class pickled under fairseq's module name (fairseq itself is not installed)."""
    module = types.ModuleType("fairseq.logging.meters")

    class AverageMeter:
        def __init__(self):
            self.val, self.sum, self.count = 1.5, 3.0, 2

    AverageMeter.__module__ = "fairseq.logging.meters"
    AverageMeter.__qualname__ = "AverageMeter"
    module.AverageMeter = AverageMeter
    return module, AverageMeter


@pytest.fixture
def checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = official_state(g)
    module, meter = _fake_fairseq_meter()
    fakes = {"fairseq": types.ModuleType("fairseq"), "fairseq.logging": types.ModuleType("fairseq.logging"),
             "fairseq.logging.meters": module}
    sys.modules.update(fakes)
    try:
        cfg = {"common": {"seed": 1337}, "task": argparse.Namespace(t5_task="pretrain", label_rates=50),
               "model": argparse.Namespace(conv_feature_layers="[(32,400,320)]", decoder_attention_heads=HEADS,
                                           dropout=0.1, attention_dropout=0.1, activation_dropout=0.0,
                                           encoder_layerdrop=0.05, decoder_layerdrop=0.0, logit_temp=0.1,
                                           mask_prob=0.8, hubert_mask_length=10, codebook_prob=0.1,
                                           latent_temp="(2,0.5,0.999995)", use_codebook=True)}
        path = tmp_path / "speecht5_base.pt"
        torch.save({"model": state, "cfg": cfg, "args": None,
                    "optimizer_history": [{"criterion_name": "SpeechT5Criterion", "num_updates": 4000}],
                    "extra_state": {"metrics": {"train": {"loss": meter()}}}}, path)
    finally:
        for name in fakes:
            del sys.modules[name]
    return path, state


def test_every_key_maps_none_missing_none_left_over(checkpoint):
    path, state = checkpoint
    model = mmseq.load(path)
    assert model.mmseq_config["builder"] == "speecht5_pretrain_base"
    ours = model.state_dict()
    # each official tensor is found, unchanged, under the mmseq name of the same module
    pairs = {
        "speech_encoder_prenet.feature_encoder.conv_layers.0.conv.weight":
            "speech_encoder_prenet.feature_extractor.conv_layers.0.0.weight",
        "speech_encoder_prenet.feature_encoder.conv_layers.0.layer_norm.bias":
            "speech_encoder_prenet.feature_extractor.conv_layers.0.2.bias",
        "speech_encoder_prenet.pos_conv_embed.conv.parametrizations.weight.original1":
            "speech_encoder_prenet.pos_conv.0.weight_v",
        "encoder.layers.1.attention.k_proj.weight": "encoder.layers.1.self_attn.k_proj.weight",
        "encoder.layers.0.layer_norm.weight": "encoder.layers.0.self_attn_layer_norm.weight",
        "decoder.layers.1.feed_forward.output_dense.bias": "decoder.layers.1.fc2.bias",
        "speech_decoder_prenet.layers.1.weight": "speech_decoder_prenet.decoder_prenet.0.0.prenet.1.0.weight",
        "speech_decoder_prenet.speaker_embeds_layer.weight": "speech_decoder_prenet.spkembs_layer.0.weight",
        "speech_decoder_postnet.layers.3.batch_norm.running_var": "speech_decoder_postnet.postnet.postnet.3.1.running_var",
        "text_encoder_prenet.embed_tokens.weight": "text_encoder_prenet.encoder_prenet.0.weight",
        "label_embs": "hubert_layer.label_embs_concat",
        "quantizer.vars": "quantizer.vars",
    }
    for mine, official in pairs.items():
        assert torch.equal(ours[mine], state[official]), mine
    # every official tensor went somewhere: the values in the model are exactly the file's non-dropped tensors
    import re

    kept = {k: v for k, v in state.items() if not any(re.fullmatch(p, k) for p in DROPPED)}
    model_values = {(tuple(v.shape), float(v.float().sum())) for v in ours.values()}
    assert all((tuple(v.shape), float(v.float().sum())) in model_values for v in kept.values())
    assert len(kept) == len(ours) - 1  # one tensor per model key (the tied LM head on both sides); num_updates is ours
    assert int(model.quantizer.num_updates) == 4000
    assert math_close(model.quantizer.temperature, 2.0 * 0.999995**4000)
    args = model.mmseq_config["args"]
    assert args["conv_strides"] == [320] or tuple(args["conv_strides"]) == (320,)
    assert args["encoder_heads"] == HEADS and args["relative_position_distance"] == 16 and args["num_units"] == UNITS
    assert args["speaker_embedding_dim"] == 8 and args["encoder_layerdrop"] == 0.05


def math_close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def test_a_missing_or_extra_key_is_named(checkpoint, tmp_path):
    path, _ = checkpoint
    states = read_checkpoint(path)  # the meters come back as inert placeholders
    assert states["extra_state"]["metrics"]["train"]["loss"]["__state__"] == {"val": 1.5, "sum": 3.0, "count": 2}
    del states["extra_state"]
    del states["model"]["decoder.layers.1.fc1.bias"]
    states["model"]["decoder.layers.1.extra.weight"] = torch.zeros(2)
    torch.save(states, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"missing \['decoder.layers.1.fc1.bias'\].*unexpected "
                                              r"\['decoder.layers.1.extra.weight'\]"):
        mmseq.load(tmp_path / "broken.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this would run",))


def test_untrusted_globals_are_refused(tmp_path):
    state = {"model": {"speech_encoder_prenet.mask_emb": torch.zeros(2)}, "cfg": {"x": Evil()}}
    path = tmp_path / "evil.pt"
    torch.save(state, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="untrusted global.*print"):
        mmseq.load(path)


def test_it_fine_tunes_asr_with_init_from(checkpoint):
    path, state = checkpoint
    asr = mmseq.create_model("speecht5_asr_base", vocab_size=VOCAB, dim=D, encoder_layers=ENC, encoder_heads=HEADS,
                             encoder_ffn_dim=FFN, decoder_layers=DEC, decoder_heads=HEADS, decoder_ffn_dim=FFN,
                             conv_dims=(32,), conv_kernels=(400,), conv_strides=(320,), pos_conv_kernel=16,
                             pos_conv_groups=2, relative_position_distance=16, ctc=True, encoder_layerdrop=0.0,
                             decoder_layerdrop=0.0)
    keep = ["speech_encoder_prenet.*", "encoder.*", "decoder.*", "text_decoder_prenet.*", "text_decoder_postnet.*"]
    report = init_from(asr, InitFromConfig(checkpoint=str(path), include=keep, prefix_map=FINETUNE_PREFIXES["asr"],
                                           strict=False))
    assert report.unexpected == [] and report.missing == ["encoder_postnet.proj.bias", "encoder_postnet.proj.weight"]
    assert torch.equal(asr.encoder.layers[0].attention.q_proj.weight, state["encoder.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(asr.decoder_prenet.embed_tokens.weight, state["text_decoder_prenet.embed_tokens.weight"])
    # and it trains: one optimizer step on a teacher-forced batch lowers that batch's loss
    from mmseq.tasks.speecht5.text import speech_to_text_loss

    g = torch.Generator().manual_seed(0)
    batch = {"audio": torch.randn(2, 8000, generator=g) * 0.1, "audio_lengths": torch.tensor([8000, 7000]),
             "dec_in": torch.tensor([[2, 5, 6, 7], [2, 8, 9, 1]]), "target": torch.tensor([[5, 6, 7, 2], [8, 9, 2, 1]]),
             "target_lengths": torch.tensor([4, 3])}
    asr.train()
    opt = torch.optim.Adam(asr.parameters(), lr=1e-3)
    torch.manual_seed(0)
    before, _ = speech_to_text_loss(asr, batch, blank_id=VOCAB - 1)
    before.backward()
    opt.step()
    torch.manual_seed(0)
    after, _ = speech_to_text_loss(asr, batch, blank_id=VOCAB - 1)
    assert after.item() < before.item()


def test_conv_feature_layers_are_read_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == [
        (512, 10, 5), *[(512, 3, 2)] * 4, (512, 2, 2), (512, 2, 2)]
    with pytest.raises(CheckpointError):
        parse_conv_layers("__import__('os')")
