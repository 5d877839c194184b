"""DeepSeek-V3 (DeepSeek-AI 2024): a Llama-style decoder (RMSNorm, rotary positions, SwiGLU,
untied head) with two changes, both built from :class:`~attnkit.models.gpt.GPTConfig` fields.

- **Multi-head latent attention** (``kv_lora_rank``, ``q_lora_rank``, ``v_head_dim``;
  :class:`attnkit.nn.MultiHeadLatentAttention`): keys and values come from one 512-wide latent
  per position, queries from a 1,536-wide one; each 192-wide query/key head has 128 dimensions
  without a position and ``rotary_dim`` = 64 rotary ones, and the values are 128 wide. The KV
  cache holds the latent and the shared rotary key: 576 + 512 numbers per position and layer
  for 128 heads.
- **DeepSeekMoE** (``n_experts`` = 256, 8 per token): the first three layers are dense
  (``moe_layers``, ``dense_d_ff``); the others route with sigmoid scores (``router_scoring``)
  shifted by a learned bias for the choice, limited to the best 4 of 8 expert groups
  (``expert_groups``, ``expert_groups_per_token``), the chosen weights renormalised and
  multiplied by ``routed_scaling_factor`` (2.5), plus an ungated shared expert
  (``shared_expert_d_ff``, ``shared_expert_gated=False``).

The scores are scaled by ``head_dim ** -0.5`` times YaRN's ``mscale_all_dim`` correction squared
(``attn_scale_dim``). Checkpoints load and save in ``DeepseekV3ForCausalLM``'s layout
(:mod:`attnkit.interop.deepseek_v3`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT
from attnkit.models.llama import LlamaConfig


@dataclass(frozen=True)
class DeepseekV3Config(LlamaConfig):
    """Sizes of a DeepSeek-V3. Defaults are Hugging Face's ``DeepseekV3Config`` (DeepSeek-V3's
    shape, 671B parameters); ``d_ff`` is each routed expert's size (``moe_intermediate_size``)."""

    model_type = "deepseek_v3"

    vocab_size: int = 129280
    n_positions: int = 4096
    d_model: int = 7168
    n_layers: int = 61
    n_heads: int = 128
    head_dim: int | None = 192
    rotary_dim: int | None = 64
    d_ff: int | None = 2048
    norm_eps: float = 1e-6
    kv_lora_rank: int | None = 512
    q_lora_rank: int | None = 1536
    v_head_dim: int | None = 128
    rope_interleave: bool = True
    n_experts: int | None = 256
    experts_per_token: int = 8
    router_scoring: Literal["softmax", "sigmoid"] = "sigmoid"
    expert_groups: int | None = 8
    expert_groups_per_token: int | None = 4
    routed_scaling_factor: float = 2.5
    shared_expert_d_ff: int | None = 2048
    shared_expert_gated: bool = False
    moe_layers: tuple[int, ...] | None = tuple(range(3, 61))
    dense_d_ff: int | None = 18432
    bos_token_id: int | None = 0
    eos_token_id: int | None = 1


class DeepseekV3(GPT):
    """A DeepSeek-V3 causal LM: multi-head latent attention and DeepSeekMoE (see the module doc
    and :class:`~attnkit.models.gpt.GPT`)."""

    config_class = DeepseekV3Config


