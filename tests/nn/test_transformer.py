import pytest
import torch

import mmseq
from mmseq.nn.backbone import lengths_to_padding_mask
from mmseq.nn.transformer import LayerSpec, TransformerDecoder, TransformerEncoder


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_cache_steps_equal_full_causal_forward(norm_first):
    torch.manual_seed(0)
    spec = LayerSpec(32, 4, 64, norm_first=norm_first)
    dec = TransformerDecoder(spec, 3, encoder_dim=24).eval()
    x, memory = torch.randn(2, 12, 32), torch.randn(2, 9, 24)
    memory_pad = lengths_to_padding_mask(torch.tensor([9, 6]))
    full = dec(x, None, memory, memory_pad).last_hidden_state
    cache = dec.new_cache()
    steps = [dec(x[:, i : i + 1], None, memory, memory_pad, cache=cache).last_hidden_state for i in range(12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 12


@pytest.mark.parametrize("name", ["text_transformer_tiny", "text_transformer_tiny_preln"])
def test_model_incremental_decoding_equals_teacher_forcing(name):
    torch.manual_seed(0)
    model = mmseq.create_model(name).eval()
    src, src_len = model.encoder_prenet.dummy_inputs(2)
    tgt = torch.randint(3, 32, (2, 8))
    full = model(src, src_len, tgt, torch.tensor([8, 8])).outputs
    enc, enc_len = model.encode(src, src_len)
    mem_pad = lengths_to_padding_mask(enc_len, enc.last_hidden_state.shape[1])
    cache = model.decoder.new_cache()
    steps = [model.decode(tgt[:, i : i + 1], torch.tensor([1, 1]), enc.last_hidden_state, mem_pad, cache=cache)[0]
             for i in range(8)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_encoder_padding_does_not_leak_into_valid_steps():
    torch.manual_seed(0)
    enc = TransformerEncoder(LayerSpec(16, 2, 32), 2, relative_position_distance=8).eval()
    x = torch.randn(1, 5, 16)
    alone = enc(x).last_hidden_state
    padded = torch.cat([x, torch.randn(1, 3, 16) * 100], 1)
    out = enc(padded, lengths_to_padding_mask(torch.tensor([5]), 8)).last_hidden_state
    torch.testing.assert_close(out[:, :5], alone, atol=1e-5, rtol=1e-5)


def test_output_hidden_states_has_input_and_every_layer():
    enc = TransformerEncoder(LayerSpec(16, 2, 32, norm_first=True), 3).eval()
    out = enc(torch.randn(2, 4, 16), output_hidden_states=True)
    assert len(out.hidden_states) == 4
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


def test_layerdrop_skips_layers_in_training_only():
    torch.manual_seed(0)
    enc = TransformerEncoder(LayerSpec(16, 2, 32, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0),
                             4, layerdrop=1.0)
    x = torch.randn(2, 3, 16)
    enc.train()
    # Every layer dropped: only the input layer norm remains.
    torch.testing.assert_close(enc(x).last_hidden_state, enc.layer_norm(x))
    enc.eval()
    assert not torch.allclose(enc(x).last_hidden_state, enc.layer_norm(x))


@pytest.mark.parametrize("name", ["text_transformer_tiny", "text_transformer_tiny_preln"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = mmseq.create_model(name, dropout=0.0, gradient_checkpointing=ckpt).train()
        out = model(**model.dummy_inputs(2)).outputs
        out.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])
