"""HiFi-GAN training: every loss against its formula written out, the differentiable mel against the data's features,
segment alignment, and a few optimizer steps on one batch that lower the discriminator loss and the mel L1."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import mmseq
from mmseq.data.features import SpeechT5LogMel
from mmseq.errors import ConfigError
from mmseq.tasks import build_task
from mmseq.tasks.hifigan import (discriminator_loss, feature_matching_loss, generator_adversarial_loss, judge,
                                 log_mel, random_segment)
from mmseq.vocoders import HifiGanDiscriminator

TINY_GENERATOR = dict(upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lsgan_losses_equal_their_formulas():
    g = torch.Generator().manual_seed(0)
    real = [torch.randn(2, n, generator=g) for n in (5, 7, 3)]
    fake = [torch.randn(2, n, generator=g) for n in (5, 7, 3)]
    expected_d = sum(float(np.mean((1 - r.numpy()) ** 2) + np.mean(f.numpy() ** 2)) for r, f in zip(real, fake))
    expected_g = sum(float(np.mean((1 - f.numpy()) ** 2)) for f in fake)
    assert discriminator_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert generator_adversarial_loss(fake).item() == pytest.approx(expected_g, rel=1e-6)
    # Perfect discriminator / perfect generator: zero loss.
    assert discriminator_loss([torch.ones(2, 3)], [torch.zeros(2, 3)]).item() == 0.0
    assert generator_adversarial_loss([torch.ones(2, 3)]).item() == 0.0


def test_feature_matching_is_the_sum_of_per_layer_mean_absolute_differences():
    g = torch.Generator().manual_seed(1)
    shapes = [[(2, 3, 8), (2, 1, 4)], [(2, 4, 5, 2), (2, 1, 5, 2)]]
    real = [[torch.randn(*s, generator=g) for s in layers] for layers in shapes]
    fake = [[torch.randn(*s, generator=g, requires_grad=True) for s in layers] for layers in shapes]
    expected = sum(float(np.abs(r.numpy() - f.detach().numpy()).mean()) for rs, fs in zip(real, fake)
                   for r, f in zip(rs, fs))
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    real_leaf = torch.randn(2, 3, requires_grad=True)
    feature_matching_loss([[real_leaf]], [[torch.zeros(2, 3, requires_grad=True)]]).backward()
    assert real_leaf.grad is None  # real features are constants


def test_loss_mel_is_the_data_features_and_has_finite_gradients():
    features = SpeechT5LogMel()
    t = torch.arange(8192) / 16000
    wav = torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t), 0.05 * torch.randn(8192)])
    expected, _ = features(wav)
    torch.testing.assert_close(log_mel(features, wav), expected, atol=2e-4, rtol=1e-4)
    # Silence (all-zero frames, every magnitude 0) keeps gradients finite: the segment loss sees such segments.
    silent = torch.zeros(1, 4096, requires_grad=True)
    F.l1_loss(log_mel(features, silent), torch.zeros(1, 17, 80)).backward()
    assert torch.isfinite(silent.grad).all()


def test_random_segments_pair_each_frame_with_its_hop_of_samples():
    audio = torch.arange(256 * 40, dtype=torch.float32)
    mel = torch.arange(41, dtype=torch.float32)[:, None].expand(41, 3)  # frame k holds k
    starts = set()
    for seed in range(30):
        segment = random_segment({"audio": audio, "mel": mel}, 2048, 256, torch.Generator().manual_seed(seed))
        frames, samples = segment["mel"], segment["audio"]
        assert frames.shape == (8, 3) and samples.shape == (2048,)
        start = int(frames[0, 0])
        assert torch.equal(frames[:, 0], torch.arange(start, start + 8, dtype=torch.float32))
        assert samples[0] == 256 * start and samples[-1] == 256 * (start + 8) - 1
        starts.add(start)
    assert len(starts) > 5 and max(starts) <= 40 - 8  # random, and always inside the audio


def test_segments_depend_on_seed_epoch_and_item_only(tone_corpus):
    task = build_task("hifigan", {"corpus": str(tone_corpus), "segment_samples": 1024})
    plan = task.plan(2, seed=5)
    epoch0, epoch1 = plan.batches(0), plan.batches(1)
    assert sorted(i for b in epoch0 for i in b) == [0, 1, 2] and sorted(i for b in epoch1 for i in b) == [3, 4, 5]
    first = task.train_set[4]
    torch.manual_seed(123)  # the global RNG plays no part
    torch.testing.assert_close(task.train_set[4], first, rtol=0, atol=0)
    assert not torch.equal(task.train_set[1]["audio"], first["audio"])  # utterance 1, another epoch: other crop
    batch = task.collate([task.train_set[i] for i in epoch1[0]])
    assert batch["mel"].shape == (len(epoch1[0]), 4, 80) and batch["audio"].shape == (len(epoch1[0]), 1024)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("dev", 2), ("test", 2)):
        lines = []
        for i in range(n):
            seconds = 0.3 if i == 0 else 0.7  # the first one shorter than a segment: padded
            t = np.arange(int(seconds * 16000)) / 16000
            wav = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(t.size))
            sf.write(root / f"{split}{i}.wav", wav.astype(np.float32), 16000)
            lines.append({"id": f"{split}{i}", "audio": f"{split}{i}.wav", "duration": seconds})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def test_task_batches_and_errors(tone_corpus):
    task = build_task("hifigan", {"corpus": str(tone_corpus), "segment_samples": 8192, "discriminator_width": 1 / 32})
    batch = task.collate([task.train_set[i] for i in range(3)])
    assert batch["mel"].shape == (3, 32, 80) and batch["audio"].shape == (3, 8192)  # 0.3 s padded to a segment
    with pytest.raises(ConfigError, match="multiple of the hop"):
        build_task("hifigan", {"corpus": str(tone_corpus), "segment_samples": 5000})
    vocoder = mmseq.create_model("hifigan_tiny", model_in_dim=80)  # 16 samples per frame, not 256
    with pytest.raises(ConfigError, match="hop of 256"):
        task.adversary.generate(vocoder, batch)


def test_a_few_steps_on_one_batch_lower_the_discriminator_loss_and_the_mel_l1(tone_corpus):
    torch.manual_seed(0)
    task = build_task("hifigan", {"corpus": str(tone_corpus), "segment_samples": 2048, "discriminator_width": 1 / 32,
                                  "periods": [2, 3], "scales": 2})
    batch = task.collate([task.train_set[i] for i in range(3)])
    generator = mmseq.create_model("speecht5_hifigan", **TINY_GENERATOR)
    adversary = task.adversary
    opt_g = torch.optim.Adam(generator.parameters(), 2e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(adversary.module.parameters(), 2e-3, betas=(0.5, 0.9))
    d_losses, mel_losses = [], []
    for _ in range(20):
        fake = adversary.generate(generator, batch)
        d_loss, _ = adversary.adversary_loss(adversary.module, batch, fake.detach())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        adversary.module.requires_grad_(False)
        g_loss, metrics = adversary.model_loss(adversary.module, batch, fake)
        adversary.module.requires_grad_(True)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_losses.append(d_loss.item())
        mel_losses.append(metrics["mel_l1"])
    print("discriminator", np.round(d_losses, 3), "mel", np.round(mel_losses, 3))
    assert np.mean(d_losses[-5:]) < 0.8 * np.mean(d_losses[:3]), d_losses
    assert np.mean(mel_losses[-5:]) < 0.8 * np.mean(mel_losses[:3]), mel_losses
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in generator.parameters())


def test_judge_splits_one_pass_into_real_and_fake():
    torch.manual_seed(0)
    d = HifiGanDiscriminator([2], 1, width=1 / 32).eval()  # eval: spectral norm does not step its power iteration
    real, fake = torch.randn(2, 1024), torch.randn(2, 1024)
    r, f = judge(d, real, fake)
    torch.testing.assert_close(r[0].logits, d(real)[0].logits)
    torch.testing.assert_close(f[1].features[2], d(fake)[1].features[2])


def test_exponential_schedule_decays_by_gamma_every_decay_steps():
    from mmseq.train.config import ScheduleConfig
    from mmseq.train.schedules import lr_factor

    cfg = ScheduleConfig(name="exponential", gamma=0.5, decay_steps=3)
    assert [lr_factor(s, cfg, 100) for s in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    warm = ScheduleConfig(name="exponential", gamma=0.5, decay_steps=3, warmup_steps=2)
    assert [lr_factor(s, warm, 100) for s in range(6)] == [0.5, 1, 1, 1, 1, 0.5]
    with pytest.raises(ConfigError, match="gamma"):
        ScheduleConfig(name="exponential", gamma=1.5)
