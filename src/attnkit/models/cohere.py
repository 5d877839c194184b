"""Cohere's Command R and Aya (Cohere For AI 2024): a GPT whose layers run self-attention and a
SwiGLU feed-forward side by side on one shared LayerNorm without bias (``parallel_residual`` with
``shared_norm``), rotary positions rotated in interleaved pairs (``rope_interleave``), no biases,
tied embeddings and logits multiplied by ``logit_scale`` (attnkit's ``logits_scaling`` is its
inverse). :class:`~attnkit.models.gpt.GPT` composes it from config fields; ``Cohere`` is that GPT
under Hugging Face's ``cohere`` model type, so ``CohereForCausalLM`` checkpoints load and save.
``Cohere2`` (Command R7B, Command A) adds a window of 4,096 positions on three layers of four and
drops the rotary positions from the fourth (``nope_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class CohereConfig(GPTConfig):
    """Sizes of a Cohere model. Defaults are Hugging Face's ``CohereConfig`` (Command R's shape, 35B
    parameters), but for the special tokens: the end of turn of the released tokenizers
    (``<|END_OF_TURN_TOKEN|>``, 255001) is past the default vocabulary only in tiny test configs."""

    model_type = "cohere"

    vocab_size: int = 256000
    n_positions: int = 8192
    d_model: int = 8192
    n_layers: int = 40
    n_heads: int = 64
    d_ff: int | None = 22528
    activation: str = "swiglu"
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    rope_base: float = 500000.0
    rope_interleave: bool = True
    bias: bool = False
    parallel_residual: bool = True
    shared_norm: bool = True
    logits_scaling: float = 16.0
    bos_token_id: int | None = 5
    eos_token_id: int | None = 255001
    pad_token_id: int | None = 0


class Cohere(GPT):
    """A Command R / Aya causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = CohereConfig


@dataclass(frozen=True)
class Cohere2Config(CohereConfig):
    """Sizes of a Cohere 2 model (Command R7B, Command A). Defaults are Hugging Face's
    ``Cohere2Config``: three layers of four attend within a window of 4,096 positions with rotary
    positions (``sliding_pattern``), the fourth over the whole context without positions
    (``nope_layers``)."""

    model_type = "cohere2"
    sliding_pattern: ClassVar[int | None] = 4

    rope_base: float = 10000.0
    sliding_window: int | None = 4096
    nope_layers: tuple[int, ...] | None = tuple(range(3, 40, 4))


class Cohere2(GPT):
    """A Command R7B / Command A causal LM: Command R's layers, windowed with rotary positions on
    three of four, global without positions on the fourth (see :class:`~attnkit.models.gpt.GPT`)."""

    config_class = Cohere2Config
