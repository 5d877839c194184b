"""Phi-3 <-> attnkit Phi3 (``Phi3ForCausalLM``'s layout): Llama's model under other keys. The
checkpoint stores q/k/v as one ``qkv_proj`` (attnkit's layout already) and the gate and up
projections as one ``gate_up_proj`` (gate rows first), which is split into attnkit's ``fc_gate``
and ``fc_in`` and joined back on save. Config fields as Llama's (:mod:`attnkit.interop.llama`)
plus ``sliding_window``, the residual dropout, LongRoPE scaling (the 128k variants, Phi-3.5,
Phi-4-mini; the legacy ``su`` and ``yarn`` names are LongRoPE, as transformers reads them), the
top-level ``original_max_position_embeddings`` (4,096 when absent) and a
``partial_rotary_factor`` below 1 (Phi-4-mini: ``rotary_dim``).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename
from attnkit.interop import llama
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Phi3, Phi3Config

MODEL_TYPE = "phi3"
MODELS = {"Phi3": Phi3}
ARCHITECTURES = {"Phi3ForCausalLM": "Phi3"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = (r"rotary_emb\.inv_freq$",)


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    return [
        Rename("wte.weight", "model.embed_tokens.weight"),
        Rename(n + "attn.qkv_proj.weight", h + "self_attn.qkv_proj.weight"),
        Rename(n + "attn.out_proj.weight", h + "self_attn.o_proj.weight"),
        Rename((n + "ffn.fc_gate.weight", n + "ffn.fc_in.weight"), h + "mlp.gate_up_proj.weight"),
        Rename(n + "ffn.fc_out.weight", h + "mlp.down_proj.weight"),
        Rename(n + "attn_norm.weight", h + "input_layernorm.weight"),
        Rename(n + "ffn_norm.weight", h + "post_attention_layernorm.weight"),
        Rename("decoder.norm.weight", "model.norm.weight"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``Phi3Config`` fields, or None for a variant ``Phi3ForCausalLM`` cannot represent
    (biases, query/key norms, a gate other than SiLU's, RoPE scalings other than LongRoPE)."""
    c: Phi3Config = model.config
    fields = llama_fields(c, {"sliding_window", "rotary_dim"})
    scaling = c.rope_scaling or {"rope_type": None}
    if fields is None or c.bias or c.activation != "swiglu" or scaling["rope_type"] not in (None, "longrope"):
        return None
    fields["rope_parameters"]["partial_rotary_factor"] = (c.rotary_dim or c.dim_per_head) / c.dim_per_head
    return dict(model_type=MODEL_TYPE, **fields, sliding_window=c.sliding_window, resid_pdrop=c.dropout,
                embd_pdrop=c.dropout,
                original_max_position_embeddings=scaling.get("original_max_position_embeddings", c.n_positions))


def config_from_hf(hf: dict, model_class: type) -> Phi3Config:
    """``Phi3Config`` from a HF Phi-3 config dict (HF's defaults for absent fields)."""
    window = hf.get("sliding_window")
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer or null")
    hf = {**hf, "original_max_position_embeddings": hf.get("original_max_position_embeddings") or 4096}
    for key in ("rope_scaling", "rope_parameters"):  # transformers' reading of the legacy names
        params = hf.get(key) or {}
        if params.get("rope_type", params.get("type")) in ("su", "yarn"):
            hf[key] = {**params, "rope_type": "longrope", "type": "longrope"}
    fields = llama_config_fields(hf, Phi3Config(), partial_rotary=True)
    return Phi3Config(**fields, sliding_window=window, dropout=float(hf.get("resid_pdrop", 0.0) or 0.0))
