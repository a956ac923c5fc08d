import pytest
import torch

import mmseq
from mmseq.nn import incremental
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.nn.incremental import StepDecoder
from mmseq.nn.linear import Linear
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


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch, padded, with_memory", [(1, False, True), (2, True, True), (3, False, False)])
def test_fused_one_step_path_equals_module_path(norm_first, batch, padded, with_memory):
    # The decode engine (StepDecoder) takes mmseq.nn.incremental's fused path on purpose, without gradients in eval
    # mode; with fast=False it runs the decoder's forward with the cache. Both must equal the full causal forward.
    torch.manual_seed(0)
    spec = LayerSpec(32, 4, 64, norm_first=norm_first)
    dec = TransformerDecoder(spec, 3, encoder_dim=24).eval()
    x, memory = torch.randn(batch, 10, 32), torch.randn(batch, 9, 24) if with_memory else None
    memory_pad = lengths_to_padding_mask(torch.tensor([9, 6, 4][:batch])) if padded else None
    full = dec(x, None, memory, memory_pad).last_hidden_state

    def steps(stepper, cache):
        with torch.no_grad():
            return torch.cat([stepper(x[:, i : i + 1], cache, memory, memory_pad) for i in range(10)], 1)

    module, fused = StepDecoder(dec, fast=False), StepDecoder(dec)
    module_cache, fused_cache = dec.new_cache(), dec.new_cache()
    module_steps, fused_steps = steps(module, module_cache), steps(fused, fused_cache)
    assert not module.uses_fused_path and fused._fused is not None and module._fused is None
    torch.testing.assert_close(fused_steps, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module_steps, full, atol=1e-5, rtol=1e-5)
    assert fused_cache.length == 10


def test_plain_module_path_is_the_default_of_the_decoder_itself():
    # Nothing switches the fast path on implicitly: the decoder's forward with a cache is the module path.
    dec = TransformerDecoder(LayerSpec(16, 2, 32), 2, encoder_dim=16).eval()
    calls = []
    dec.layers[0].feed_forward.intermediate_dense.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        dec(torch.randn(1, 1, 16), None, torch.randn(1, 3, 16), None, cache=dec.new_cache())
    assert calls == [1]


class ScaledLinear(Linear):
    """A wrapped layer the engine does not know (as LoRA or an adapter would be): doubles its output."""

    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.parametrize("how", ["subclass", "hook", "parametrization"])
