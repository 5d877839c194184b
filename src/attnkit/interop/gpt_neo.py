"""GPT-Neo <-> attnkit GPTNeo (``GPTNeoForCausalLM``'s layout): ``transformer.wte``/``wpe``,
``transformer.h.{i}.ln_1``, ``attn.attention.{q,k,v}_proj`` (fused into attnkit's ``qkv_proj``) and
``out_proj``, ``ln_2``, ``mlp.c_fc``/``c_proj`` (``nn.Linear``, unlike GPT-2's ``Conv1D``),
``transformer.ln_f``, and the tied ``lm_head``. Older checkpoints' mask buffers
(``attn.attention.bias``, ``masked_bias``) are dropped.

Config: ``attention_types`` (``[[["global", "local"], 12]]``: a pattern and its repeats) or the
expanded ``attention_layers``, read into ``sliding_layers``; ``window_size``; the activation
(``gelu_new``); the dropouts.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.models.gpt_neo import GPTNeo, GPTNeoConfig

MODEL_TYPE = "gpt_neo"
MODELS = {"GPTNeo": GPTNeo}
ARCHITECTURES = {"GPTNeoForCausalLM": "GPTNeo"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = (r"attn\.attention\.bias$", r"attn\.attention\.masked_bias$")


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "transformer.h.{i}."
    return [
        Rename("wte.weight", "transformer.wte.weight"),
        Rename("wpe.weight", "transformer.wpe.weight"),
        Rename(n + "attn.qkv_proj.weight", tuple(h + f"attn.attention.{x}_proj.weight" for x in "qkv")),
        *weight_and_bias(n + "attn.out_proj", h + "attn.attention.out_proj"),
        *weight_and_bias(n + "attn_norm", h + "ln_1"),
        *weight_and_bias(n + "ffn_norm", h + "ln_2"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.c_fc"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.c_proj"),
        *weight_and_bias("decoder.norm", "transformer.ln_f"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GPTNeoConfig`` fields, or None for a variant ``GPTNeoForCausalLM`` cannot represent."""
    c: GPTNeoConfig = model.config
    act = ACT_TO_HF.get(c.activation)
    if (c.positional != "learned" or c.norm != "layernorm" or not c.bias or c.qkv_bias is not False or act is None
            or c.attn_scale_dim != 1.0 or c.n_kv_heads not in (None, c.n_heads) or not c.tie_word_embeddings
            or c.head_dim not in (None, c.d_model // c.n_heads) or c.sliding_window is None
            or c.variants() - {"qkv_bias", "attn_scale_dim", "sliding_window", "sliding_layers"}):
        return None
    local = set(c.window_layers)
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, max_position_embeddings=c.n_positions, hidden_size=c.d_model,
        num_layers=c.n_layers, num_heads=c.n_heads, intermediate_size=c.d_ff or 4 * c.d_model,
        attention_types=[[["local" if i in local else "global"], 1] for i in range(c.n_layers)],
        window_size=c.sliding_window, activation_function=act, layer_norm_epsilon=c.norm_eps,
        embed_dropout=c.dropout, resid_dropout=c.dropout, attention_dropout=c.attn_dropout,
        initializer_range=c.initializer_range, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id, tie_word_embeddings=True,
    )


def _layer_types(hf: dict, n_layers: int) -> list[str]:
    """Each layer's ``"global"`` / ``"local"`` from ``attention_types`` (or ``attention_layers``)."""
    types = hf.get("attention_layers")
    if not types:
        try:
            types = [t for pattern, repeat in hf.get("attention_types", [[["global", "local"], n_layers // 2]])
                     for _ in range(repeat) for t in pattern]
        except (TypeError, ValueError):
            types = None
    if not isinstance(types, list) or len(types) != n_layers or any(t not in ("global", "local") for t in types):
        raise ConfigError(f"config.json: attention_types must give {n_layers} layers of 'global' or 'local', got "
                          f"{hf.get('attention_types')!r}")
    return types


def config_from_hf(hf: dict, model_class: type) -> GPTNeoConfig:
    """``GPTNeoConfig`` from a HF GPT-Neo config dict (HF's defaults for absent fields)."""
    d = GPTNeoConfig()
    get = hf_getter(hf)
    act = activation_from_hf(hf, "activation_function", "gelu_new")
    if hf.get("tie_word_embeddings") is False:
        raise ConfigError("config.json: tie_word_embeddings=false is not supported by attnkit's GPTNeo (its LM "
                          "head is the token embedding)")
    n = get("num_layers", d.n_layers)
    local = tuple(i for i, t in enumerate(_layer_types(hf, n)) if t == "local")
    dropout = float(get("resid_dropout", 0.0))
    return GPTNeoConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=get("max_position_embeddings", d.n_positions),
        d_model=get("hidden_size", d.d_model), n_layers=n, n_heads=get("num_heads", d.n_heads),
        d_ff=hf.get("intermediate_size"), activation=act, norm_eps=get("layer_norm_epsilon", 1e-5),
        sliding_window=get("window_size", 256) if local else None, sliding_layers=local or None,
        dropout=dropout, attn_dropout=float(get("attention_dropout", 0.0)),
        initializer_range=get("initializer_range", 0.02), bos_token_id=hf.get("bos_token_id", 50256),
        eos_token_id=first_token_id(hf, "eos_token_id", 50256), pad_token_id=hf.get("pad_token_id"),
    )