@dataclass(frozen=True)
class DeepseekV2Config(DeepseekV3Config):
    """Sizes of a DeepSeek-V2 (DeepSeek-AI 2024, "DeepSeek-V2"). Defaults are DeepSeek-V2-Lite's
    (15.7B parameters): DeepSeek-V3's latent attention (queries straight from the input, no
    latent) and DeepSeekMoE as V2 routes it: softmax scores without a score bias, the chosen
    weights as they are (not renormalised), and, where there are ``expert_groups`` (DeepSeek-V2's
    ``group_limited_greedy``), each group scored by its best expert (``expert_group_score="max"``)."""

    model_type = "deepseek_v2"

    vocab_size: int = 102400
    n_positions: int = 163840
    d_model: int = 2048
    n_layers: int = 27
    n_heads: int = 16
    d_ff: int | None = 1408
    q_lora_rank: int | None = None
    n_experts: int | None = 64
    experts_per_token: int = 6
    normalize_expert_weights: bool = False
    router_scoring: Literal["softmax", "sigmoid"] = "softmax"
    router_score_bias: bool | None = False
    expert_groups: int | None = None
    expert_groups_per_token: int | None = None
    routed_scaling_factor: float = 1.0
    shared_expert_d_ff: int | None = 2816
    moe_layers: tuple[int, ...] | None = tuple(range(1, 27))
    dense_d_ff: int | None = 10944
    bos_token_id: int | None = 100000
    eos_token_id: int | None = 100001


class DeepseekV2(GPT):
    """A DeepSeek-V2 causal LM (see :class:`DeepseekV2Config` and :class:`~attnkit.models.gpt.GPT`)."""

    config_class = DeepseekV2Config


@dataclass(frozen=True)
class Glm4MoeConfig(LlamaConfig):
    """Sizes of a GLM-4.5 (Zhipu AI 2025; GLM-4.5, 4.6, 4.5-Air). Defaults are Hugging Face's
    ``Glm4MoeConfig`` with GLM-4.5-Air's ``head_dim`` of 128 (``transformers``' default is
    ``hidden_size // num_attention_heads``): grouped-query attention with half of each head
    rotated, and DeepSeekMoE (sigmoid scores with a score bias, a shared expert, the first layer
    dense); ``d_ff`` is each routed expert's size. The released checkpoints add q/k/v biases
    (``qkv_bias``) and, in GLM-4.5, per-head query/key norms (``qk_norm``)."""

    model_type = "glm4_moe"

    vocab_size: int = 151552
    n_positions: int = 131072
    d_model: int = 4096
    n_layers: int = 46
    n_heads: int = 96
    n_kv_heads: int | None = 8
    head_dim: int | None = 128
    rotary_dim: int | None = 64
    d_ff: int | None = 1408
    norm_eps: float = 1e-5
    n_experts: int | None = 128
    experts_per_token: int = 8
    router_scoring: Literal["softmax", "sigmoid"] = "sigmoid"
    shared_expert_d_ff: int | None = 1408
    shared_expert_gated: bool = False
    moe_layers: tuple[int, ...] | None = tuple(range(1, 46))
    dense_d_ff: int | None = 10944
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Glm4Moe(GPT):
    """A GLM-4.5 causal LM: GQA attention and DeepSeekMoE (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Glm4MoeConfig


@dataclass(frozen=True)
class Dots1Config(LlamaConfig):
    """Sizes of a dots.llm1 (rednote hi lab 2025). Defaults are Hugging Face's ``Dots1Config`` but
    for its unset mixture (dots.llm1's 128 experts, 6 per token, 2 shared, the first layer dense):
    Qwen3's attention (per-head query/key norms) and DeepSeekMoE; ``d_ff`` is each routed
    expert's size."""

    model_type = "dots1"

    vocab_size: int = 152064
    n_positions: int = 2048
    d_model: int = 4608
    n_layers: int = 62
    n_heads: int = 32
    d_ff: int | None = 1408
    qk_norm: bool = True
    n_experts: int | None = 128
    experts_per_token: int = 6
    normalize_expert_weights: bool = False
    router_scoring: Literal["softmax", "sigmoid"] = "sigmoid"
    shared_expert_d_ff: int | None = 2816
    shared_expert_gated: bool = False
    moe_layers: tuple[int, ...] | None = tuple(range(1, 62))
    dense_d_ff: int | None = 10944
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Dots1(GPT):
    """A dots.llm1 causal LM: Qwen3's attention and DeepSeekMoE (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Dots1Config
