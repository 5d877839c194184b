"""GPT against Hugging Face's GPT-2 with the same weights, the loss formula, causality and
cached decoding for every config variant, and the errors users will meet."""

import pytest
import torch
import torch.nn.functional as F

from attnkit import GPT, GPTConfig
from attnkit.errors import ConfigError, InputError

VARIANTS = {
    "gpt2": {},
    "alibi": dict(positional="alibi"),
    "rotary": dict(positional="rotary"),
    "rmsnorm": dict(norm="rmsnorm"),
    "gqa": dict(n_kv_heads=2),
    "mqa": dict(n_kv_heads=1),
    "swiglu": dict(activation="swiglu", d_ff=48),
    "untied_nobias": dict(tie_word_embeddings=False, bias=False),
    "llama_like": dict(positional="rotary", norm="rmsnorm", activation="swiglu", n_kv_heads=2, bias=False),
}


def tiny(**fields) -> GPT:
    return GPT(GPTConfig.from_preset("gpt-tiny", **fields)).eval()


def test_gpt2_preset_has_124439808_parameters():
    with torch.device("meta"):  # counts shapes without allocating 0.5 GB
        model = GPT(GPTConfig.from_preset("gpt2"))
    assert model.num_parameters() == 124_439_808
    assert model.lm_head.weight is model.wte.weight  # tied, counted once


@pytest.mark.parametrize("name,layers,heads,width", [
    ("gpt2-medium", 24, 16, 1024), ("gpt2-large", 36, 20, 1280), ("gpt2-xl", 48, 25, 1600),
])
def test_larger_presets_match_transformers_parameter_counts(name, layers, heads, width):
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        ours = GPT(GPTConfig.from_preset(name))
        hf = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_head=heads, n_embd=width))
    assert ours.num_parameters() == hf.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == hf.num_parameters(exclude_embeddings=True)


def test_logits_equal_transformers_gpt2(hf_gpt2_twin):
    ours, hf = hf_gpt2_twin()
    ids = torch.randint(0, 256, (2, 11))
    labels = ids.clone()
    labels[0, :4] = -100
    out = ours(ids, labels=labels)
    ref = hf(ids, labels=labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)


