"""The x-vector speaker encoder: parity with SpeechBrain's own ``EncoderClassifier`` on a folder laid out as
``speechbrain/spkrec-xvect-voxceleb`` (random weights), batched and one by one; the import's errors; and the model's
own guarantees (batch invariance, masked batch norm, reflection at each row's end)."""

from __future__ import annotations

import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.errors import CheckpointError, ConfigError, InputError
from mmseq.models.xvector import masked_batch_norm, reflect_pad

sb = pytest.importorskip("speechbrain")
warnings.filterwarnings("ignore", module="speechbrain")

HYPERPARAMS = """\
# The layout of speechbrain/spkrec-xvect-voxceleb's hyperparams.yaml (10 speakers instead of 7205).
pretrained_path: {folder}
n_mels: 24
out_n_neurons: 10

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: !ref <n_mels>
    activation: !name:torch.nn.LeakyReLU
    tdnn_blocks: 5
    tdnn_channels: [512, 512, 512, 512, 1500]
    tdnn_kernel_sizes: [5, 3, 3, 1, 1]
    tdnn_dilations: [1, 2, 3, 1, 1]
    lin_neurons: 512

classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 512]
    activation: !name:torch.nn.LeakyReLU
    lin_blocks: 1
    lin_neurons: 512
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def _randomise_batch_norms(module: torch.nn.Module, g: torch.Generator) -> None:
    """Non-trivial affine parameters and running statistics, so that the import of every one is tested."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)


