"""Falcon (Almazrouei et al. 2023, TII): a decoder whose layers run attention and the
feed-forward side by side (``parallel_residual``) under one LayerNorm (Falcon-7B,
``shared_norm``) or one each (Falcon-40B and 180B), with rotary positions, multi-query
attention (7B: ``n_kv_heads=1``) or grouped-query attention (40B: 8 key/value heads), exact
GELU, LayerNorms with biases and no linear biases (``norm_bias``), and tied embeddings.
``Falcon`` loads and saves ``FalconForCausalLM`` checkpoints (:mod:`attnkit.interop.falcon`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class FalconConfig(GPTConfig):
    """Sizes of a Falcon. Defaults are Falcon-7B's (Hugging Face's ``FalconConfig``)."""

    model_type = "falcon"

    vocab_size: int = 65024
    n_positions: int = 2048
    d_model: int = 4544
    n_layers: int = 32
    n_heads: int = 71
    n_kv_heads: int | None = 1
    d_ff: int | None = 18176
    activation: str = "gelu"
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    bias: bool = False
    norm_bias: bool | None = True
    parallel_residual: bool = True
    shared_norm: bool = True
    bos_token_id: int | None = 11
    eos_token_id: int | None = 11


class Falcon(GPT):
    """A Falcon causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = FalconConfig
