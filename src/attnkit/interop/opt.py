"""OPT <-> attnkit OPT (``OPTForCausalLM``'s layout): ``model.decoder.embed_tokens``,
``embed_positions`` (two rows more than positions: attnkit's ``position_offset``),
``layers.{i}.self_attn.{q,k,v}_proj`` (fused into attnkit's ``qkv_proj``) and ``out_proj``,
``self_attn_layer_norm``, ``fc1``/``fc2``, ``final_layer_norm`` (each layer's feed-forward
norm), ``model.decoder.final_layer_norm``, and the tied ``lm_head``.

Config: ``ffn_dim``, ``activation_function``, ``dropout`` and ``attention_dropout``. Refused with
a ``ConfigError``: OPT-350M's layout (``do_layer_norm_before=false``: post-norm layers, and a
``word_embed_proj_dim`` below ``hidden_size``, embeddings projected in and out), no biases
(``enable_bias=false``), LayerNorms without weights, and no final norm.
"""

from __future__ import annotations

import json

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.models.opt import OPT, OPTConfig

MODEL_TYPE = "opt"
MODELS = {"OPT": OPT}
ARCHITECTURES = {"OPTForCausalLM": "OPT"}
BASE_PREFIX = "model."
IGNORED_HF_KEYS = ()


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.decoder.layers.{i}."
    return [
        Rename("wte.weight", "model.decoder.embed_tokens.weight"),
        Rename("wpe.weight", "model.decoder.embed_positions.weight"),
        *[Rename(n + f"attn.qkv_proj.{p}", tuple(h + f"self_attn.{x}_proj.{p}" for x in "qkv"))
          for p in ("weight", "bias")],
        *weight_and_bias(n + "attn.out_proj", h + "self_attn.out_proj"),
        *weight_and_bias(n + "attn_norm", h + "self_attn_layer_norm"),
        *weight_and_bias(n + "ffn_norm", h + "final_layer_norm"),
        *weight_and_bias(n + "ffn.fc_in", h + "fc1"),
        *weight_and_bias(n + "ffn.fc_out", h + "fc2"),
        *weight_and_bias("decoder.norm", "model.decoder.final_layer_norm"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]



def config_to_hf(model) -> dict | None:
    """HF ``OPTConfig`` fields, or None for a variant ``OPTForCausalLM`` cannot represent."""
    c: OPTConfig = model.config
    act = ACT_TO_HF.get(c.activation)
    if (c.positional != "learned" or c.position_offset != 2 or c.norm != "layernorm" or not c.bias or act is None
            or c.n_kv_heads not in (None, c.n_heads) or c.head_dim not in (None, c.d_model // c.n_heads)
            or not c.tie_word_embeddings or c.variants() - {"position_offset"}):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        ffn_dim=c.d_ff or 4 * c.d_model, max_position_embeddings=c.n_positions, do_layer_norm_before=True,
        word_embed_proj_dim=c.d_model, num_attention_heads=c.n_heads, activation_function=act, dropout=c.dropout,
        attention_dropout=c.attn_dropout, init_std=c.initializer_range, enable_bias=True,
        layer_norm_elementwise_affine=True, tie_word_embeddings=True, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> OPTConfig:
    """``OPTConfig`` from a HF OPT config dict (HF's defaults for absent fields)."""
    d = OPTConfig()
    get = hf_getter(hf)
    width = get("hidden_size", d.d_model)
    for field, supported in [("do_layer_norm_before", True), ("enable_bias", True),
                             ("layer_norm_elementwise_affine", True), ("_remove_final_layer_norm", False),
                             ("tie_word_embeddings", True)]:
        if get(field, supported) != supported:
            raise ConfigError(f"config.json: {field}={json.dumps(get(field, supported))} is not supported by attnkit's "
                              "OPT" + (" (OPT-350M's post-norm layout)" if field == "do_layer_norm_before" else ""))
    if get("word_embed_proj_dim", width) != width:
        raise ConfigError(f"config.json: word_embed_proj_dim={hf['word_embed_proj_dim']} differs from hidden_size "
                          f"({width}): OPT-350M's projected embeddings are not supported by attnkit's OPT")
    return OPTConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=get("max_position_embeddings", d.n_positions),
        d_model=width, n_layers=get("num_hidden_layers", d.n_layers), n_heads=get("num_attention_heads", d.n_heads),
        d_ff=get("ffn_dim", 3072), activation=activation_from_hf(hf, "activation_function", "relu"),
        dropout=float(get("dropout", 0.1)), attn_dropout=float(get("attention_dropout", 0.0)),
        initializer_range=get("init_std", 0.02), bos_token_id=hf.get("bos_token_id", 2),
        eos_token_id=first_token_id(hf, "eos_token_id", 2), pad_token_id=hf.get("pad_token_id", 1),
    )
