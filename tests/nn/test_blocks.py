"""Encoder/decoder layers and stacks: residual wiring, permutation equivariance, cached decoding."""

import pytest
import torch

from attnkit.nn import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    LayerConfig,
    RotaryEmbedding,
    causal_mask,
    sinusoidal_positions,
)

CFG = LayerConfig(d_model=16, n_heads=4, d_ff=32, activation="relu")


def _randomise_norms(module):
    """LayerNorm starts as the identity affine map; random affine parameters make wiring visible."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p))
    return module


@pytest.mark.parametrize("pre_norm", [True, False])
def test_encoder_layer_wiring(pre_norm):
    cfg = LayerConfig(d_model=16, n_heads=4, d_ff=32, pre_norm=pre_norm)
    layer = _randomise_norms(EncoderLayer(cfg)).eval()
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    attn = lambda h: layer.attn(h, mask=pad)[0]  # noqa: E731
    if pre_norm:  # x + f(norm(x))
        h = x + attn(layer.attn_norm(x))
        expected = h + layer.ffn(layer.ffn_norm(h))
    else:  # norm(x + f(x)), Vaswani et al. 2017 §3.1
        h = layer.attn_norm(x + attn(x))
        expected = layer.ffn_norm(h + layer.ffn(h))
    y, _ = layer(x, mask=pad)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_decoder_layer_wiring_with_cross_attention(pre_norm):
    cfg = LayerConfig(d_model=16, n_heads=4, d_ff=32, pre_norm=pre_norm)
    layer = _randomise_norms(DecoderLayer(cfg, cross=True)).eval()
    x, ctx = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    ctx_mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])[:, None, None, :]
    self_attn = lambda h: layer.attn(h, is_causal=True)[0]  # noqa: E731
    cross_attn = lambda h: layer.cross_attn(h, context=ctx, mask=ctx_mask)[0]  # noqa: E731
    if pre_norm:
        h = x + self_attn(layer.attn_norm(x))
        h = h + cross_attn(layer.cross_norm(h))
        expected = h + layer.ffn(layer.ffn_norm(h))
    else:
        h = layer.attn_norm(x + self_attn(x))
        h = layer.cross_norm(h + cross_attn(h))
        expected = layer.ffn_norm(h + layer.ffn(h))
    y, _, _ = layer(x, context=ctx, context_mask=ctx_mask)
    torch.testing.assert_close(y, expected)


def test_encoder_without_positions_is_permutation_equivariant():
    enc = Encoder(CFG, n_layers=2).eval()
    x = torch.randn(2, 7, 16)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, 5:] = False
    perm = torch.randperm(7)
    y = enc(x, mask=pad[:, None, None, :]).hidden
    y_perm = enc(x[:, perm], mask=pad[:, perm][:, None, None, :]).hidden
    torch.testing.assert_close(y_perm, y[:, perm], atol=1e-5, rtol=1e-5)


def test_encoder_with_positions_is_not_permutation_equivariant():
    enc = Encoder(CFG, n_layers=2).eval()
    x = torch.randn(1, 7, 16)
    perm = torch.tensor([6, 0, 1, 2, 3, 4, 5])
    pe = sinusoidal_positions(7, 16)
    y = enc(x + pe).hidden
    y_perm = enc(x[:, perm] + pe).hidden
    assert not torch.allclose(y_perm, y[:, perm], atol=1e-3)
    rope = RotaryEmbedding(4)(torch.arange(7)[None])
    assert not torch.allclose(enc(x[:, perm], rotary=rope).hidden, enc(x, rotary=rope).hidden[:, perm], atol=1e-3)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("pre_norm", [True, False])
def test_cached_decoder_matches_full_recompute(cross, pre_norm):
    cfg = LayerConfig(d_model=16, n_heads=4, d_ff=32, n_kv_heads=2, pre_norm=pre_norm)
    dec = Decoder(cfg, n_layers=2, cross=cross).eval()
    T = 6
    x, ctx = torch.randn(2, T, 16), torch.randn(2, 5, 16) if cross else None
    ctx_mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])[:, None, None, :] if cross else None
    full = dec(x, context=ctx, context_mask=ctx_mask).hidden
    cache = dec.new_cache(T)
    steps = [dec(x[:, :3], cache=cache, context=ctx, context_mask=ctx_mask).hidden]
    for t in range(3, T):
        steps.append(dec(x[:, t:t + 1], cache=cache, context=ctx if t == 3 else None, context_mask=ctx_mask).hidden)
    assert cache.length == T
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal_and_returns_attention_maps():
    dec = Decoder(CFG, n_layers=2, cross=True).eval()
    x, ctx = torch.randn(1, 5, 16), torch.randn(1, 3, 16)
    out = dec(x, context=ctx, output_attentions=True)
    assert len(out.attentions) == 2 and len(out.cross_attentions) == 2
    assert out.attentions[0].shape == (1, 4, 5, 5) and out.cross_attentions[0].shape == (1, 4, 5, 3)
    assert (out.attentions[1][..., ~causal_mask(5)] == 0).all()
    x2 = x.clone()
    x2[:, 3:] += 1.0
    torch.testing.assert_close(dec(x2, context=ctx).hidden[:, :3], out.hidden[:, :3])


def test_gradient_checkpointing_gives_the_same_gradients():
    enc = Encoder(CFG, n_layers=2).train()
    x = torch.randn(2, 5, 16)
    enc(x).hidden.square().sum().backward()
    grads = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    enc.gradient_checkpointing = True
    enc(x).hidden.square().sum().backward()
    for g, p in zip(grads, enc.parameters()):
        torch.testing.assert_close(p.grad, g)
