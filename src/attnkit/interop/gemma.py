"""Gemma, Gemma 2 and Gemma 3 <-> attnkit (``GemmaForCausalLM``, ``Gemma2ForCausalLM`` and
``Gemma3ForCausalLM``'s layouts): Llama's keys and config fields (:mod:`attnkit.interop.llama`),
and in Gemma 2 and 3 the sandwich norms: ``post_attention_layernorm`` norms the attention's
output (attnkit's ``attn_post_norm``; in Llama it is the feed-forward's input norm),
``pre_feedforward_layernorm`` and ``post_feedforward_layernorm`` the feed-forward's input and
output. Gemma 3 adds ``self_attn.{q,k}_norm``.

Config fields beyond Llama's: ``query_pre_attn_scalar`` (``attn_scale_dim``),
``attn_logit_softcapping`` and ``final_logit_softcapping`` (the soft caps), ``sliding_window`` and
``layer_types`` (``sliding_layers``; older configs give Gemma 3's ``sliding_window_pattern``), and
Gemma 3's RoPE base per layer type (``rope_parameters.sliding_attention.rope_theta`` or the older
``rope_local_base_freq``: ``rope_local_base``). The released Gemma configs' ``hidden_act="gelu"`` is
read as the tanh approximation, as ``transformers`` reads it.

Refused with a ``ConfigError`` naming the field: attention biases, bidirectional attention
(EmbeddingGemma), RoPE scaling on the sliding layers, layer types other than sliding and full.
This module maps ``gemma``; :mod:`attnkit.interop.gemma2` and :mod:`attnkit.interop.gemma3` map
the later versions with the functions here.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import LAYER_TYPES, _rope, layer_types_to_hf, llama_config_fields, llama_fields, \
    sliding_layers_from_hf
from attnkit.models.gemma import Gemma, GemmaConfig

MODEL_TYPE = "gemma"
MODELS = {"Gemma": Gemma}
ARCHITECTURES = {"GemmaForCausalLM": "Gemma"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    """Llama's keys; with sandwich norms, Gemma 2's four norms per layer."""
    rules = llama.key_rules(model)
    if not model.config.sandwich_norm:
        return rules
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    return [r for r in rules if r.native != n + "ffn_norm.weight"] + [
        Rename(n + "attn_post_norm.weight", h + "post_attention_layernorm.weight"),
        Rename(n + "ffn_norm.weight", h + "pre_feedforward_layernorm.weight"),
        Rename(n + "ffn_post_norm.weight", h + "post_feedforward_layernorm.weight"),
    ]


def gemma_fields(c: GemmaConfig, variants: set[str] = frozenset()) -> dict | None:
    """The HF config fields every Gemma shares, or None for a config the family cannot represent
    (``variants``: the ``GPTConfig.variant_fields`` the family writes, beyond ``embed_scale``)."""
    fields = llama_fields(c, {"embed_scale", *variants}, norm="rmsnorm_offset")
    if fields is None or c.bias or not c.embed_scale:
        return None
    return dict(fields, attention_bias=False)


def config_to_hf(model) -> dict | None:
    """HF ``GemmaConfig`` fields, or None for a variant ``GemmaForCausalLM`` cannot represent."""
    fields = gemma_fields(model.config)
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields)


def gemma_config_fields(hf: dict, defaults: GemmaConfig, activation_key: str) -> dict:
    """attnkit config fields from the HF config fields every Gemma shares (``defaults``: the
    version's HF defaults); the activation is read from ``activation_key``."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Gemma (no released "
                          "checkpoint has attention biases)")
    if hf.get("use_bidirectional_attention"):
        raise ConfigError("config.json: use_bidirectional_attention=true (EmbeddingGemma) is not supported; "
                          "attnkit's Gemma is a causal LM")
    act = hf.get(activation_key) or "gelu_pytorch_tanh"
    fields = llama_config_fields({**hf, "hidden_act": "gelu_pytorch_tanh" if act == "gelu" else act}, defaults)
    fields["head_dim"] = hf.get("head_dim") or defaults.head_dim  # explicit: 256 whatever the width
    return fields


