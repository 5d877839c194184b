"""Llama 4 (Meta 2025): the text model of Llama 4 Scout and Maverick, a Llama-style decoder
(RMSNorm, rotary positions, SwiGLU, grouped-query attention, untied head) built from
:class:`~attnkit.models.gpt.GPTConfig` fields:

- **Interleaved positions** (iRoPE): every fourth layer has no rotary positions (``nope_layers``)
  and attends over the whole context; the others rotate interleaved pairs (``rope_interleave``)
  and attend within chunks of 8,192 positions (``attention_chunk_size``): a query sees the keys
  of its own chunk only, positions counted from each row's first real token.
- **Query/key norms** on the rotary layers: a weightless RMS norm of each head (``qk_l2_norm``).
- **Temperature tuning** on the layers without positions (``attn_temperature_floor``,
  ``attn_temperature_scale``): the query at slot ``p`` is multiplied by
  ``1 + 0.1 · log(1 + ⌊(p + 1) / 8192⌋)``.
- **Mixture of experts**: 16 experts (Scout; 128 in Maverick, on every other layer:
  ``moe_layers``, with ``dense_d_ff`` elsewhere), one per token, chosen by a sigmoid router
  without a score bias or renormalisation (``router_scoring``, ``router_score_bias``,
  ``normalize_expert_weights``); the weight scales the expert's input, not its output
  (``expert_input_weights``), and an ungated shared expert runs on every token.

Checkpoints load and save in ``Llama4ForCausalLM``'s layout, and the text model loads out of a
``Llama4ForConditionalGeneration`` checkpoint (the released ones) as well
(:mod:`attnkit.interop.llama4`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT
from attnkit.models.llama import LlamaConfig


@dataclass(frozen=True)
class Llama4Config(LlamaConfig):
    """Sizes of a Llama 4 text model. Defaults are Hugging Face's ``Llama4TextConfig`` (Llama 4
    Scout 17B-16E's shape, without its RoPE scaling); ``d_ff`` is each expert's size
    (``intermediate_size``)."""

    model_type = "llama4_text"

    vocab_size: int = 202048
    n_positions: int = 131072
    d_model: int = 5120
    n_layers: int = 48
    n_heads: int = 40
    n_kv_heads: int | None = 8
    head_dim: int | None = 128
    d_ff: int | None = 8192
    norm_eps: float = 1e-5
    rope_base: float = 500000.0
    rope_interleave: bool = True
    nope_layers: tuple[int, ...] | None = tuple(range(3, 48, 4))
    attention_chunk_size: int | None = 8192
    qk_l2_norm: bool = True
    attn_temperature_floor: int | None = 8192
    attn_temperature_scale: float = 0.1
    n_experts: int | None = 16
    experts_per_token: int = 1
    normalize_expert_weights: bool = False
    router_scoring: Literal["softmax", "sigmoid"] = "sigmoid"
    router_score_bias: bool | None = False
    expert_input_weights: bool = True
    shared_expert_d_ff: int | None = 8192
    shared_expert_gated: bool = False
    dense_d_ff: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2


class Llama4(GPT):
    """A Llama 4 causal LM (the text model): chunked rotary layers and global layers without
    positions, and a mixture of experts (see the module doc and :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Llama4Config
