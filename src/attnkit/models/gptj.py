"""GPT-J (Wang and Komatsuzaki 2021): GPT-J-6B, the first open 6B GPT. Its layers run
self-attention and the feed-forward side by side on one shared LayerNorm (``parallel_residual``
with ``shared_norm``), with rotary positions on the first 64 dimensions of each 256-wide head,
rotated in interleaved pairs (``rotary_dim``, ``rope_interleave``), no attention biases
(``qkv_bias``, ``attn_out_bias``) but biases on the feed-forward, the LayerNorms and the LM head
(``lm_head_bias``). :class:`~attnkit.models.gpt.GPT` composes it from config fields; ``GPTJ`` is
that GPT under Hugging Face's ``gptj`` model type, so ``GPTJForCausalLM`` checkpoints load and save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class GPTJConfig(GPTConfig):
    """Sizes of a GPT-J. Defaults are Hugging Face's ``GPTJConfig`` (GPT-J-6B's shape)."""

    model_type = "gptj"

    vocab_size: int = 50400
    n_positions: int = 2048
    d_model: int = 4096
    n_layers: int = 28
    n_heads: int = 16
    rotary_dim: int | None = 64
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    rope_interleave: bool = True
    parallel_residual: bool = True
    shared_norm: bool = True
    qkv_bias: bool | None = False
    attn_out_bias: bool | None = False
    lm_head_bias: bool = True
    tie_word_embeddings: bool = False


class GPTJ(GPT):
    """A GPT-J causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = GPTJConfig