def config_from_hf(hf: dict, model_class: type) -> GemmaConfig:
    """``GemmaConfig`` from a HF Gemma config dict (HF's defaults for absent fields)."""
    return GemmaConfig(**gemma_config_fields(hf, GemmaConfig(), "hidden_act"))


# -- Gemma 2 and 3 --------------------------------------------------------------------------

def windowed_fields(hf: dict, defaults: GemmaConfig) -> dict:
    """``sliding_window``, ``sliding_layers`` (None where it follows the family's pattern),
    ``attn_scale_dim`` and the soft caps from a Gemma 2 or 3 HF config."""
    n = hf.get("num_hidden_layers") or defaults.n_layers
    window = hf.get("sliding_window", defaults.sliding_window)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer")
    types = hf.get("layer_types")
    if types is None:  # transformers' fallback; older Gemma 3 configs give the pattern
        every = hf.get("sliding_window_pattern") or defaults.sliding_pattern
        types = [LAYER_TYPES[0] if (i + 1) % every else LAYER_TYPES[1] for i in range(n)]
    sliding = sliding_layers_from_hf(types, n)
    pattern = defaults.replace(n_layers=n).window_layers
    return dict(
        sliding_window=window, sliding_layers=None if sliding == pattern else sliding,
        attn_scale_dim=hf.get("query_pre_attn_scalar", defaults.attn_scale_dim),
        attn_softcap=hf.get("attn_logit_softcapping", defaults.attn_softcap),
        logit_softcap=hf.get("final_logit_softcapping", defaults.logit_softcap),
    )


def windowed_to_hf(c: GemmaConfig) -> dict:
    """The HF fields of :func:`windowed_fields` (the config must have a ``sliding_window``)."""
    return dict(
        hidden_activation=_GELU_TANH, sliding_window=c.sliding_window, layer_types=layer_types_to_hf(c),
        query_pre_attn_scalar=c.attn_scale_dim or c.dim_per_head, attn_logit_softcapping=c.attn_softcap,
        final_logit_softcapping=c.logit_softcap,
    )


_GELU_TANH = "gelu_pytorch_tanh"
WINDOWED = {"sliding_window", "sliding_layers", "attn_scale_dim", "attn_softcap", "logit_softcap", "sandwich_norm"}


def windowed_gemma_fields(c: GemmaConfig, variants: set[str]) -> dict | None:
    """:func:`gemma_fields` and :func:`windowed_to_hf` for Gemma 2 and 3, or None for a config they
    cannot represent (no sandwich norms, no window, another activation)."""
    fields = gemma_fields(c, WINDOWED | variants)
    if fields is None or not c.sandwich_norm or c.sliding_window is None or c.activation != "geglu_tanh":
        return None
    del fields["hidden_act"]
    return dict(fields, **windowed_to_hf(c))


def rope_by_layer_type(hf: dict, n_positions: int, full_theta: float = 1000000.0, local_theta: float = 10000.0) -> dict:
    """Gemma 3's (and OLMo 3's) ``rope_base``, ``rope_scaling`` (global layers) and
    ``rope_local_base``, from ``rope_parameters`` keyed by layer type or the older ``rope_theta``,
    ``rope_scaling`` and ``rope_local_base_freq``; the bases default to ``full_theta`` and
    ``local_theta``."""
    params = hf.get("rope_parameters") or {}
    if LAYER_TYPES[1] in params or LAYER_TYPES[0] in params:
        full, local = params.get(LAYER_TYPES[1]) or {}, params.get(LAYER_TYPES[0]) or {}
    else:
        full = {**(hf.get("rope_scaling") or {}), **params}
        full.setdefault("rope_theta", hf.get("rope_theta", full_theta))
        local = {"rope_theta": hf.get("rope_local_base_freq", local_theta)}
    base, scaling = _rope({"rope_parameters": {"rope_theta": full_theta, **full}}, n_positions)
    local_base, local_scaling = _rope({"rope_parameters": {"rope_theta": local_theta, **local}}, n_positions)
    if local_scaling is not None:
        raise ConfigError(f"config.json: RoPE scaling on the sliding layers ({local_scaling}) is not supported")
    return dict(rope_base=base, rope_scaling=scaling, rope_local_base=local_base)
