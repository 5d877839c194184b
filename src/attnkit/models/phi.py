"""Phi-1, Phi-1.5 and Phi-2 (Gunasekar et al. 2023; Li et al. 2023; Microsoft 2023): small GPTs
whose layers run self-attention and the feed-forward side by side on the output of one shared
LayerNorm (``parallel_residual`` with ``shared_norm``: ``x + attn(norm(x)) + ffn(norm(x))``,
GPT-J's layout), with rotary positions on part of each head (``rotary_dim``: 32 of Phi-2's 80),
biases everywhere (the LM head's too: ``lm_head_bias``), tanh-GELU and an untied head.
:class:`~attnkit.models.gpt.GPT` composes it from config fields; ``Phi`` is that GPT under
Hugging Face's ``phi`` model type, so ``PhiForCausalLM`` checkpoints load and save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class PhiConfig(GPTConfig):
    """Sizes of a Phi. Defaults are Hugging Face's ``PhiConfig`` (Phi-1.5's shape: 2,048 wide, 24
    layers, half of each 64-wide head rotated)."""

    model_type = "phi"

    vocab_size: int = 51200
    n_positions: int = 2048
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 32
    d_ff: int | None = 8192
    rotary_dim: int | None = 32
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    parallel_residual: bool = True
    shared_norm: bool = True
    lm_head_bias: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2


class Phi(GPT):
    """A Phi-1/1.5/2 causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = PhiConfig
