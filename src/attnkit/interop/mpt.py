"""MPT <-> attnkit Mpt (``MptForCausalLM``'s layout): ``transformer.wte``,
``transformer.blocks.{i}.norm_1``, ``attn.Wqkv`` (q, k and v one after another, as attnkit's
``qkv_proj``), ``attn.out_proj``, ``norm_2``, ``ffn.up_proj``/``down_proj``, ``transformer.norm_f``
and the tied ``lm_head``; no biases anywhere.

Config: ``d_model``, ``n_heads``, ``n_layers``, ``max_seq_len``, ``layer_norm_epsilon``,
``attn_config.clip_qkv``. Refused with a ``ConfigError``: biases (``no_bias=false``), an
``expansion_ratio`` other than 4 (``transformers``' MPT builds 4 whatever it says), ALiBi off or
with another ``alibi_bias_max`` than 8, a head count that is not a power of two (MPT orders the
slopes of the others differently), ``qk_ln`` and ``softmax_scale``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, first_token_id, hf_getter
from attnkit.models.mpt import Mpt, MptConfig

MODEL_TYPE = "mpt"
MODELS = {"Mpt": Mpt}
ARCHITECTURES = {"MptForCausalLM": "Mpt"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = ()


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "transformer.blocks.{i}."
    return [Rename("wte.weight", "transformer.wte.weight"), *[Rename(n + a + ".weight", h + b + ".weight") for a, b in (
        ("attn_norm", "norm_1"), ("attn.qkv_proj", "attn.Wqkv"), ("attn.out_proj", "attn.out_proj"),
        ("ffn_norm", "norm_2"), ("ffn.fc_in", "ffn.up_proj"), ("ffn.fc_out", "ffn.down_proj"))],
        Rename("decoder.norm.weight", "transformer.norm_f.weight"), Rename("lm_head.weight", "lm_head.weight")]


def config_to_hf(model) -> dict | None:
    """HF ``MptConfig`` fields, or None for a variant ``MptForCausalLM`` cannot represent."""
    c: MptConfig = model.config
    if (c.positional != "alibi" or c.norm != "layernorm" or c.bias or c.activation != "gelu"
            or not c.tie_word_embeddings or c.n_kv_heads not in (None, c.n_heads)
            or c.head_dim not in (None, c.d_model // c.n_heads)
            or c.d_ff not in (None, 4 * c.d_model) or c.n_heads & (c.n_heads - 1) or c.variants() - {"clip_qkv"}):
        return None
    return dict(model_type=MODEL_TYPE, vocab_size=c.vocab_size, d_model=c.d_model, n_heads=c.n_heads,
                n_layers=c.n_layers, max_seq_len=c.n_positions, expansion_ratio=4, no_bias=True,
                layer_norm_epsilon=c.norm_eps, resid_pdrop=c.dropout or 0, emb_pdrop=c.dropout or 0,
                attn_config={"alibi": True, "alibi_bias_max": 8, "clip_qkv": c.clip_qkv, "qk_ln": False,
                             "softmax_scale": None, "attn_pdrop": c.attn_dropout or 0},  # an int when 0
                initializer_range=c.initializer_range, tie_word_embeddings=True, bos_token_id=c.bos_token_id,
                eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)


def config_from_hf(hf: dict, model_class: type) -> MptConfig:
    """``MptConfig`` from a HF MPT config dict (HF's defaults for absent fields)."""
    get = hf_getter(hf)
    attn = get("attn_config", {})
    heads = get("n_heads", 16)
    problems = [(not get("no_bias", True), "no_bias=false"), (get("expansion_ratio", 4) != 4, "expansion_ratio"),
                (not attn.get("alibi", True) or attn.get("alibi_bias_max", 8) != 8, "alibi"),
                (bool(attn.get("qk_ln")), "qk_ln"), (attn.get("softmax_scale") is not None, "softmax_scale"),
                (not isinstance(heads, int) or heads < 1 or heads & (heads - 1), "n_heads"),
                (hf.get("tie_word_embeddings") is False, "tie_word_embeddings")]
    for bad, field in problems:
        if bad:
            raise ConfigError(f"config.json: {field} ({hf.get(field, attn.get(field))!r}) is not supported by "
                              "attnkit's Mpt")
    return MptConfig(
        vocab_size=get("vocab_size", 50368), n_positions=get("max_seq_len", 2048), d_model=get("d_model", 2048),
        n_heads=heads, n_layers=get("n_layers", 24), norm_eps=get("layer_norm_epsilon", 1e-5),
        clip_qkv=attn.get("clip_qkv"), dropout=float(get("resid_pdrop", 0.0)),
        attn_dropout=float(attn.get("attn_pdrop", 0.0) or 0.0), initializer_range=get("initializer_range", 0.02),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=first_token_id(hf, "eos_token_id", None),
        pad_token_id=hf.get("pad_token_id"))
