"""Official Point-M2AE and I2P-MAE checkpoints: files written with the official module names (a tree built here after
the official ``Point_M2AE`` / ``I2P_MAE`` / ``Point_M2AE_ModelNet40`` classes, from plain torch and timm modules) load
with every key mapped and none left over; mismatches raise a CheckpointError naming the key."""

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn

import mmseq
from mmseq.errors import CheckpointError
from mmseq.interop.i2p_mae import load_official_checkpoint
from mmseq.nn.points import PointTokenEmbedding

DIMS, DEPTHS, HEADS, GROUPS = (32, 64, 128), (1, 1, 1), 4, (16, 8, 8)  # the *_tiny variants
DECODER = (128, 64)


def _stack(dim, depth):
    holder = nn.Module()  # official Encoder_Block / Decoder_Block: a ``blocks`` ModuleList of timm-layout blocks
    holder.blocks = nn.ModuleList(Block(dim, HEADS, qkv_bias=False) for _ in range(depth))
    return holder


def _pos(dim):
    return nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))


def _h_encoder(norms=True):
    enc = nn.Module()
    enc.token_embed = nn.ModuleList(PointTokenEmbedding(3 if i == 0 else DIMS[i - 1], d) for i, d in enumerate(DIMS))
    enc.encoder_pos_embeds = nn.ModuleList(_pos(d) for d in DIMS)
    enc.encoder_blocks = nn.ModuleList(_stack(d, n) for d, n in zip(DIMS, DEPTHS))
    if norms:
        enc.encoder_norms = nn.ModuleList(nn.LayerNorm(d) for d in DIMS)
    return enc


def _propagation(in_dim, out_dim):
    prop = nn.Module()  # PointNetFeaturePropagation: ConvBNReLU1D fuse + PosExtraction of ConvBNReLURes1D
    prop.fuse = nn.Module()
    prop.fuse.net = nn.Sequential(nn.Conv1d(in_dim, out_dim, 1), nn.BatchNorm1d(out_dim), nn.GELU())
    res = nn.Module()
    res.net1 = nn.Sequential(nn.Conv1d(out_dim, out_dim, 1), nn.BatchNorm1d(out_dim), nn.GELU())
    res.net2 = nn.Sequential(nn.Conv1d(out_dim, out_dim, 1), nn.BatchNorm1d(out_dim))
    prop.extraction = nn.Module()
    prop.extraction.operation = nn.Sequential(res)
    return prop


def official_pretrain(i2p=False, feat_2d=64):
    model = nn.Module()
    model.h_encoder = _h_encoder()
    model.mask_token = nn.Parameter(torch.randn(1, DECODER[0]))
    model.h_decoder = nn.ModuleList(_stack(d, 1) for d in DECODER)
    model.decoder_pos_embeds = nn.ModuleList(_pos(d) for d in DECODER)
    model.token_prop = nn.ModuleList([_propagation(DECODER[0] + DECODER[1], DECODER[1])])
    model.decoder_norm = nn.LayerNorm(DECODER[1])
    if i2p:
        model.rec_head_3d = nn.Conv1d(DECODER[1], 3 * GROUPS[1], 1)
        model.rec_head_2d = nn.Conv1d(DECODER[1], feat_2d * GROUPS[1] * 3, 1)
        model.clip_model = nn.Module()  # the frozen CLIP inside the official I2P_MAE
        model.clip_model.visual = nn.Linear(4, 4)
    else:
        model.rec_head = nn.Conv1d(DECODER[1], 3 * GROUPS[0], 1)
    return model