def test_left_padded_logits_equal_transformers_gpt2(hf_gpt2_twin):
    ours, hf = hf_gpt2_twin()
    ids = torch.randint(0, 256, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # what HF's generate passes for left padding
    out = ours(ids, attention_mask=mask).logits
    ref = hf(ids, attention_mask=mask, position_ids=position_ids).logits
    real = mask.bool()
    torch.testing.assert_close(out[real], ref[real], atol=1e-4, rtol=1e-4)


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = tiny()
    ids = torch.randint(0, 256, (3, 9))
    labels = ids.clone()
    labels[1, 2:5] = -100
    out = model(ids, labels=labels)
    logits = out.logits
    total, count = 0.0, 0
    for b in range(3):
        for t in range(8):  # position t predicts token t + 1
            if labels[b, t + 1] != -100:
                total = total - F.log_softmax(logits[b, t], -1)[labels[b, t + 1]]
                count += 1
    torch.testing.assert_close(out.loss, total / count)
    assert model(ids).loss is None


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_are_causal(variant):
    model = tiny(**VARIANTS[variant])
    ids = torch.randint(0, 256, (2, 10))
    base = model(ids).logits
    ids2 = ids.clone()
    ids2[:, 6:] = torch.randint(0, 256, (2, 4))
    out = model(ids2).logits
    torch.testing.assert_close(out[:, :6], base[:, :6])
    assert not torch.allclose(out[:, 6:], base[:, 6:])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_cached_forward_equals_full_forward(variant):
    model = tiny(**VARIANTS[variant])
    ids = torch.randint(0, 256, (2, 9))
    full = model(ids).logits
    cache = model.new_cache(2, 9)
    parts = [model(ids[:, :4], cache=cache).logits]
    parts += [model(ids[:, t:t + 1], cache=cache).logits for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_left_padding_does_not_change_real_tokens(variant):
    model = tiny(**VARIANTS[variant])
    ids = torch.randint(0, 256, (1, 6))
    alone = model(ids).logits
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    out = model(padded, attention_mask=mask).logits
    torch.testing.assert_close(out[:, 3:], alone, atol=1e-4, rtol=1e-4)


def test_output_attentions_are_causal_maps():
    model = tiny()
    out = model(torch.randint(0, 256, (2, 5)), output_attentions=True)
    assert len(out.attentions) == 2
    w = out.attentions[0]
    assert w.shape == (2, 4, 5, 5)
    assert (w.triu(1) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))


def test_config_json_round_trip(tmp_path):
    cfg = GPTConfig.from_preset("gpt-tiny", positional="rotary", n_kv_heads=2, norm="rmsnorm")
    assert GPTConfig.from_json(cfg.to_json()) == cfg
    cfg.save(tmp_path / "config.json")
    assert GPTConfig.load(tmp_path / "config.json") == cfg
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_input_longer_than_context_is_an_error():
    model = tiny()
    with pytest.raises(InputError, match="longer than the model's context of 64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(InputError, match=r"context of 64 \(n_positions\); shorten the prompt or ask for at most 5"):
        model.generate(torch.zeros(1, 60, dtype=torch.long), max_new_tokens=10)
    with pytest.raises(InputError, match="cannot decode 65 positions: the model's context is 64"):
        model.new_cache(1, 65)


def test_heads_not_dividing_width_is_an_error():
    with pytest.raises(ConfigError, match=r"GPTConfig\.d_model: must be divisible by n_heads \(5\)"):
        GPTConfig(d_model=32, n_heads=5)
    with pytest.raises(ConfigError, match="n_kv_heads"):
        GPTConfig.from_preset("gpt-tiny", n_kv_heads=3)


@pytest.mark.parametrize("fields,message", [
    (dict(n_experts=0), "n_experts: must be None"),
    (dict(n_experts=4, experts_per_token=5), r"experts_per_token: must be from 1 to n_experts \(4\)"),
    (dict(shared_expert_d_ff=8), "shared_expert_d_ff: must be None, or positive with n_experts"),
    (dict(router_aux_loss_coef=0.1), "router_aux_loss_coef: must be 0, or positive with n_experts"),
    (dict(moe_layers=(0,)), r"moe_layers: must be layer indices in \[0, 2\), with n_experts"),
    (dict(n_experts=4, moe_layers=(2,)), r"moe_layers: must be layer indices in \[0, 2\)"),
    (dict(n_experts=4, dense_d_ff=64), "dense_d_ff: must be None, or positive with moe_layers"),
    (dict(router_scoring="sigmoid"), "router_scoring: sigmoid needs n_experts"),
    (dict(n_experts=4, router_scoring="sigmoid", router_aux_loss_coef=0.1), "for softmax routers"),
    (dict(n_experts=4, expert_groups=3, expert_groups_per_token=1), r"must split n_experts \(4\) into groups"),
    (dict(n_experts=4, expert_groups=2, expert_groups_per_token=3), r"must be from 1 to expert_groups \(2\)"),
    (dict(n_experts=4, expert_groups_per_token=2), "expert_groups_per_token: needs expert_groups"),
    (dict(routed_scaling_factor=2.0), "routed_scaling_factor: must be 1, or positive with n_experts"),
    (dict(n_experts=4, router_jitter_noise=1.5), r"router_jitter_noise: must be 0, or in \(0, 1\) with n_experts"),
    (dict(n_experts=4, shared_expert_gated=False), "shared_expert_gated: False needs a shared expert"),
    (dict(kv_lora_rank=8), "kv_lora_rank: must be positive, with rotary positions on a rotary_dim below head_dim"),
    (dict(positional="rotary", rotary_dim=8, kv_lora_rank=8), "rotary_dim below head_dim"),
    (dict(q_lora_rank=8), "q_lora_rank and v_head_dim need kv_lora_rank"),
    (dict(rope_interleave=True), "rope_interleave: needs rotary positions"),
    (dict(nope_layers=(0,)), r"nope_layers: must be layer indices in \[0, 2\), with rotary positions"),
])
def test_mixture_of_experts_and_latent_attention_fields_are_checked(fields, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig.from_preset("gpt-tiny", **fields)


def test_masks_of_wrong_shape_or_dtype_are_errors():
    model = tiny()
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(InputError, match=r"must have shape \(batch, seq_len\) = \(2, 5\), got \(2, 4\)"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="must be bool or integer 0/1.*float32"):
        model(ids, attention_mask=torch.ones(2, 5))
    with pytest.raises(InputError, match="labels must have the shape of input_ids"):
        model(ids, labels=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(InputError, match="integer tensor"):
        model(ids.float())
    V = model.config.vocab_size
    with pytest.raises(InputError, match=rf"input_ids must lie in \[0, {V}\) \(vocab_size\), got values in \[0, {V}\]"):
        model(ids.index_fill(1, torch.tensor([2]), V))
    with pytest.raises(InputError, match=rf"targets must lie in \[0, {V}\)"):
        model(ids, labels=torch.full_like(ids, V))
    with pytest.raises(InputError, match="targets must be int64 or int32"):
        model(ids, labels=ids.float())


def test_feedforward_hidden_units_are_not_dropped_as_in_gpt2():
    """GPT-2 drops out attention weights and sublayer outputs, never the MLP's hidden activations."""
    model = tiny(dropout=0.1)
    for layer in model.decoder.layers:
        assert layer.drop.p == 0.1 and layer.ffn.dropout.p == 0.0


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown gpt2 preset 'gpt5'; known presets: \[.*'gpt2'.*'gpt2-xl'"):
        GPTConfig.from_preset("gpt5")


def test_wrong_field_type_and_unknown_field_are_errors():
    with pytest.raises(ConfigError, match=r"GPTConfig\.n_layers must be int, got '12' \(str\)"):
        GPTConfig(n_layers="12")
    with pytest.raises(ConfigError, match=r"GPTConfig\.positional must be one of 'learned', 'rotary', 'alibi'"):
        GPTConfig(positional="sinusoidal")
    with pytest.raises(ConfigError, match=r"unknown GPTConfig field\(s\) \['n_layer'\]; valid fields: .*n_layers"):
        GPTConfig.from_preset("gpt-tiny", n_layer=3)
    with pytest.raises(ConfigError, match="needs a GPTConfig"):
        GPT({"n_layers": 2})


def test_outputs_read_as_hugging_face_outputs_do():
    model = tiny()
    ids = torch.randint(0, 256, (2, 6))
    out = model(ids, labels=ids)
    assert "logits=<computed when read>" in repr(out) and out._logits is None  # repr does not build them
    assert out.keys() == ["loss", "logits", "last_hidden_state"]
    assert out[0] is out.loss and torch.equal(out[1], out.logits) and out["loss"] is out.loss
    assert "loss" in out and "pooler_output" not in out and dict(out).keys() == {"loss", "logits", "last_hidden_state"}
    with pytest.raises(KeyError):
        out["pooler_output"]
    loss, logits = model(ids).to_tuple()[0], model(ids)[0]
    assert torch.equal(loss, logits)  # without labels the logits come first


def test_lazy_logits_read_after_the_weights_changed_are_an_error_not_other_logits():
    model = tiny()
    ids = torch.randint(0, 256, (2, 6))
    out = model(ids, labels=ids)
    expected = model(ids).logits.detach()
    out.loss.backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    with pytest.raises(InputError, match="weights changed since that forward"):
        out.logits
    fresh = model(ids, labels=ids)
    fresh_logits = fresh.logits  # read before any change: fine
    assert not torch.allclose(fresh_logits, expected)
    other = tiny()
    pending = other(ids, labels=ids)
    other.to(torch.bfloat16)
    with pytest.raises(InputError, match="a cast, a move"):
        pending.logits
    pending = model(ids, labels=ids)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach() * 2)  # a replaced parameter
    with pytest.raises(InputError, match="replaced parameter"):
        pending.logits
    with torch.inference_mode():  # inference tensors keep no version counter
        frozen = tiny()
        out = frozen(ids, labels=ids)
        torch.testing.assert_close(out.logits, frozen(ids).logits)


def test_gradients_flow_through_cached_steps_as_through_one_forward():
    model = tiny()
    ids = torch.randint(0, 256, (2, 7))
    cache = model.new_cache(2, 7)
    stepped = torch.cat([model(ids[:, :4], cache=cache).logits, model(ids[:, 4:], cache=cache).logits], dim=1)
    grads = torch.autograd.grad(stepped.square().sum(), model.wte.weight)[0]
    full = model(ids).logits
    reference = torch.autograd.grad(full.square().sum(), model.wte.weight)[0]
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_windowed_model_compiles_and_gives_eager_losses_and_gradients():
    """torch.compile of a model with a sliding window (window 16, 200 then 150 tokens: the second
    length compiles with dynamic shapes; eager attends block by block) gives eager's logits, loss
    and gradients. Inductor fails on the blocks' sizes with dynamic shapes, so compiled code takes
    the band mask; the fused loss has no ``gather(out=)``, which fails there too."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, n_layers=2, d_model=64, n_heads=4, n_positions=256, positional="rotary",
                          sliding_window=16, norm="rmsnorm", bos_token_id=None, eos_token_id=None))
    compiled = torch.compile(model)
    try:
        for T in (200, 150):
            ids = torch.randint(0, 97, (2, T), generator=torch.Generator().manual_seed(T))
            results = []
            for run in (model, compiled):
                model.zero_grad()
                out = run(ids, labels=ids)
                out.loss.backward()
                results.append((out.logits.detach(), out.loss.detach(),
                                model.decoder.layers[0].attn.qkv_proj.weight.grad.clone()))
            for got, eager in zip(results[1], results[0]):
                assert torch.allclose(got, eager, atol=1e-5)
    finally:  # dynamo remembers that GPT.forward saw two lengths: later compiles would start dynamic
        torch._dynamo.reset()


@pytest.mark.parametrize("fields", [
    dict(positional="rotary", n_kv_heads=2, sliding_window=4, sliding_layers=(0,)),  # one local layer, one global
    dict(positional="rotary", attention_chunk_size=5),  # Llama 4's chunks, every layer
])
def test_rolling_caches_of_local_layers_decode_the_tokens_of_full_caches(fields, monkeypatch):
    """The local layers' caches drop what their queries no longer see: greedy on a left-padded
    batch (logits too), beam search, prompt lookup (truncations) and sampling give what caches
    of every position give, while a local layer's buffer stays at ``keep + 1`` positions (a
    window under 16)."""
    torch.manual_seed(0)
    model = tiny(**fields)
    keep = min(n for n in (model.config.sliding_window, model.config.attention_chunk_size) if n) - 1
    ids = torch.randint(0, 50, (2, 9))
    ids[1, :4] = ids[1, 4:8]  # a repeat for prompt lookup to find
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    runs = [dict(attention_mask=mask, return_dict_in_generate=True, output_logits=True),
            dict(attention_mask=mask, num_beams=3), dict(prompt_lookup_num_tokens=3),
            dict(do_sample=True, top_k=20)]
    made = []

    def decode(**kw):
        if kw.get("do_sample"):
            kw["generator"] = torch.Generator().manual_seed(0)
        prompt = ids[1:] if "prompt_lookup_num_tokens" in kw else ids
        return model.generate(prompt, max_new_tokens=24, eos_token_id=None, **kw)

    def rolling(batch_size, max_len):
        made.append(GPT.new_cache(model, batch_size, max_len))
        return made[-1]

    monkeypatch.setattr(model, "new_cache", rolling)
    got = [decode(**kw) for kw in runs]
    for cache in made[:1]:
        for i, c in enumerate(cache.self_attn):
            assert c.k.shape[2] == (keep + 1 if i in model.config.local_layers else 9 + 23), i
    monkeypatch.setattr(model, "new_cache", lambda batch_size, max_len: GPT.new_cache(model, batch_size,
                                                                                      max_len).keep_all())
    for kw, out in zip(runs, got):
        ref = decode(**kw)
        if kw.get("output_logits"):
            assert torch.equal(out.sequences, ref.sequences)
            torch.testing.assert_close(torch.stack(out.logits), torch.stack(ref.logits), atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(out, ref), kw


def test_a_windowed_assistant_model_keeps_every_position():
    """An assistant's rounds feed its guesses one at a time and drop the rejected ones (up to
    several positions): its cache keeps every position, and the tokens are greedy decoding's."""
    torch.manual_seed(0)
    fields = dict(positional="rotary", sliding_window=4)
    model, assistant = tiny(**fields), tiny(n_layers=1, **fields)
    with torch.no_grad():  # outputs that follow the input (at init, one token repeats) and often disagree
        for m in (model, assistant):
            for name, p in m.named_parameters():
                if name.endswith(("out_proj.weight", "fc_out.weight")):
                    p.normal_(0.0, 4.0 / p.shape[-1] ** 0.5)
    ids = torch.randint(0, 50, (1, 6))
    ref = model.generate(ids, max_new_tokens=30, eos_token_id=None)
    got = model.generate(ids, max_new_tokens=30, eos_token_id=None, assistant_model=assistant, num_assistant_tokens=6)
    assert torch.equal(got, ref)
