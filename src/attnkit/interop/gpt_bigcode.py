"""GPTBigCode <-> attnkit GPTBigCode (``GPTBigCodeForCausalLM``'s layout): ``transformer.wte``/
``wpe``, ``transformer.h.{i}.ln_1``, ``attn.c_attn`` (``nn.Linear``: the queries, then the key
and the value head with ``multi_query``, read as attnkit's ``qkv_proj`` as it is; without, each
head's query, key and value in turn, ``Rename(interleaved=(heads, 3))``), ``attn.c_proj``,
``ln_2``, ``mlp.c_fc``/``c_proj``, ``transformer.ln_f``, and the tied ``lm_head``. Older
checkpoints' mask buffers (``attn.bias``, ``attn.masked_bias``) are dropped.

Config: ``multi_query``, ``scale_attn_weights`` (False: unscaled scores), the activation
(``gelu_pytorch_tanh``), ``n_inner``, the dropouts; ``attention_softmax_in_fp32`` and its scaled
variant only change where HF rounds (attnkit's fused kernel keeps fp32 softmax statistics).
"""

from __future__ import annotations

from attnkit.interop.hf_fields import activation_from_hf
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, require_hf_settings, weight_and_bias
from attnkit.models.gpt_bigcode import GPTBigCode, GPTBigCodeConfig

MODEL_TYPE = "gpt_bigcode"
MODELS = {"GPTBigCode": GPTBigCode}
ARCHITECTURES = {"GPTBigCodeForCausalLM": "GPTBigCode"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = (r"\.attn\.bias$", r"\.attn\.masked_bias$")
_ACT_TO_HF = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def key_rules(model) -> list[Rename]:
    c = model.config
    n, h = "decoder.layers.{i}.", "transformer.h.{i}."
    heads = None if c.n_kv_heads == 1 else (c.n_heads, 3)  # without multi_query: head by head
    return [
        Rename("wte.weight", "transformer.wte.weight"),
        Rename("wpe.weight", "transformer.wpe.weight"),
        *[Rename(n + f"attn.qkv_proj.{p}", h + f"attn.c_attn.{p}", interleaved=heads) for p in ("weight", "bias")],
        *weight_and_bias(n + "attn.out_proj", h + "attn.c_proj"),
        *weight_and_bias(n + "attn_norm", h + "ln_1"),
        *weight_and_bias(n + "ffn_norm", h + "ln_2"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.c_fc"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.c_proj"),
        *weight_and_bias("decoder.norm", "transformer.ln_f"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GPTBigCodeConfig`` fields, or None for a variant ``GPTBigCodeForCausalLM`` cannot represent."""
    c: GPTBigCodeConfig = model.config
    if (c.positional != "learned" or c.norm != "layernorm" or not c.bias or c.activation not in _ACT_TO_HF
            or c.n_kv_heads not in (1, None, c.n_heads) or c.head_dim not in (None, c.d_model // c.n_heads)
            or c.variants() - {"attn_scale_dim"} or c.attn_scale_dim not in (None, 1.0)):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.d_model,
        n_layer=c.n_layers, n_head=c.n_heads, n_inner=c.d_ff, activation_function=_ACT_TO_HF[c.activation],
        multi_query=c.n_kv_heads == 1 and c.n_heads > 1, layer_norm_epsilon=c.norm_eps,
        scale_attn_weights=c.attn_scale_dim is None, resid_pdrop=c.dropout, embd_pdrop=c.dropout,
        attn_pdrop=c.attn_dropout, initializer_range=c.initializer_range, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, tie_word_embeddings=c.tie_word_embeddings,
        attention_softmax_in_fp32=True, scale_attention_softmax_in_fp32=True,
    )


def config_from_hf(hf: dict, model_class: type) -> GPTBigCodeConfig:
    """``GPTBigCodeConfig`` from a HF GPTBigCode config dict (HF's defaults for absent fields)."""
    require_hf_settings(hf, dict(add_cross_attention=False), "GPTBigCode")
    d = GPTBigCodeConfig()
    get = hf_getter(hf)
    act = activation_from_hf(hf, "activation_function", "gelu_pytorch_tanh")
    n_heads = get("n_head", d.n_heads)
    dropout = float(get("resid_pdrop", 0.1))
    return GPTBigCodeConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=get("n_positions", d.n_positions),
        d_model=get("n_embd", d.d_model), n_layers=get("n_layer", d.n_layers), n_heads=n_heads,
        n_kv_heads=1 if hf.get("multi_query", True) else n_heads, d_ff=hf.get("n_inner"), activation=act,
        norm_eps=get("layer_norm_epsilon", 1e-5), attn_scale_dim=None if hf.get("scale_attn_weights", True) else 1.0,
        dropout=dropout, attn_dropout=float(get("attn_pdrop", 0.1)),
        tie_word_embeddings=hf.get("tie_word_embeddings", True), initializer_range=get("initializer_range", 0.02),
        bos_token_id=hf.get("bos_token_id", 50256), eos_token_id=first_token_id(hf, "eos_token_id", 50256),
        pad_token_id=hf.get("pad_token_id"),
    )