def official_finetune(num_classes=10):
    model = nn.Module()
    model.h_encoder = _h_encoder(norms=False)
    model.norm = nn.LayerNorm(DIMS[-1])
    model.cls_head_finetune = nn.Sequential(nn.Linear(DIMS[-1], 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(),
                                            nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(),
                                            nn.Linear(256, num_classes))
    return model


def _randomised(module):
    torch.manual_seed(5)
    return {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in module.state_dict().items()}


def _same_values(ours, theirs):
    flat = lambda d: sorted(torch.cat([v.flatten().float() for v in d.values()]).tolist())  # noqa: E731
    assert flat(ours) == flat(theirs)


def test_point_m2ae_checkpoint_maps_every_key(tmp_path):
    state = _randomised(official_pretrain())
    torch.save({"base_model": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}, tmp_path / "m2ae.pth")
    model = load_official_checkpoint(mmseq.create_model("point_m2ae_tiny"), tmp_path / "m2ae.pth")
    ours = model.state_dict()
    assert len(ours) == len(state)
    assert torch.equal(ours["rec_head_3d.weight"], state["rec_head.weight"])
    for key in ("h_encoder.token_embed.1.second_conv.3.weight", "h_encoder.encoder_blocks.2.blocks.0.attn.qkv.weight",
                "token_prop.0.extraction.operation.0.net2.1.running_mean", "mask_token", "h_decoder.1.blocks.0.norm1.bias"):
        assert torch.equal(ours[key], state[key]), key
    _same_values(ours, state)


def test_i2p_mae_checkpoint_drops_clip_and_keeps_our_teacher(tmp_path):
    state = _randomised(official_pretrain(i2p=True))
    torch.save({"base_model": state}, tmp_path / "i2p.pth")
    model = mmseq.create_model("i2p_mae_tiny")
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    load_official_checkpoint(model, tmp_path / "i2p.pth")
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("teacher.")}
    assert len(ours) == len(state) - 2  # clip_model.visual.{weight,bias}
    assert torch.equal(ours["rec_head_2d.bias"], state["rec_head_2d.bias"])
    assert all(torch.equal(v, teacher_before[k]) for k, v in model.teacher.state_dict().items())
    # an official file sized for CLIP's 512-d features into a smaller teacher: the head is named; encoder_only loads
    wide = _randomised(official_pretrain(i2p=True, feat_2d=512))
    torch.save({"base_model": wide}, tmp_path / "clip512.pth")
    with pytest.raises(CheckpointError, match="rec_head_2d.weight.*shape"):
        load_official_checkpoint(mmseq.create_model("i2p_mae_tiny"), tmp_path / "clip512.pth")
    model = load_official_checkpoint(mmseq.create_model("i2p_mae_tiny"), tmp_path / "clip512.pth", encoder_only=True)
    assert torch.equal(model.h_encoder.encoder_norms[2].weight, wide["h_encoder.encoder_norms.2.weight"])


def test_classifier_from_finetune_and_pretrain_files(tmp_path):
    state = _randomised(official_finetune())
    torch.save(state, tmp_path / "scan.pth")
    classifier = load_official_checkpoint(mmseq.create_model("point_m2ae_cls_tiny"), tmp_path / "scan.pth")
    assert len(classifier.state_dict()) == len(state)
    _same_values(classifier.state_dict(), state)

    pretrain = _randomised(official_pretrain())
    torch.save({"base_model": pretrain}, tmp_path / "pre.pth")
    fresh = mmseq.create_model("point_m2ae_cls_tiny")
    head = fresh.cls_head_finetune[0].weight.clone()
    load_official_checkpoint(fresh, tmp_path / "pre.pth")
    assert torch.equal(fresh.h_encoder.token_embed[0].first_conv[0].weight,
                       pretrain["h_encoder.token_embed.0.first_conv.0.weight"])
    assert torch.equal(fresh.cls_head_finetune[0].weight, head)


def test_mismatched_files_name_the_key(tmp_path):
    state = _randomised(official_pretrain())
    torch.save({"base_model": {**state, "h_encoder.cls_token": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="h_encoder.cls_token"):
        load_official_checkpoint(mmseq.create_model("point_m2ae_tiny"), tmp_path / "extra.pth")
    missing = {k: v for k, v in state.items() if k != "decoder_norm.bias"}
    torch.save({"base_model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="decoder_norm.bias"):
        load_official_checkpoint(mmseq.create_model("point_m2ae_tiny"), tmp_path / "missing.pth")
    torch.save({"base_model": state}, tmp_path / "ok.pth")
    with pytest.raises(CheckpointError, match="no official"):
        load_official_checkpoint(mmseq.create_model("point_mae_tiny"), tmp_path / "ok.pth")
