"""GPT-2 <-> attnkit GPT: config fields and state-dict keys (``GPT2LMHeadModel`` layout).

Hugging Face's GPT-2 stores its projections as ``Conv1D`` with ``(in, out)`` weights, so
every 2-D weight inside a block is transposed. ``c_attn`` is already fused q|k|v in the same
order as attnkit's ``qkv_proj``.
"""

from __future__ import annotations

import warnings

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, require_hf_settings
from attnkit.models.gpt import GPT, GPTConfig

MODEL_TYPE = "gpt2"
MODELS = {"GPT": GPT}
ARCHITECTURES = {"GPT2LMHeadModel": "GPT", "GPT2Model": "GPT"}  # first = the one written on save
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = (r"\.attn\.bias$", r"\.attn\.masked_bias$")  # causal-mask buffers of old checkpoints


def _block_rules() -> list[Rename]:
    rules = []
    for p in ("weight", "bias"):
        h, n = "transformer.h.{i}.", "decoder.layers.{i}."
        rules += [
            Rename(n + f"attn_norm.{p}", h + f"ln_1.{p}"),
            Rename(n + f"attn.qkv_proj.{p}", h + f"attn.c_attn.{p}", transpose=True),
            Rename(n + f"attn.out_proj.{p}", h + f"attn.c_proj.{p}", transpose=True),
            Rename(n + f"ffn_norm.{p}", h + f"ln_2.{p}"),
            Rename(n + f"ffn.fc_in.{p}", h + f"mlp.c_fc.{p}", transpose=True),
            Rename(n + f"ffn.fc_out.{p}", h + f"mlp.c_proj.{p}", transpose=True),
            Rename(f"decoder.norm.{p}", f"transformer.ln_f.{p}"),
        ]
    return rules


RULES = [
    Rename("wte.weight", "transformer.wte.weight"),
    Rename("wpe.weight", "transformer.wpe.weight"),
    *_block_rules(),
    Rename("lm_head.weight", "lm_head.weight"),
]


def key_rules(model) -> list[Rename]:
    return RULES


def config_to_hf(model) -> dict | None:
    """HF ``GPT2Config`` fields, or None when the variant has no GPT-2 equivalent."""
    c: GPTConfig = model.config
    if (c.positional != "learned" or c.norm != "layernorm" or c.n_kv_heads not in (None, c.n_heads)
            or c.activation not in ACT_TO_HF or not c.bias or c.variants()
            or c.head_dim not in (None, c.d_model // c.n_heads)):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.d_model,
        n_layer=c.n_layers, n_head=c.n_heads, n_inner=c.d_ff, activation_function=ACT_TO_HF[c.activation],
        layer_norm_epsilon=c.norm_eps, resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.attn_dropout,
        initializer_range=c.initializer_range, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id, tie_word_embeddings=c.tie_word_embeddings, scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False, add_cross_attention=False,
    )


def config_from_hf(hf: dict, model_class: type) -> GPTConfig:
    """``GPTConfig`` from a HF GPT-2 config dict (HF's defaults for absent fields)."""
    require_hf_settings(hf, dict(scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                                 add_cross_attention=False), "GPT")
    activation = activation_from_hf(hf, "activation_function", "gelu_new")
    dropout = hf.get("resid_pdrop", 0.1)
    vocab = hf.get("vocab_size", 50257)
    if not isinstance(vocab, int) or isinstance(vocab, bool):
        raise ConfigError(f"config.json: vocab_size must be an int, got {vocab!r}")
    special = {k: hf.get(k, 50256) for k in ("bos_token_id", "eos_token_id")} | {"pad_token_id": hf.get("pad_token_id")}
    for name, value in special.items():
        # GPT2Config(vocab_size=...) keeps its default ids (50256) whatever the vocabulary: an id
        # outside it can never be embedded or generated, so it is dropped rather than refused.
        if isinstance(value, int) and not 0 <= value < vocab:
            warnings.warn(f"config.json: {name} {value} is outside the vocabulary ({vocab} tokens); ignoring it",
                          stacklevel=2)
            special[name] = None
    return GPTConfig(
        vocab_size=vocab, n_positions=hf.get("n_positions", 1024), d_model=hf.get("n_embd", 768),
        n_layers=hf.get("n_layer", 12), n_heads=hf.get("n_head", 12), d_ff=hf.get("n_inner"),
        activation=activation, norm_eps=hf.get("layer_norm_epsilon", 1e-5), dropout=dropout,
        attn_dropout=hf.get("attn_pdrop", 0.1),
        tie_word_embeddings=hf.get("tie_word_embeddings", True), initializer_range=hf.get("initializer_range", 0.02),
        **special,
    )
