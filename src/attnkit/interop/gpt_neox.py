"""GPT-NeoX / Pythia <-> attnkit GPTNeoX (``GPTNeoXForCausalLM``'s layout):
``gpt_neox.embed_in``, ``gpt_neox.layers.{i}.{input,post_attention}_layernorm``,
``attention.query_key_value`` (q, k and v interleaved head by head: regrouped into attnkit's
``qkv_proj``, q then k then v, and back on save), ``attention.dense``,
``mlp.dense_h_to_4h``/``dense_4h_to_h``, ``gpt_neox.final_layer_norm`` and ``embed_out``.
Older checkpoints' attention buffers (``attention.bias``, ``masked_bias``,
``rotary_emb.inv_freq``) are dropped.

Config: ``use_parallel_residual``, ``partial_rotary_factor`` (or the older ``rotary_pct``) as
``rotary_dim``, ``rope_theta`` (``rotary_emb_base``), ``attention_bias`` (the feed-forward's
biases are always there: a config without attention biases is refused), the dropouts.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, first_token_id, weight_and_bias
from attnkit.interop.llama import _rope, rotary_fraction
from attnkit.models.gpt_neox import GPTNeoX, GPTNeoXConfig

MODEL_TYPE = "gpt_neox"
MODELS = {"GPTNeoX": GPTNeoX}
ARCHITECTURES = {"GPTNeoXForCausalLM": "GPTNeoX"}
BASE_PREFIX = "gpt_neox."
IGNORED_HF_KEYS = (r"attention\.bias$", r"attention\.masked_bias$", r"rotary_emb\.inv_freq$")
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "relu": "relu"}
_ACTIVATIONS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def key_rules(model) -> list[Rename]:
    c: GPTNeoXConfig = model.config
    n, h = "decoder.layers.{i}.", "gpt_neox.layers.{i}."
    return [
        Rename("wte.weight", "gpt_neox.embed_in.weight"),
        *[Rename(n + f"attn.qkv_proj.{p}", h + f"attention.query_key_value.{p}", interleaved=(c.n_heads, 3))
          for p in ("weight", "bias")],
        *weight_and_bias(n + "attn.out_proj", h + "attention.dense"),
        *weight_and_bias(n + "attn_norm", h + "input_layernorm"),
        *weight_and_bias(n + "ffn_norm", h + "post_attention_layernorm"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.dense_h_to_4h"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.dense_4h_to_h"),
        *weight_and_bias("decoder.norm", "gpt_neox.final_layer_norm"),
        Rename("lm_head.weight", "embed_out.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GPTNeoXConfig`` fields, or None for a variant ``GPTNeoXForCausalLM`` cannot represent."""
    c: GPTNeoXConfig = model.config
    act = _ACTIVATIONS_TO_HF.get(c.activation)
    if (c.positional != "rotary" or c.norm != "layernorm" or not c.bias or act is None
            or c.n_kv_heads not in (None, c.n_heads) or c.head_dim not in (None, c.d_model // c.n_heads)
            or c.variants() - {"rotary_dim", "parallel_residual"}):
        return None
    head = c.dim_per_head
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, intermediate_size=c.d_ff or 4 * c.d_model, hidden_act=act,
        max_position_embeddings=c.n_positions, layer_norm_eps=c.norm_eps, use_parallel_residual=c.parallel_residual,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_base,
                         "partial_rotary_factor": (c.rotary_dim or head) / head, **(c.rope_scaling or {})},
        attention_bias=True, attention_dropout=c.attn_dropout, hidden_dropout=c.dropout,
        initializer_range=c.initializer_range, tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> GPTNeoXConfig:
    """``GPTNeoXConfig`` from a HF GPT-NeoX config dict (HF's defaults for absent fields)."""
    if not hf.get("attention_bias", True):
        raise ConfigError("config.json: attention_bias=false is not supported by attnkit's GPTNeoX (its feed-forward "
                          "keeps biases; the released checkpoints have both)")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"config.json: hidden_act={act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    d, heads = hf.get("hidden_size", 6144), hf.get("num_attention_heads", 64)
    rotary_dim = int(d // heads * rotary_fraction(hf, default=hf.get("rotary_pct", 0.25)))
    base, scaling = _rope({"rope_theta": hf.get("rotary_emb_base", 10000.0), **hf},
                          hf.get("max_position_embeddings", 2048), rotary_dim)
    return GPTNeoXConfig(
        vocab_size=hf.get("vocab_size", 50432), n_positions=hf.get("max_position_embeddings", 2048), d_model=d,
        n_layers=hf.get("num_hidden_layers", 44), n_heads=heads, d_ff=hf.get("intermediate_size", 24576),
        activation=_ACTIVATIONS[act], norm_eps=hf.get("layer_norm_eps", 1e-5), rope_base=base, rope_scaling=scaling,
        rotary_dim=None if rotary_dim == d // heads else rotary_dim,
        parallel_residual=bool(hf.get("use_parallel_residual", True)),
        dropout=float(hf.get("hidden_dropout", 0.0) or 0.0), attn_dropout=float(hf.get("attention_dropout", 0.0) or 0.0),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        initializer_range=hf.get("initializer_range", 0.02), bos_token_id=hf.get("bos_token_id", 0),
        eos_token_id=first_token_id(hf, "eos_token_id", 2), pad_token_id=hf.get("pad_token_id"),
    )
