"""Llama (Touvron et al. 2023): the decoder-only Transformer of Llama 1-3, TinyLlama, SmolLM and
their kin, which :class:`~attnkit.models.gpt.GPT` already composes from config fields: RMSNorm
before each sublayer, rotary positions (Su et al. 2021, halves rotated), grouped-query
attention, a SwiGLU feed-forward (Shazeer 2020), no biases, and an LM head that is usually not
tied to the embeddings. ``Llama`` is that GPT under Hugging Face's ``llama`` model type, so its
checkpoints load and save in ``LlamaForCausalLM``'s layout.

Two kin differ from it by one config field each and load the same way: :class:`Mistral` (Jiang
et al. 2023) adds sliding-window attention (``sliding_window``: each position attends itself and
the 4,095 before it in Mistral-7B-v0.1; later versions set none), :class:`Qwen2` (Qwen Team 2024)
adds biases to the query/key/value projections alone (``qkv_bias``). :class:`Qwen3` (Qwen Team
2025) drops those biases for an RMSNorm over each head's queries and keys (``qk_norm``) and sets
its own ``head_dim`` (128 whatever the width). :class:`Phi3` (Abdin et al. 2024) is a Llama whose
checkpoints store q/k/v and gate/up as fused matrices, with an optional ``sliding_window``.
:class:`Mixtral` (Jiang et al. 2024) replaces the feed-forward with a sparse mixture of eight
SwiGLU experts, two per token (``n_experts``, ``experts_per_token``). :class:`Olmo2` (OLMo et
al. 2024) norms each sublayer's output instead of its input (``input_norm=False`` with
``sandwich_norm``) and all heads' queries and keys together (``qk_norm`` with
``qk_norm_per_head=False``). :class:`Olmoe` (Muennighoff et al. 2024) is a Llama with those
query/key norms and a mixture of 64 experts, 8 per token, whose weights are not renormalised.
:class:`Glm` (GLM-4) rotates the first half of each head in interleaved pairs, with q/k/v
biases; :class:`Glm4` (GLM-4-0414) adds sandwich norms. :class:`Olmo3` adds sliding-window
attention on three layers of four. :class:`Ernie4_5` rotates interleaved pairs
(``rope_interleave``); :class:`SeedOss` has q/k/v biases (``qkv_bias``). :class:`SmolLM3` drops
the rotary embedding from every fourth layer (``nope_layers``). :class:`Granite` (IBM Granite 3)
scales the embeddings, each sublayer's output, the attention scores and the logits by constants
(``embedding_multiplier``, ``residual_multiplier``, ``attn_scale_dim``, ``logits_scaling``).
:class:`Exaone4` (LG AI 2025) has OLMo 2's output norms with per-head query/key norms, and windows
with rotary positions on three layers of four, the fourth global without positions;
:class:`Helium` (Kyutai) rotates interleaved pairs. :class:`Arcee` has a squared-ReLU feed-forward
without a gate (``relu2``); :class:`Nemotron` too, with LayerNorms stored as offsets from 1
(``layernorm_offset``) and half of each head rotated. :class:`Ministral` is Mistral with the
window on the layers ``layer_types`` names. :class:`StableLm` (Stability AI 2023-24) has
LayerNorms with biases (``norm_bias``), rotates a
quarter of each head (``rotary_dim``) and, in StableLM 2, has q/k/v biases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class LlamaConfig(GPTConfig):
    """Sizes of a Llama. Defaults are Hugging Face's ``LlamaConfig`` (Llama-2-7B's shape)."""

    model_type = "llama"

    vocab_size: int = 32000
    n_positions: int = 2048
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    d_ff: int | None = 11008
    activation: str = "swiglu"
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset"] = "rmsnorm"
    norm_eps: float = 1e-6
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2


class Llama(GPT):
    """A Llama-family causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = LlamaConfig


@dataclass(frozen=True)
class MistralConfig(LlamaConfig):
    """Sizes of a Mistral. Defaults are Hugging Face's ``MistralConfig`` (Mistral-7B's shape)."""

    model_type = "mistral"

    n_positions: int = 131072
    d_ff: int | None = 14336
    n_kv_heads: int | None = 8
    sliding_window: int | None = 4096


