"""GPT-OSS (OpenAI 2025, gpt-oss-20b and gpt-oss-120b): a mixture-of-experts decoder built from
:class:`~attnkit.models.gpt.GPTConfig` fields:

- **Attention sinks** (``attn_sinks``): each head has a learned logit that takes its share of
  every softmax and contributes nothing, so a query may attend to "nothing"
  (:func:`attnkit.nn.scaled_dot_product_attention`'s ``sinks``).
- Every other layer attends within a window of 128 positions (``sliding_window``,
  ``sliding_layers``), the others over the whole context; YaRN-scaled rotary positions; biases
  on the attention projections.
- **Experts**: 32 (20b) or 128 (120b), 4 per token, chosen by a router with a bias, weighted by
  the softmax of the chosen logits; each expert is a clamped SwiGLU with biases
  (``swiglu_clamped``: ``g · σ(1.702 g) · (u + 1)``, ``g ≤ 7``, ``|u| ≤ 7``).

Checkpoints load and save in ``GptOssForCausalLM``'s layout (:mod:`attnkit.interop.gpt_oss`;
the stacked experts with their gate and up outputs alternating). The released weights are
MXFP4-quantised experts; attnkit reads bf16/fp32 checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnkit.models.gpt import GPT
from attnkit.models.llama import LlamaConfig
from attnkit.nn.positional import yarn_mscale


def _yarn() -> dict:
    """GPT-OSS's RoPE scaling: YaRN from 4,096 to 131,072 positions, not truncated."""
    return {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
            "attention_factor": yarn_mscale(32.0), "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False}


@dataclass(frozen=True)
class GptOssConfig(LlamaConfig):
    """Sizes of a GPT-OSS. Defaults are Hugging Face's ``GptOssConfig`` (gpt-oss-120b's shape);
    ``d_ff`` is each expert's size."""

    model_type = "gpt_oss"

    vocab_size: int = 201088
    n_positions: int = 131072
    d_model: int = 2880
    n_layers: int = 36
    n_heads: int = 64
    n_kv_heads: int | None = 8
    head_dim: int | None = 64
    d_ff: int | None = 2880
    activation: str = "swiglu_clamped"
    norm_eps: float = 1e-5
    rope_base: float = 150000.0
    rope_scaling: dict | None = field(default_factory=_yarn)
    bias: bool = True
    attn_sinks: bool = True
    sliding_window: int | None = 128
    sliding_layers: tuple[int, ...] | None = tuple(range(0, 36, 2))
    n_experts: int | None = 128
    experts_per_token: int = 4
    router_bias: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class GptOss(GPT):
    """A GPT-OSS causal LM: attention sinks, alternating windows and a mixture of clamped-SwiGLU
    experts (see the module doc and :class:`~attnkit.models.gpt.GPT`)."""

    config_class = GptOssConfig