@pytest.fixture(scope="module")
def speechbrain_folder(tmp_path_factory):
    """A folder as SpeechBrain's pretrainer lays out ``spkrec-xvect-voxceleb``, written by SpeechBrain itself."""
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.Xvector import Classifier, Xvector
    from speechbrain.processing.features import InputNormalization

    folder = tmp_path_factory.mktemp("spkrec-xvect")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS.format(folder=folder))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    embedding_model, classifier = Xvector(in_channels=24), Classifier(input_shape=[None, None, 512], out_neurons=10)
    _randomise_batch_norms(embedding_model, g)
    _randomise_batch_norms(classifier, g)
    torch.save(embedding_model.state_dict(), folder / "embedding_model.ckpt")
    torch.save(classifier.state_dict(), folder / "classifier.ckpt")
    norm = InputNormalization(norm_type="global", std_norm=False).train()
    norm(0.3 + torch.randn(16, 1, 512, generator=g), torch.ones(16))
    norm._save(folder / "mean_var_norm_emb.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable([f"id{10000 + i}" for i in range(10)])
    encoder.save(folder / "label_encoder.txt")
    return folder


@pytest.fixture(scope="module")
def speechbrain_model(speechbrain_folder, tmp_path_factory):
    from speechbrain.inference.speaker import EncoderClassifier

    return EncoderClassifier.from_hparams(source=str(speechbrain_folder),
                                          savedir=str(tmp_path_factory.mktemp("sb_save"))).eval()


@pytest.fixture()
def no_pooling_noise(monkeypatch):
    """SpeechBrain's StatisticsPooling adds uniform noise in [1e-5, 9e-5] to the mean, at inference too; mmseq adds
    none. Compared without it (with it, the raw x-vectors differ by up to ~1e-4; the test below bounds that)."""
    from speechbrain.nnet.pooling import StatisticsPooling

    monkeypatch.setattr(StatisticsPooling, "_get_gauss_noise",
                        lambda self, shape, device="cpu": torch.zeros(shape, device=device))


def _waveforms(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    t = torch.arange(n) / 16000
    wav = 0.1 * torch.randn(len(lengths), n, generator=g) + 0.2 * torch.sin(2 * torch.pi * 220 * t)
    lengths_t = torch.tensor(lengths)
    return wav.masked_fill(torch.arange(n)[None] >= lengths_t[:, None], 0.0), lengths_t


LENGTHS = [8000, 5037, 2001, 12999]


@torch.no_grad()
def test_embeddings_equal_speechbrain_encode_batch(speechbrain_folder, speechbrain_model, no_pooling_noise):
    ours = mmseq.load(speechbrain_folder)
    assert ours.mmseq_config["builder"] == "xvector_base" and ours.embedding_dim == 512
    wav, lengths = _waveforms(LENGTHS)
    # One by one, as SpeechT5's prep scripts and transformers' examples call it, then L2-normalised as they do.
    theirs = torch.cat([speechbrain_model.encode_batch(wav[i : i + 1, :n])[:, 0]
                        for i, n in enumerate(lengths.tolist())])
    expected = F.normalize(theirs, dim=-1)
    batched = ours.embed(wav, lengths)  # every row as if alone
    assert batched.shape == (4, 512)
    torch.testing.assert_close(ours.xvectors(wav, lengths), theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(batched, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(4))
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(ours.embed(wav[i, :n]), expected[i : i + 1], rtol=0, atol=1e-5)
    # SpeechBrain's own padded batch (relative lengths) is not batch-invariant; batching="speechbrain" is it.
    their_batch = speechbrain_model.encode_batch(wav, lengths.float() / wav.shape[1])[:, 0]
    assert (their_batch - theirs).abs().max() > 1e-2
    torch.testing.assert_close(ours.xvectors(wav, lengths, batching="speechbrain"), their_batch, rtol=0, atol=1e-5)
    # encode_batch(normalize=True) subtracts the global embedding mean (mean_var_norm_emb.ckpt).
    centred = speechbrain_model.encode_batch(wav[:1], normalize=True)[:, 0]
    torch.testing.assert_close(ours.embed(wav[:1], center=True), F.normalize(centred, dim=-1), rtol=0, atol=1e-5)


@torch.no_grad()
def test_classifier_and_labels_equal_speechbrain(speechbrain_folder, speechbrain_model, no_pooling_noise):
    ours = mmseq.load(speechbrain_folder)
    assert ours.classifier.num_classes == 10 and ours.labels == [f"id{10000 + i}" for i in range(10)]
    wav, lengths = _waveforms(LENGTHS[:2], seed=1)
    for i, n in enumerate(lengths.tolist()):
        log_probs, _, index, labels = speechbrain_model.classify_batch(wav[i : i + 1, :n])
        mine = F.log_softmax(ours(wav[i : i + 1, :n]), dim=-1)
        torch.testing.assert_close(mine, log_probs.reshape(1, -1), rtol=0, atol=1e-5)
        assert ours.labels[int(mine.argmax())] == labels[0]


@torch.no_grad()
def test_pooling_noise_of_speechbrain_stays_small(speechbrain_folder, speechbrain_model):
    # With SpeechBrain's noise left in, the measured gap is what it adds (reported in the module notes).
    ours = mmseq.load(speechbrain_folder)
    wav, lengths = _waveforms([16000])
    gap = (ours.embed(wav) - F.normalize(speechbrain_model.encode_batch(wav)[:, 0], dim=-1)).abs().max()
    assert gap < 1e-4


def test_imported_model_round_trips_through_an_mmseq_checkpoint(speechbrain_folder, tmp_path):
    ours = mmseq.load(speechbrain_folder)
    mmseq.save_pretrained(ours, tmp_path / "xvector")
    again = mmseq.load(tmp_path / "xvector").eval()
    wav, lengths = _waveforms(LENGTHS[:3])
    with torch.no_grad():
        assert torch.equal(again.embed(wav, lengths, center=True), ours.embed(wav, lengths, center=True))


def test_folder_without_classifier_or_hyperparams_uses_the_published_sizes(speechbrain_folder, tmp_path):
    (tmp_path / "embedding_model.ckpt").write_bytes((speechbrain_folder / "embedding_model.ckpt").read_bytes())
    model = mmseq.load(tmp_path)
    assert model.classifier is None and model.writes == "embedding"
    wav, lengths = _waveforms(LENGTHS[:2])
    with torch.no_grad():
        torch.testing.assert_close(model.embed(wav, lengths), mmseq.load(speechbrain_folder).embed(wav, lengths))


def test_unsupported_or_untrusted_folders_are_refused(speechbrain_folder, tmp_path):
    ecapa = tmp_path / "ecapa"
    ecapa.mkdir()
    (ecapa / "embedding_model.ckpt").write_bytes((speechbrain_folder / "embedding_model.ckpt").read_bytes())
    (ecapa / "hyperparams.yaml").write_text(textwrap.dedent("""\
        embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
            input_size: 80
        """))
    with pytest.raises(CheckpointError, match="embedding_model.*Xvector.*ECAPA_TDNN"):
        mmseq.load(ecapa)
    deltas = tmp_path / "deltas"
    deltas.mkdir()
    (deltas / "embedding_model.ckpt").write_bytes((speechbrain_folder / "embedding_model.ckpt").read_bytes())
    text = HYPERPARAMS.format(folder=deltas).replace("    n_mels: !ref <n_mels>\n\nmean_var_norm:",
                                                     "    n_mels: !ref <n_mels>\n    deltas: True\n\nmean_var_norm:")
    (deltas / "hyperparams.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="deltas=True is not supported"):
        mmseq.load(deltas)
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "embedding_model.ckpt").write_bytes((speechbrain_folder / "embedding_model.ckpt").read_bytes())
    (wide / "hyperparams.yaml").write_text(HYPERPARAMS.format(folder=wide).replace("[512, 512, 512, 512, 1500]",
                                                                                  "[256, 512, 512, 512, 1500]"))
    with pytest.raises(CheckpointError, match="weights do not fit the hyperparams"):
        mmseq.load(wide)
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    torch.save({"blocks.0.conv.weight": torch.zeros(1), "payload": ConfigError("not a tensor")},
               untrusted / "embedding_model.ckpt")
    with pytest.raises(CheckpointError, match="weights_only"):
        mmseq.load(untrusted)


# --- the model's own guarantees ----------------------------------------------------------------------------------

def test_every_row_of_a_padded_batch_is_embedded_as_if_alone():
    torch.manual_seed(0)
    model = mmseq.create_model("xvector_tiny").eval()
    wav, lengths = _waveforms([8000, 3217, 161, 12000])  # 161 samples: 2 frames, shorter than the reflections
    with torch.no_grad():
        batched = model.embed(wav, lengths)
        single = torch.cat([model.embed(wav[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
        junk = wav.clone()
        junk[torch.arange(wav.shape[1])[None] >= lengths[:, None]] = 5.0  # whatever lies past a row's end
        padded_junk = model.embed(junk, lengths)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
    torch.testing.assert_close(padded_junk, batched, rtol=0, atol=1e-6)
    assert torch.isfinite(batched).all()


def test_reflect_pad_reflects_at_each_rows_own_end():
    x = torch.randn(3, 2, 9)
    lengths = torch.tensor([9, 6, 3])
    out = reflect_pad(x, lengths, 2)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[i, :, : n + 4], F.pad(x[i : i + 1, :, :n], (2, 2), mode="reflect")[0])
    one = reflect_pad(x, torch.tensor([1, 1, 1]), 3)  # a one-step row repeats its only value
    assert torch.equal(one[:, :, :7], x[:, :, :1].expand(-1, -1, 7))


def test_masked_batch_norm_takes_statistics_over_valid_steps_only():
    torch.manual_seed(0)
    norm, reference = torch.nn.BatchNorm1d(4).train(), torch.nn.BatchNorm1d(4).train()
    x, lengths = torch.randn(3, 4, 7), torch.tensor([7, 2, 5])
    out = masked_batch_norm(norm, x, lengths)
    valid = torch.cat([x[i, :, :n] for i, n in enumerate(lengths.tolist())], dim=1)  # [C, N]
    expected = reference(valid.T).T
    got = torch.cat([out[i, :, :n] for i, n in enumerate(lengths.tolist())], dim=1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)
    assert out[1, :, 2:].abs().sum() == 0


def test_configuration_and_input_errors_name_the_problem():
    with pytest.raises(ConfigError, match="kernels must be odd"):
        mmseq.create_model("xvector_tiny", kernels=(4, 3, 3, 1, 1))
    with pytest.raises(ConfigError, match="one entry per block"):
        mmseq.create_model("xvector_tiny", dilations=(1, 2))
    with pytest.raises(ConfigError, match="feature_norm"):
        mmseq.create_model("xvector_tiny", feature_norm="cmvn")
    model = mmseq.create_model("xvector_tiny").eval()
    with pytest.raises(InputError, match="lengths"):
        model.embed(torch.zeros(2, 100), torch.tensor([100, 0]))
    with pytest.raises(InputError, match="floating waveforms"):
        model.embed(torch.zeros(2, 3, 100))
    with pytest.raises(ConfigError, match="batching"):
        model.embed(torch.zeros(1, 1600), batching="padded")
