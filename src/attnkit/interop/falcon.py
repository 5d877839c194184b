"""Falcon <-> attnkit Falcon (``FalconForCausalLM``'s layout): ``transformer.word_embeddings``,
``transformer.h.{i}.self_attention.query_key_value`` (attnkit's ``qkv_proj``; the rows of each
key/value group's query heads, key and value together, in the new decoder architecture and in
multi-head attention), ``self_attention.dense``, ``mlp.dense_h_to_4h``/``dense_4h_to_h``, the norms
(``ln_attn`` and ``ln_mlp`` in the new architecture, else ``input_layernorm``, and
``post_attention_layernorm`` for sequential layers), ``transformer.ln_f`` and the tied
``lm_head``.

Config: ``new_decoder_architecture`` (``num_kv_heads`` key/value heads; two norms unless
``num_ln_in_parallel_attn`` is 1), ``multi_query`` (one key/value head), ``parallel_attn``,
``bias``, ``activation``, ``ffn_hidden_size`` and the RoPE fields. Refused with a ``ConfigError``:
``alibi`` (Falcon-RW: its ALiBi is added before the score scale, in bfloat16) and untied
embeddings.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.interop.llama import _rope
from attnkit.models.falcon import Falcon, FalconConfig

MODEL_TYPE = "falcon"
MODELS = {"Falcon": Falcon}
ARCHITECTURES = {"FalconForCausalLM": "Falcon"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = (r"rotary_emb\.inv_freq$",)


def _layout(c: FalconConfig) -> tuple[bool, bool]:
    """``(new_decoder_architecture, multi_query)`` that write ``c``: the new architecture for
    grouped-query attention or two norms per layer, else multi-query or multi-head attention."""
    kv = c.n_kv_heads or c.n_heads
    new = kv not in (1, c.n_heads) or (c.parallel_residual and not c.shared_norm)
    return new, not new and kv == 1


def key_rules(model) -> list[Rename]:
    c: FalconConfig = model.config
    n, h = "decoder.layers.{i}.", "transformer.h.{i}."
    new, multi_query = _layout(c)
    kv = c.n_kv_heads or c.n_heads
    groups = None if multi_query else (kv, c.n_heads // kv + 2)  # rows group by group
    params = ("weight", "bias") if c.bias else ("weight",)
    linear = lambda ours, theirs: [Rename(f"{ours}.{p}", f"{theirs}.{p}") for p in params]  # noqa: E731
    if c.parallel_residual and not c.shared_norm:
        norms = [*weight_and_bias(n + "attn_norm", h + "ln_attn"), *weight_and_bias(n + "ffn_norm", h + "ln_mlp")]
    else:
        norms = [*weight_and_bias(n + "attn_norm", h + "input_layernorm"),
                 *weight_and_bias(n + "ffn_norm", h + "post_attention_layernorm")]
    return [
        Rename("wte.weight", "transformer.word_embeddings.weight"),
        *[Rename(n + f"attn.qkv_proj.{p}", h + f"self_attention.query_key_value.{p}", interleaved=groups)
          for p in params],
        *linear(n + "attn.out_proj", h + "self_attention.dense"),
        *linear(n + "ffn.fc_in", h + "mlp.dense_h_to_4h"),
        *linear(n + "ffn.fc_out", h + "mlp.dense_4h_to_h"),
        *norms,
        *weight_and_bias("decoder.norm", "transformer.ln_f"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``FalconConfig`` fields, or None for a variant ``FalconForCausalLM`` cannot represent."""
    c: FalconConfig = model.config
    act = ACT_TO_HF.get(c.activation)
    if (c.positional != "rotary" or c.norm != "layernorm" or c.norm_bias is False or act is None
            or c.head_dim not in (None, c.d_model // c.n_heads) or not c.tie_word_embeddings
            or c.variants() - {"norm_bias", "parallel_residual", "shared_norm"}):
        return None
    new, multi_query = _layout(c)
    if new and not c.parallel_residual:
        return None  # the new architecture's layers are always parallel
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_kv_heads=c.n_kv_heads or c.n_heads, ffn_hidden_size=c.d_ff or 4 * c.d_model,
        max_position_embeddings=c.n_positions, layer_norm_epsilon=c.norm_eps, activation=act, alibi=False,
        new_decoder_architecture=new, multi_query=multi_query, parallel_attn=c.parallel_residual,
        num_ln_in_parallel_attn=(1 if c.shared_norm else 2) if new else None, bias=c.bias,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_base, **(c.rope_scaling or {})},
        hidden_dropout=c.dropout, attention_dropout=c.attn_dropout, initializer_range=c.initializer_range,
        tie_word_embeddings=True, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> FalconConfig:
    """``FalconConfig`` from a HF Falcon config dict (HF's defaults for absent fields)."""
    if hf.get("alibi"):
        raise ConfigError("config.json: alibi=true (Falcon-RW) is not supported by attnkit's Falcon")
    if hf.get("tie_word_embeddings") is False:
        raise ConfigError("config.json: tie_word_embeddings=false is not supported by attnkit's Falcon")
    d = FalconConfig()
    get = hf_getter(hf)
    width, heads = get("hidden_size", d.d_model), get("num_attention_heads", d.n_heads)
    new, multi_query = bool(get("new_decoder_architecture", False)), bool(get("multi_query", True))
    kv = get("num_kv_heads", heads) if new else 1 if multi_query else heads
    parallel = new or bool(get("parallel_attn", True))
    two_norms = new and get("num_ln_in_parallel_attn", 2) != 1
    n_positions = get("max_position_embeddings", d.n_positions)
    base, scaling = _rope(hf, n_positions)
    return FalconConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=n_positions, d_model=width,
        n_layers=get("num_hidden_layers", d.n_layers), n_heads=heads, n_kv_heads=kv,
        d_ff=get("ffn_hidden_size", 4 * width), activation=activation_from_hf(hf, "activation", "gelu"),
        norm_eps=get("layer_norm_epsilon", 1e-5), rope_base=base, rope_scaling=scaling, bias=bool(get("bias", False)),
        parallel_residual=parallel, shared_norm=parallel and not two_norms,
        dropout=float(get("hidden_dropout", 0.0)), attn_dropout=float(get("attention_dropout", 0.0)),
        initializer_range=get("initializer_range", 0.02), bos_token_id=hf.get("bos_token_id", 11),
        eos_token_id=first_token_id(hf, "eos_token_id", 11), pad_token_id=hf.get("pad_token_id"),
    )