def test_a_layer_the_engine_does_not_know_falls_back_to_the_module_path(how):
    torch.manual_seed(0)
    dec = TransformerDecoder(LayerSpec(16, 2, 32), 2, encoder_dim=16).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
    layer = dec.layers[1].feed_forward
    if how == "subclass":
        wrapped = ScaledLinear(16, 32)
        wrapped.load_state_dict(layer.intermediate_dense.state_dict())
        layer.intermediate_dense = wrapped
    elif how == "hook":
        layer.intermediate_dense.register_forward_hook(lambda module, args, out: 2 * out)
    else:
        class Double(torch.nn.Module):
            def forward(self, w):
                return 2 * w

        torch.nn.utils.parametrize.register_parametrization(layer.intermediate_dense, "weight", Double())
    full = dec(x, None, memory).last_hidden_state  # the wrapped layer's effect is in the reference
    stepper = StepDecoder(dec)
    assert not stepper.fast
    cache = dec.new_cache()
    with torch.no_grad():
        steps = torch.cat([stepper(x[:, i : i + 1], cache, memory) for i in range(5)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    plain = TransformerDecoder(LayerSpec(16, 2, 32), 2, encoder_dim=16).eval()
    assert StepDecoder(plain).fast


def test_fused_step_with_padded_cached_positions_equals_the_module_path():
    # Decoder-only prompts of different lengths leave padded positions in the cache; both paths mask them.
    torch.manual_seed(0)
    dec = TransformerDecoder(LayerSpec(16, 2, 32, norm_first=True), 2, cross_attention=False).eval()
    prompt = torch.randn(2, 4, 16)
    pad = lengths_to_padding_mask(torch.tensor([4, 2]), 4)
    new = torch.randn(2, 3, 16)
    outs = []
    for fast in (True, False):
        cache, mask = dec.new_cache(), pad
        with torch.no_grad():
            dec(prompt, pad, cache=cache)
            stepper = StepDecoder(dec, fast=fast)
            steps = []
            for i in range(3):
                mask = torch.cat([mask, torch.zeros(2, 1, dtype=torch.bool)], 1)
                steps.append(stepper(new[:, i : i + 1], cache, self_padding_mask=mask))
        outs.append(torch.cat(steps, 1))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    # row 1 alone: its 2 real prompt positions, then the same 3 new ones
    with torch.no_grad():
        alone = dec(torch.cat([prompt[1:, :2], new[1:]], 1)).last_hidden_state[:, 2:]
    torch.testing.assert_close(outs[0][1:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("memory_len, padded, folds", [(6, False, True), (8, True, True), (9, False, False)])
def test_one_row_cross_attention_folds_its_projections_into_a_short_memory(norm_first, memory_len, padded, folds):
    # 4 heads x 8 memory positions <= width 32: the query/output projections are folded into the memory's keys
    # and values (mmseq.nn.incremental.fold_cross_attention); 9 positions are too many to pay off.
    torch.manual_seed(0)
    dec = TransformerDecoder(LayerSpec(32, 4, 64, norm_first=norm_first), 3, encoder_dim=24).eval()
    x, memory = torch.randn(1, 7, 32), torch.randn(1, memory_len, 24)
    memory_pad = lengths_to_padding_mask(torch.tensor([memory_len - 3]), memory_len) if padded else None
    if padded:  # padded positions must not count: make them loud
        memory[:, memory_len - 3:] = 100.0
    full = dec(x, None, memory, memory_pad).last_hidden_state
    cache, stepper = dec.new_cache(), StepDecoder(dec)
    with torch.no_grad():
        steps = torch.cat([stepper(x[:, i : i + 1], cache, memory, memory_pad) for i in range(7)], 1)
    derived = [c.derived for c in cache.cross_attn]
    assert all(isinstance(d, tuple) for d in derived) if folds else all(d is False for d in derived)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    cache.select(torch.tensor([0]))  # the cross caches change: what was folded from them is dropped
    assert all(c.derived is None for c in cache.cross_attn)


def test_fused_path_reorders_rows_and_sees_new_weights_in_a_new_cache():
    torch.manual_seed(0)
    dec = TransformerDecoder(LayerSpec(16, 2, 32), 2, encoder_dim=16).eval()
    x, memory = torch.randn(3, 4, 16), torch.randn(3, 5, 16)
    with torch.no_grad():
        cache, stepper = dec.new_cache(), StepDecoder(dec)
        for i in range(3):
            stepper(x[:, i : i + 1], cache, memory)
        cache.select(torch.tensor([2, 0]))  # rows leave and reorder between steps
        last = stepper(x[[2, 0], 3:4], cache, memory[[2, 0]])
        full = dec(x[[2, 0]], None, memory[[2, 0]]).last_hidden_state
        torch.testing.assert_close(last[:, 0], full[:, 3], atol=1e-5, rtol=1e-5)
        dec.layers[0].self_attn.q_proj.weight.mul_(2)  # a later generation call must use the changed weights
        fresh, stepper = dec.new_cache(), StepDecoder(dec)
        steps = [stepper(x[:, i : i + 1], fresh, memory) for i in range(4)]
        torch.testing.assert_close(torch.cat(steps, 1), dec(x, None, memory).last_hidden_state, atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("min_elements", [0, 1 << 20])  # every matrix kept in bf16 / all upcast (the tiny sizes)
def test_fused_path_keeps_reduced_precision_weights_closer_to_fp32_than_the_module_path(monkeypatch, min_elements):
    monkeypatch.setattr(incremental, "_REDUCED_MIN_ELEMENTS", min_elements)
    # On a CPU a bf16 decoder's fused path keeps the residual stream, layer norms and attention in fp32; only the
    # products (and the feed-forward's hidden layer between them) are bf16.
    torch.manual_seed(0)
    dec = TransformerDecoder(LayerSpec(64, 4, 128), 3, encoder_dim=64).eval()
    x, memory = torch.randn(1, 12, 64), torch.randn(1, 9, 64)
    with torch.no_grad():
        ref = dec(x, None, memory).last_hidden_state
        low = TransformerDecoder(LayerSpec(64, 4, 128), 3, encoder_dim=64).eval()
        low.load_state_dict(dec.state_dict())
        low.to(torch.bfloat16)
        cache, stepper = low.new_cache(), StepDecoder(low)
        fused = torch.cat([stepper(x[:, i : i + 1].bfloat16(), cache, memory.bfloat16()) for i in range(12)], 1)
        module = low(x.bfloat16(), None, memory.bfloat16()).last_hidden_state
    assert fused.dtype == torch.bfloat16
    fused_err, module_err = (fused.float() - ref).abs().mean(), (module.float() - ref).abs().mean()
    assert fused_err < 0.05 and fused_err < module_err


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

