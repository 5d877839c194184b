"""The encoder-decoder Transformer against PyTorch's own nn.Transformer layers, the paper's
formulas (parameter counts, sinusoids, label smoothing, GNMT length penalty) and decoding
invariants (cached = recomputed, batched = one by one, encoder run once)."""

import itertools
import math

import pytest
import torch
from torch import nn

from attnkit import InputError
from attnkit.models.transformer import Transformer, TransformerConfig, shift_tokens_right

TINY = dict(vocab_size=50, n_positions=64, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
            dropout=0.0)


def tiny(**overrides) -> Transformer:
    return Transformer(TransformerConfig(**{**TINY, **overrides})).eval()


def padded_batch(B=3, S=7, vocab=50):
    src = torch.randint(3, vocab, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return src.masked_fill(mask == 0, 0), mask


# -- sizes (Vaswani et al. 2017, Table 3) -------------------------------------------------------

def paper_param_count(V, d, d_ff, N):
    """Shared source/target/softmax embedding (§3.4); per layer: attention 4(d² + d), FFN
    2·d·d_ff + d_ff + d, LayerNorm 2d per sublayer; encoder 2 sublayers, decoder 3."""
    attn, ffn, ln = 4 * (d * d + d), 2 * d * d_ff + d_ff + d, 2 * d
    return V * d + N * (attn + ffn + 2 * ln) + N * (2 * attn + ffn + 3 * ln)


@pytest.mark.parametrize("preset, d, d_ff, paper_millions", [("transformer-base", 512, 2048, 65),
                                                              ("transformer-big", 1024, 4096, 213)])
def test_presets_have_table3_parameter_counts(preset, d, d_ff, paper_millions):
    config = TransformerConfig.from_preset(preset)
    assert (config.vocab_size, config.d_model, config.d_ff, config.n_encoder_layers) == (37000, d, d_ff, 6)
    with torch.device("meta"):
        model = Transformer(config)
    n = model.num_parameters()
    assert n == paper_param_count(37000, d, d_ff, 6)
    assert abs(n - paper_millions * 1e6) / (paper_millions * 1e6) < 0.03


def test_embeddings_shared_and_tied_per_section_3_4():
    m = tiny()
    assert m.src_embed.weight is m.tgt_embed.weight is m.lm_head.weight
    separate = tiny(share_embeddings=False, tie_word_embeddings=False)
    assert m.num_parameters() + 2 * 50 * 32 == separate.num_parameters()


def test_dropout_where_the_paper_puts_it():
    """§5.4: residual dropout on each sublayer output and on the embedding sums; none on the
    attention weights or inside the feed-forward in the base model."""
    m = Transformer(TransformerConfig(**{**TINY, "dropout": 0.1}))
    assert m.drop.p == 0.1
    for layer in [*m.encoder.layers, *m.decoder.layers]:
        assert layer.drop.p == 0.1 and layer.ffn.dropout.p == 0.0 and layer.attn.dropout == 0.0


# -- against PyTorch's nn.TransformerEncoder/Decoder with the same weights ---------------------

def paper_positions(n, d):
    pe = torch.zeros(n, d, dtype=torch.float64)
    for pos in range(n):
        for i in range(0, d, 2):
            pe[pos, i] = math.sin(pos / 10000 ** (i / d))
            pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    return pe.float()


def copy_attention(ours, theirs):
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)


def copy_common(ours, theirs):
    theirs.linear1.load_state_dict(ours.ffn.fc_in.state_dict())
    theirs.linear2.load_state_dict(ours.ffn.fc_out.state_dict())
    theirs.norm1.load_state_dict(ours.attn_norm.state_dict())
    copy_attention(ours.attn, theirs.self_attn)


