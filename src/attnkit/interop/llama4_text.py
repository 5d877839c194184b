"""Llama 4 <-> attnkit Llama4 (``Llama4ForCausalLM``'s checkpoint layout): Llama's attention,
norms, embeddings and head (:mod:`attnkit.interop.llama`), with each layer's feed-forward at
``model.layers.{i}.feed_forward.``:

- a mixture: ``router`` (attnkit's ``ffn.router``), ``experts.gate_up_proj`` ``(E, d_model,
  2 · d_ff)`` and ``experts.down_proj`` ``(E, d_ff, d_model)`` (stacked; attnkit's
  ``ffn.experts.{j}.fc_gate``/``fc_in``/``fc_out``), ``shared_expert.{gate,up,down}_proj``;
- or dense, off ``moe_layers``: ``{gate,up,down}_proj`` of ``intermediate_size_mlp``.

Config: ``no_rope_layers`` (1 = rotary positions; else every ``no_rope_layer_interval``-th layer
has none: attnkit's ``nope_layers``), ``attention_chunk_size`` (on the rotary layers; a given
``layer_types`` must say the same), ``use_qk_norm`` (``qk_l2_norm``), ``attn_temperature_tuning``
with ``floor_scale`` and ``attn_scale``, ``num_local_experts``, ``num_experts_per_tok``,
``moe_layers`` or ``interleave_moe_layer_step``, ``intermediate_size_mlp`` (``dense_d_ff``), and
Llama 3.1's RoPE scaling. The rotary pairs are interleaved (Meta's complex-number form).

Refused with a ``ConfigError``: ``attention_bias`` and ``layer_types`` other than those the
chunk size and ``no_rope_layers`` imply. ``router_jitter_noise`` and the auxiliary loss fields
are ignored, as ``transformers``' Llama 4 ignores them.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama4 import Llama4, Llama4Config

MODEL_TYPE = "llama4_text"
MODELS = {"Llama4": Llama4}
ARCHITECTURES = {"Llama4ForCausalLM": "Llama4"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"n_experts", "normalize_expert_weights", "shared_expert_d_ff", "shared_expert_gated", "router_scoring",
             "router_score_bias", "expert_input_weights", "moe_layers", "dense_d_ff", "rope_interleave", "nope_layers",
             "attention_chunk_size", "qk_l2_norm", "attn_temperature_floor"}
_MLP = (("fc_gate", "gate_proj"), ("fc_in", "up_proj"), ("fc_out", "down_proj"))


def key_rules(model) -> list[Rename]:
    c: Llama4Config = model.config
    n, h = "decoder.layers.{i}.ffn.", "model.layers.{i}.feed_forward."
    experts = range(c.n_experts)
    return [r for r in llama.key_rules(model) if ".ffn." not in r.native_names[0]] + [
        *[Rename(n + f"{ours}.weight", h + f"{theirs}.weight") for ours, theirs in _MLP],  # dense layers
        Rename(n + "router.weight", h + "router.weight"),
        Rename(tuple(n + f"experts.{j}.{p}.weight" for j in experts for p in ("fc_gate", "fc_in")),
               h + "experts.gate_up_proj", transpose=True, stacked=c.n_experts),
        Rename(tuple(n + f"experts.{j}.fc_out.weight" for j in experts), h + "experts.down_proj", transpose=True,
               stacked=c.n_experts),
        *[Rename(n + f"shared_expert.{ours}.weight", h + f"shared_expert.{theirs}.weight") for ours, theirs in _MLP],
    ]


def _layer_types(chunk: int | None, nope: set, n_layers: int) -> list[str]:
    return ["chunked_attention" if chunk is not None and i not in nope else "full_attention" for i in range(n_layers)]


def config_to_hf(model) -> dict | None:
    """HF ``Llama4TextConfig`` fields, or None for a variant ``Llama4ForCausalLM`` cannot
    represent (biases, a dense model, another router or shared expert, rotary halves)."""
    c: Llama4Config = model.config
    fields = llama_fields(c, _VARIANTS)
    if (fields is None or c.bias or c.n_experts is None or c.shared_expert_d_ff != c.d_ff or c.shared_expert_gated
            or c.router_scoring != "sigmoid" or c.router_score_bias or not c.expert_input_weights
            or c.normalize_expert_weights or not c.rope_interleave):
        return None
    nope = set(c.nope_layers or ())
    sparse = c.moe_layers if c.moe_layers is not None else tuple(range(c.n_layers))
    floor = c.attn_temperature_floor
    return dict(model_type=MODEL_TYPE, **fields, intermediate_size_mlp=c.dense_d_ff or c.d_ff,
                num_local_experts=c.n_experts, num_experts_per_tok=c.experts_per_token, moe_layers=list(sparse),
                interleave_moe_layer_step=1, use_qk_norm=c.qk_l2_norm,
                no_rope_layers=[int(i not in nope) for i in range(c.n_layers)],
                attention_chunk_size=c.attention_chunk_size,
                layer_types=_layer_types(c.attention_chunk_size, nope, c.n_layers),
                attn_temperature_tuning=floor is not None, floor_scale=floor or 8192,
                attn_scale=c.attn_temperature_scale, attention_bias=False, output_router_logits=False)


def config_from_hf(hf: dict, model_class: type) -> Llama4Config:
    """``Llama4Config`` from a HF ``Llama4TextConfig`` dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Llama4")
    d = Llama4Config()
    get = hf_getter(hf)
    fields = llama_config_fields(hf, d)
    n = fields["n_layers"]
    flags = hf.get("no_rope_layers")
    if not flags:
        every = get("no_rope_layer_interval", 4)
        flags = [int((i + 1) % every != 0) for i in range(n)]
    if not isinstance(flags, list) or len(flags) < n or any(f not in (0, 1) for f in flags):
        raise ConfigError(f"config.json: no_rope_layers must list {n} flags of 0 or 1, got {flags!r}")
    nope = tuple(i for i in range(n) if not flags[i])
    chunk = hf.get("attention_chunk_size", d.attention_chunk_size)
    types = hf.get("layer_types")
    if types is not None and types != _layer_types(chunk, set(nope), n):
        raise ConfigError(f"config.json: layer_types {types!r} differ from what attention_chunk_size and "
                          "no_rope_layers give (chunked attention on the rotary layers); attnkit's Llama4 reads those")
    sparse = hf.get("moe_layers")
    if sparse is None:
        step = get("interleave_moe_layer_step", 1)
        sparse = list(range(step - 1, n, step))
    if not isinstance(sparse, list) or not sparse or any(not isinstance(i, int) or not 0 <= i < n for i in sparse):
        raise ConfigError(f"config.json: moe_layers must list layer indices in [0, {n}), got {sparse!r}")
    every_layer = sorted(set(sparse)) == list(range(n))
    tuning = get("attn_temperature_tuning", True) and nope
    return Llama4Config(
        **fields, nope_layers=nope or None, attention_chunk_size=chunk, qk_l2_norm=bool(get("use_qk_norm", True)),
        attn_temperature_floor=get("floor_scale", d.attn_temperature_floor) if tuning else None,
        attn_temperature_scale=float(get("attn_scale", d.attn_temperature_scale)),
        n_experts=get("num_local_experts", d.n_experts), experts_per_token=get("num_experts_per_tok", 1),
        shared_expert_d_ff=fields["d_ff"], moe_layers=None if every_layer else tuple(sorted(set(sparse))),
        dense_d_ff=None if every_layer else get("intermediate_size_mlp", 16384))