class Mistral(GPT):
    """A Mistral causal LM: a Llama with sliding-window attention (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = MistralConfig


@dataclass(frozen=True)
class Qwen2Config(LlamaConfig):
    """Sizes of a Qwen2 / Qwen2.5. Defaults are Hugging Face's ``Qwen2Config``."""

    model_type = "qwen2"

    vocab_size: int = 151936
    n_positions: int = 32768
    d_ff: int | None = 22016
    qkv_bias: bool | None = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Qwen2(GPT):
    """A Qwen2 causal LM: a Llama with query/key/value biases (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Qwen2Config


@dataclass(frozen=True)
class Qwen3Config(LlamaConfig):
    """Sizes of a Qwen3 (dense). Defaults are Hugging Face's ``Qwen3Config``."""

    model_type = "qwen3"

    vocab_size: int = 151936
    n_positions: int = 32768
    d_ff: int | None = 22016
    head_dim: int | None = 128
    qk_norm: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Qwen3(GPT):
    """A Qwen3 causal LM: a Llama with query/key norms and its own head size (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Qwen3Config


@dataclass(frozen=True)
class Phi3Config(LlamaConfig):
    """Sizes of a Phi-3. Defaults are Hugging Face's ``Phi3Config`` (Phi-3-mini's shape)."""

    model_type = "phi3"

    vocab_size: int = 32064
    n_positions: int = 4096
    d_model: int = 3072
    d_ff: int | None = 8192
    norm_eps: float = 1e-5
    bos_token_id: int | None = 1
    eos_token_id: int | None = 32000
    pad_token_id: int | None = 32000


class Phi3(GPT):
    """A Phi-3 causal LM (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Phi3Config


@dataclass(frozen=True)
class Olmo2Config(LlamaConfig):
    """Sizes of an OLMo 2. Defaults are Hugging Face's ``Olmo2Config``."""

    model_type = "olmo2"

    vocab_size: int = 50304
    d_ff: int | None = 11008
    norm_eps: float = 1e-5
    qk_norm: bool = True
    qk_norm_per_head: bool = False
    sandwich_norm: bool = True
    input_norm: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = 50279
    pad_token_id: int | None = 1


class Olmo2(GPT):
    """An OLMo 2 causal LM: a Llama whose sublayers norm their outputs, not their inputs (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Olmo2Config


@dataclass(frozen=True)
class Olmo3Config(Olmo2Config):
    """Sizes of an OLMo 3. Defaults are Hugging Face's ``Olmo3Config``: OLMo 2 with a window of 4,096
    positions on three layers of four (every fourth attends globally) and a RoPE base of 500,000;
    RoPE scaling applies to the global layers only (``rope_local_base``)."""

    model_type = "olmo3"
    sliding_pattern: ClassVar[int | None] = 4

    rope_base: float = 500000.0
    sliding_window: int | None = 4096


class Olmo3(GPT):
    """An OLMo 3 causal LM: OLMo 2 with sliding-window attention on most layers (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Olmo3Config


@dataclass(frozen=True)
class SmolLM3Config(LlamaConfig):
    """Sizes of a SmolLM3. Defaults are Hugging Face's ``SmolLM3Config`` (SmolLM3-3B's shape): every
    fourth layer has no rotary positions (``nope_layers``)."""

    model_type = "smollm3"

    vocab_size: int = 128256
    n_positions: int = 32768
    d_model: int = 2048
    n_layers: int = 36
    n_heads: int = 16
    n_kv_heads: int | None = 4
    rope_base: float = 2000000.0
    nope_layers: tuple[int, ...] | None = tuple(range(3, 36, 4))
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 128000
    eos_token_id: int | None = 128001
    pad_token_id: int | None = 128004


class SmolLM3(GPT):
    """A SmolLM3 causal LM: a Llama whose every fourth layer attends without positions (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = SmolLM3Config


@dataclass(frozen=True)
class Ernie4_5Config(LlamaConfig):
    """Sizes of an ERNIE 4.5 (dense). Defaults are Hugging Face's ``Ernie4_5Config`` (ERNIE-4.5-0.3B's
    shape): heads of 128 whatever the width, rotary pairs interleaved (``rope_interleave``)."""

    model_type = "ernie4_5"

    vocab_size: int = 103424
    n_positions: int = 131072
    d_model: int = 1024
    n_layers: int = 18
    n_heads: int = 16
    n_kv_heads: int | None = 2
    head_dim: int | None = 128
    d_ff: int | None = 3072
    norm_eps: float = 1e-5
    rope_base: float = 500000.0
    rope_interleave: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0


class Ernie4_5(GPT):
    """An ERNIE 4.5 causal LM: a Llama whose rotary pairs are interleaved (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Ernie4_5Config


@dataclass(frozen=True)
class SeedOssConfig(LlamaConfig):
    """Sizes of a Seed-OSS (ByteDance Seed). Defaults are Hugging Face's ``SeedOssConfig``: biases on
    the query/key/value projections alone (``qkv_bias``), heads of 128."""

    model_type = "seed_oss"

    vocab_size: int = 155136
    n_positions: int = 524288
    d_model: int = 4096
    n_layers: int = 64
    n_heads: int = 80
    n_kv_heads: int | None = 8
    head_dim: int | None = 128
    d_ff: int | None = 27648
    qkv_bias: bool | None = True
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    pad_token_id: int | None = 1


class SeedOss(GPT):
    """A Seed-OSS causal LM: a Llama with q/k/v biases (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = SeedOssConfig


@dataclass(frozen=True)
class GlmConfig(LlamaConfig):
    """Sizes of a GLM-4 (``glm``: GLM-4-9B). Defaults are Hugging Face's ``GlmConfig``: heads of 128
    whose first half rotates in interleaved pairs (``rotary_dim``, ``rope_interleave``), q/k/v
    biases (``qkv_bias``), grouped-query attention with 2 key/value heads."""

    model_type = "glm"

    vocab_size: int = 151552
    n_positions: int = 131072
    n_layers: int = 40
    n_kv_heads: int | None = 2
    head_dim: int | None = 128
    d_ff: int | None = 13696
    norm_eps: float = 1.5625e-07
    rotary_dim: int | None = 64
    rope_interleave: bool = True
    qkv_bias: bool | None = True
    bos_token_id: int | None = None
    eos_token_id: int | None = 151329
    pad_token_id: int | None = 151329


class Glm(GPT):
    """A GLM-4 causal LM (``glm``; see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = GlmConfig


@dataclass(frozen=True)
class Glm4Config(GlmConfig):
    """Sizes of a GLM-4-0414 (``glm4``). Defaults are Hugging Face's ``Glm4Config``: GLM's layers
    with a norm on each sublayer's output too (``sandwich_norm``)."""

    model_type = "glm4"

    sandwich_norm: bool = True


class Glm4(GPT):
    """A GLM-4-0414 causal LM (``glm4``; see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Glm4Config


@dataclass(frozen=True)
class GraniteConfig(LlamaConfig):
    """Sizes of a Granite. Defaults are Hugging Face's ``GraniteConfig``: a Llama-2-7B shape with
    every multiplier 1, the attention's too (scores unscaled: ``attn_scale_dim`` 1). The released
    Granite 3 models set ``embedding_multiplier`` (12), ``residual_multiplier`` (0.22),
    ``logits_scaling`` (8) and ``attention_multiplier`` (1/128: ``attn_scale_dim`` = 128²)."""

    model_type = "granite"

    attn_scale_dim: float | None = 1.0


class Granite(GPT):
    """A Granite causal LM: a Llama with scaled embeddings, residual branches, scores and logits
    (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = GraniteConfig


@dataclass(frozen=True)
class OlmoeConfig(LlamaConfig):
    """Sizes of an OLMoE. Defaults are Hugging Face's ``OlmoeConfig`` (OLMoE-1B-7B's shape but its
    1,024-wide experts); ``d_ff`` is each expert's size (``intermediate_size``)."""

    model_type = "olmoe"

    vocab_size: int = 50304
    n_positions: int = 4096
    d_model: int = 2048
    n_layers: int = 16
    n_heads: int = 16
    d_ff: int | None = 2048
    qk_norm: bool = True
    qk_norm_per_head: bool = False
    n_experts: int | None = 64
    experts_per_token: int = 8
    normalize_expert_weights: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = 50279
    pad_token_id: int | None = 1


class Olmoe(GPT):
    """An OLMoE causal LM: a Llama with query/key norms over all heads and a sparse mixture of
    experts in every layer (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = OlmoeConfig


@dataclass(frozen=True)
class MixtralConfig(LlamaConfig):
    """Sizes of a Mixtral. Defaults are Hugging Face's ``MixtralConfig`` (Mixtral-8x7B's shape)."""

    model_type = "mixtral"

    n_positions: int = 131072
    d_ff: int | None = 14336
    n_kv_heads: int | None = 8
    norm_eps: float = 1e-5
    rope_base: float = 1000000.0
    n_experts: int | None = 8
    experts_per_token: int = 2


class Mixtral(GPT):
    """A Mixtral causal LM: a Llama whose feed-forwards are sparse mixtures of experts (see
    :class:`~attnkit.models.gpt.GPT`)."""

    config_class = MixtralConfig


@dataclass(frozen=True)
class Qwen3MoeConfig(Qwen3Config):
    """Sizes of a Qwen3 mixture of experts. Defaults are Qwen3-30B-A3B's (128 experts of 768, 8
    per token); ``d_ff`` is each expert's size (``moe_intermediate_size``)."""

    model_type = "qwen3_moe"

    n_positions: int = 40960
    d_model: int = 2048
    n_layers: int = 48
    n_heads: int = 32
    n_kv_heads: int | None = 4
    d_ff: int | None = 768
    rope_base: float = 1000000.0
    n_experts: int | None = 128
    experts_per_token: int = 8


class Qwen3Moe(GPT):
    """A Qwen3 mixture-of-experts causal LM (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Qwen3MoeConfig


@dataclass(frozen=True)
class Qwen2MoeConfig(Qwen2Config):
    """Sizes of a Qwen2 mixture of experts (Qwen1.5-MoE, Qwen2-57B-A14B). Defaults are
    Qwen1.5-MoE-A2.7B's: 60 experts of 1,408, 4 per token, and a shared expert of 5,632 every
    token runs; ``d_ff`` is each routed expert's size (``moe_intermediate_size``)."""

    model_type = "qwen2_moe"

    n_positions: int = 8192
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 16
    d_ff: int | None = 1408
    rope_base: float = 1000000.0
    n_experts: int | None = 60
    experts_per_token: int = 4
    normalize_expert_weights: bool = False
    shared_expert_d_ff: int | None = 5632


class Qwen2Moe(GPT):
    """A Qwen2 mixture-of-experts causal LM (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Qwen2MoeConfig


@dataclass(frozen=True)
class StableLmConfig(LlamaConfig):
    """Sizes of a StableLM. Defaults are Hugging Face's ``StableLmConfig`` (StableLM-3B-4E1T's
    shape): LayerNorms with biases (``norm_bias``) and none on the linear layers, a quarter of each
    head rotated (``rotary_dim``)."""

    model_type = "stablelm"

    vocab_size: int = 50304
    n_positions: int = 4096
    d_model: int = 2560
    n_layers: int = 32
    n_heads: int = 32
    d_ff: int | None = 6912
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset"] = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool | None = True
    rotary_dim: int | None = 20
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0


class StableLm(GPT):
    """A StableLM causal LM (StableLM-3B-4E1T, StableLM 2, Stable Code): a Llama with LayerNorms,
    partial rotary positions and, in StableLM 2, q/k/v biases (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = StableLmConfig


@dataclass(frozen=True)
class Exaone4Config(Olmo2Config):
    """Sizes of an EXAONE 4.0. Defaults are Hugging Face's ``Exaone4Config``: OLMo 2's norms on the
    sublayers' outputs, query/key norms per head, a window of 4,096 positions with rotary
    positions on three layers of four and global attention without positions on the fourth."""

    model_type = "exaone4"
    sliding_pattern: ClassVar[int | None] = 4

    vocab_size: int = 102400
    d_ff: int | None = 16384
    norm_eps: float = 1e-5
    qk_norm_per_head: bool = True
    sliding_window: int | None = 4096
    nope_layers: tuple[int, ...] | None = tuple(range(3, 32, 4))
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    pad_token_id: int | None = None


class Exaone4(GPT):
    """An EXAONE 4.0 causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = Exaone4Config


@dataclass(frozen=True)
class HeliumConfig(LlamaConfig):
    """Sizes of a Helium (Kyutai 2025). Defaults are Hugging Face's ``HeliumConfig`` (Helium 1's
    2B shape): a Llama with rotary positions in interleaved pairs (``rope_interleave``)."""

    model_type = "helium"

    vocab_size: int = 48000
    n_positions: int = 4096
    d_model: int = 2560
    n_layers: int = 24
    n_heads: int = 20
    head_dim: int | None = 128
    d_ff: int | None = 7040
    norm_eps: float = 1e-8
    rope_interleave: bool = True
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = 3


class Helium(GPT):
    """A Helium causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = HeliumConfig


@dataclass(frozen=True)
class ArceeConfig(LlamaConfig):
    """Sizes of an Arcee (AFM-4.5B). Defaults are Hugging Face's ``ArceeConfig`` but for the special
    tokens (its 128000 and 128001 lie past its own 32,000-token vocabulary): a Llama whose
    feed-forward is a squared ReLU without a gate (``activation="relu2"``)."""

    model_type = "arcee"

    n_positions: int = 4096
    d_model: int = 2560
    n_layers: int = 32
    n_heads: int = 32
    head_dim: int | None = 80
    d_ff: int | None = 18432
    activation: str = "relu2"
    norm_eps: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Arcee(GPT):
    """An Arcee causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = ArceeConfig


@dataclass(frozen=True)
class NemotronConfig(LlamaConfig):
    """Sizes of a Nemotron (NVIDIA Nemotron-4, Minitron). Defaults are Hugging Face's
    ``NemotronConfig`` (Nemotron-4 15B's shape): LayerNorms whose weights are stored as an offset
    from 1 (``layernorm_offset``) with biases where the linear layers have none, a squared ReLU
    without a gate, half of each head rotated."""

    model_type = "nemotron"

    vocab_size: int = 256000
    n_positions: int = 4096
    d_model: int = 6144
    n_layers: int = 32
    n_heads: int = 48
    d_ff: int | None = 24576
    activation: str = "relu2"
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset", "layernorm_offset"] = "layernorm_offset"
    norm_eps: float = 1e-5
    norm_bias: bool | None = True
    rotary_dim: int | None = 64
    initializer_range: float = 0.0134
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3


class Nemotron(GPT):
    """A Nemotron causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = NemotronConfig


@dataclass(frozen=True)
class MinistralConfig(MistralConfig):
    """Sizes of a Ministral. Defaults are Hugging Face's ``MinistralConfig``: Mistral's, with the
    window on the layers ``layer_types`` names (all by default)."""

    model_type = "ministral"


class Ministral(GPT):
    """A Ministral causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = MinistralConfig


@dataclass(frozen=True)
class GraniteMoeConfig(GraniteConfig):
    """Sizes of a Granite mixture of experts (Granite 3.0/3.1 1B-A400M, 3B-A800M). Defaults are
    Hugging Face's ``GraniteMoeConfig``: Granite's multipliers and 8 experts, 2 per token, in every
    layer; ``d_ff`` is each expert's size."""

    model_type = "granitemoe"

    d_ff: int | None = 11008
    n_experts: int | None = 8
    experts_per_token: int = 2


class GraniteMoe(GPT):
    """A Granite mixture-of-experts causal LM (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = GraniteMoeConfig


@dataclass(frozen=True)
class Ernie4_5MoeConfig(Ernie4_5Config):
    """Sizes of an ERNIE 4.5 mixture of experts. Defaults are Hugging Face's ``Ernie4_5_MoeConfig``
    (ERNIE-4.5-21B-A3B's shape): 64 experts of 1,536, 6 per token, chosen by softmax scores shifted
    by a learned bias (``router_score_bias``), two shared experts, the first layer dense; ``d_ff``
    is each expert's size."""

    model_type = "ernie4_5_moe"

    d_model: int = 2560
    n_layers: int = 28
    n_heads: int = 20
    n_kv_heads: int | None = 4
    head_dim: int | None = None
    d_ff: int | None = 1536
    n_experts: int | None = 64
    experts_per_token: int = 6
    router_score_bias: bool | None = True
    shared_expert_d_ff: int | None = 3072
    shared_expert_gated: bool = False
    moe_layers: tuple[int, ...] | None = tuple(range(1, 28))
    dense_d_ff: int | None = 12288
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2


class Ernie4_5Moe(GPT):
    """An ERNIE 4.5 mixture-of-experts causal LM (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Ernie4_5MoeConfig


@dataclass(frozen=True)
class OlmoConfig(LlamaConfig):
    """Sizes of an OLMo (Groeneveld et al. 2024, OLMo 1). Defaults are Hugging Face's
    ``OlmoConfig`` (OLMo-7B's shape): a Llama whose LayerNorms have neither weight nor bias
    (``layernorm_unweighted``), its queries, keys and values optionally clamped (``clip_qkv``)."""

    model_type = "olmo"

    vocab_size: int = 50304
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset", "layernorm_offset",
                  "layernorm_unweighted"] = "layernorm_unweighted"
    norm_eps: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | None = 50279
    pad_token_id: int | None = 1


class Olmo(GPT):
    """An OLMo (1) causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = OlmoConfig


@dataclass(frozen=True)
class HunYuanDenseConfig(LlamaConfig):
    """Sizes of a Hunyuan dense model (Tencent 2025: Hunyuan-0.5B to 7B). Defaults are Hugging
    Face's ``HunYuanDenseV1Config``: a Llama whose per-head query/key norms come after the rotary
    embedding (``qk_norm_after_rope``)."""

    model_type = "hunyuan_v1_dense"

    vocab_size: int = 290943
    norm_eps: float = 1e-5
    qk_norm: bool = True
    qk_norm_after_rope: bool = True


class HunYuanDense(GPT):
    """A Hunyuan dense causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = HunYuanDenseConfig