def torch_reference(m: Transformer, pre_norm: bool):
    c = m.config
    kw = dict(d_model=c.d_model, nhead=c.n_heads, dim_feedforward=c.d_ff, dropout=0.0, activation="relu",
              batch_first=True, norm_first=pre_norm, layer_norm_eps=c.norm_eps)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), c.n_encoder_layers,
                                norm=nn.LayerNorm(c.d_model) if pre_norm else None, enable_nested_tensor=False)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), c.n_decoder_layers,
                                norm=nn.LayerNorm(c.d_model) if pre_norm else None)
    with torch.no_grad():
        for ours, theirs in zip(m.encoder.layers, enc.layers):
            copy_common(ours, theirs)
            theirs.norm2.load_state_dict(ours.ffn_norm.state_dict())
        for ours, theirs in zip(m.decoder.layers, dec.layers):
            copy_common(ours, theirs)
            copy_attention(ours.cross_attn, theirs.multihead_attn)
            theirs.norm2.load_state_dict(ours.cross_norm.state_dict())
            theirs.norm3.load_state_dict(ours.ffn_norm.state_dict())
        if pre_norm:
            enc.norm.load_state_dict(m.encoder.norm.state_dict())
            dec.norm.load_state_dict(m.decoder.norm.state_dict())
    return enc.eval(), dec.eval()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_matches_torch_nn_transformer_with_same_weights(pre_norm):
    m = tiny(pre_norm=pre_norm)
    with torch.no_grad():  # non-trivial norms
        for name, p in m.named_parameters():
            if "norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    enc, dec = torch_reference(m, pre_norm)
    src, mask = padded_batch()
    tgt = torch.randint(3, 50, (3, 6))
    emb, pe = m.src_embed.weight, paper_positions(64, 32)
    with torch.no_grad():
        memory = enc(emb[src] * math.sqrt(32) + pe[:7], src_key_padding_mask=mask == 0)
        h = dec(emb[tgt] * math.sqrt(32) + pe[:6], memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6),
                memory_key_padding_mask=mask == 0, tgt_is_causal=True)
        expected = h @ emb.T
        out = m(src, mask, decoder_input_ids=tgt)
    real = mask.bool()
    torch.testing.assert_close(out.encoder_last_hidden_state[real], memory[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_real_outputs():
    m = tiny()
    src, mask = padded_batch()
    tgt = torch.randint(3, 50, (3, 4))
    with torch.no_grad():
        batched = m(src, mask, decoder_input_ids=tgt).logits
        single = m(src[2:, :2], decoder_input_ids=tgt[2:]).logits
    torch.testing.assert_close(batched[2:], single, atol=1e-5, rtol=1e-5)


# -- loss: labels shifted right, label smoothing (§5.4) ----------------------------------------

def test_labels_are_shifted_right_with_the_start_token():
    labels = torch.tensor([[5, 6, 2, -100], [7, 2, -100, -100]])
    expected = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    assert torch.equal(shift_tokens_right(labels, pad_token_id=0, decoder_start_token_id=1), expected)
    m = tiny()
    src, mask = padded_batch()
    src, mask = src[:2], mask[:2]
    with torch.no_grad():
        from_labels = m(src, mask, labels=labels).logits
        explicit = m(src, mask, decoder_input_ids=expected).logits
    torch.testing.assert_close(from_labels, explicit)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_is_label_smoothed_cross_entropy(eps):
    """(1 - ε)·(-log p_y) + ε·mean_v(-log p_v), averaged over non-ignored targets."""
    m = tiny(label_smoothing=eps)
    src, mask = padded_batch()
    labels = torch.randint(3, 50, (3, 5))
    labels[1, 3:] = -100
    with torch.no_grad():
        out = m(src, mask, labels=labels)
    logp = out.logits.log_softmax(-1)
    keep = labels != -100
    nll = -logp[keep].gather(-1, labels[keep][:, None]).squeeze(-1)
    smooth = -logp[keep].mean(-1)
    expected = ((1 - eps) * nll + eps * smooth).mean()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)


# -- decoding ----------------------------------------------------------------------------------

def test_greedy_decoding_with_cache_matches_full_recompute():
    m = tiny()
    src, mask = padded_batch()
    out = m.generate(src, attention_mask=mask, max_new_tokens=8).clone()
    assert torch.equal(out[:, 0], torch.full((3,), m.config.decoder_start_token_id))
    with torch.no_grad():
        logits = m(src, mask, decoder_input_ids=out[:, :-1]).logits
    assert torch.equal(logits.argmax(-1), out[:, 1:])


def test_beam_search_batched_equals_one_sentence_at_a_time():
    m = tiny(final_logits_bias=True, tie_word_embeddings=False)
    with torch.no_grad():  # peaky distributions and a likely EOS: hypotheses of different lengths
        m.lm_head.weight.normal_(0, 1.0)
        m.final_logits_bias[0, m.config.eos_token_id] = 3.0
    src, mask = padded_batch()
    kw = dict(num_beams=4, length_penalty=0.6, length_penalty_style="gnmt", max_new_tokens=10,
              eos_token_id=m.config.eos_token_id, pad_token_id=m.config.pad_token_id)
    batched = m.generate(src, attention_mask=mask, **kw)
    lengths = {int((row != m.config.pad_token_id).sum()) for row in batched}
    assert len(lengths) > 1
    for i in range(3):
        n = int(mask[i].sum())
        single = m.generate(src[i:i + 1, :n], **kw)[0]
        row = batched[i, : single.shape[0]]
        assert torch.equal(row, single)
        assert (batched[i, single.shape[0]:] == m.config.pad_token_id).all()


def gnmt_lp(length, alpha):
    return ((5 + length) / 6) ** alpha  # Wu et al. 2016, eq. 14


@pytest.mark.parametrize("style, alpha", [("gnmt", 0.6), ("gnmt", 2.0), ("hf", 0.6)])
def test_beam_search_length_penalty_finds_the_exhaustive_best(style, alpha):
    """With enough beams and early_stopping='never' beam search is exhaustive: it must return
    the sequence maximising sum log p / lp(|Y|) over all finished sequences."""
    V, L, eos = 4, 3, 2
    m = tiny(vocab_size=V, pad_token_id=0, bos_token_id=1, eos_token_id=eos, decoder_start_token_id=1)
    with torch.no_grad():
        m.lm_head.weight.normal_(0, 2.0)
    src = torch.tensor([[3, 1, 3]])
    out = m.generate(src, num_beams=V**L, max_new_tokens=L, length_penalty=alpha, length_penalty_style=style,
                     early_stopping="never", eos_token_id=eos, pad_token_id=0)
    norm = (lambda n: gnmt_lp(n, alpha)) if style == "gnmt" else (lambda n: n**alpha)
    candidates = []
    for n in range(1, L + 1):
        for seq in itertools.product(range(V), repeat=n):
            if eos in seq[:-1] or (n < L and seq[-1] != eos):
                continue
            dec = torch.tensor([[1, *seq]])
            with torch.no_grad():
                logp = m(src, decoder_input_ids=dec[:, :-1]).logits.log_softmax(-1)[0]
            score = logp.gather(-1, dec[0, 1:, None]).sum().item() / norm(n)
            candidates.append((score, seq))
    best = max(candidates)[1]
    assert out[0, 1:1 + len(best)].tolist() == list(best)


def test_gnmt_style_is_validated():
    m = tiny()
    src, _ = padded_batch()
    with pytest.raises(InputError, match="length_penalty_style"):
        m.generate(src, num_beams=2, length_penalty_style="google")


# -- bad input --------------------------------------------------------------------------------

def test_token_ids_outside_the_vocabulary_are_an_error():
    m = tiny()
    with pytest.raises(InputError, match="vocab_size"):
        m(torch.tensor([[3, 50]]), decoder_input_ids=torch.tensor([[1]]))
    with pytest.raises(InputError, match="decoder_input_ids"):
        m(torch.tensor([[3, 4]]), decoder_input_ids=torch.tensor([[-1]]))


def test_inputs_longer_than_the_model_are_an_error():
    m = tiny()
    with pytest.raises(InputError, match="n_positions"):
        m(torch.randint(3, 50, (1, 65)), decoder_input_ids=torch.tensor([[1]]))
    assert m.generate(torch.randint(3, 50, (1, 5)), max_new_tokens=64, eos_token_id=None).shape[1] == 65
    with pytest.raises(InputError, match="n_positions"):  # start token + 64 fed tokens: one too many
        m.generate(torch.randint(3, 50, (1, 5)), max_new_tokens=65)


def test_empty_source_is_an_error():
    m = tiny()
    with pytest.raises(InputError, match="empty"):
        m(torch.zeros(1, 0, dtype=torch.long), decoder_input_ids=torch.tensor([[1]]))
    with pytest.raises(InputError, match="decoder_input_ids or labels"):
        m(torch.tensor([[3]]))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="d_model"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="sinusoid_layout"):
        TransformerConfig(sinusoid_layout="rotary")
    cfg = TransformerConfig.from_preset("transformer-tiny")
    assert TransformerConfig.from_json(cfg.to_json()) == cfg


def test_logits_with_the_final_bias_are_fp32_under_bf16_autocast_with_or_without_grad():
    """As transformers' Marian (fp32 bias added out of place): the dtype must not depend on
    whether a graph is recorded (outside autocast the matmul adds the bias)."""
    model = tiny(final_logits_bias=True)
    src, mask = padded_batch()
    dec = torch.randint(1, 50, (3, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with_grad = model(src, mask, decoder_input_ids=dec).logits
        with torch.no_grad():
            without = model(src, mask, decoder_input_ids=dec).logits
    assert with_grad.dtype == without.dtype == torch.float32
    assert torch.equal(with_grad.detach(), without)
