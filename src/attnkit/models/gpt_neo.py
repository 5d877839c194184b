"""GPT-Neo (Black et al. 2021, EleutherAI): GPT-2's architecture (learned positions, pre-norm
LayerNorms, tanh-GELU, tied embeddings) with two changes, both config fields of
:class:`~attnkit.models.gpt.GPT`: every other layer attends within a window of 256 positions
(``sliding_window``, ``sliding_layers``; the others over the whole context), and the attention
scores are not scaled by ``1/√D`` (``attn_scale_dim=1``). The query/key/value projections have no
biases, the output projection and the feed-forward do. ``GPTNeo`` loads and saves
``GPTNeoForCausalLM`` checkpoints (:mod:`attnkit.interop.gpt_neo`).
"""

from __future__ import annotations

from dataclasses import dataclass

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class GPTNeoConfig(GPTConfig):
    """Sizes of a GPT-Neo. Defaults are Hugging Face's ``GPTNeoConfig`` (GPT-Neo 1.3B's shape)."""

    model_type = "gpt_neo"

    n_positions: int = 2048
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 16
    qkv_bias: bool | None = False
    attn_scale_dim: float | None = 1.0
    sliding_window: int | None = 256
    sliding_layers: tuple[int, ...] | None = tuple(range(1, 24, 2))


class GPTNeo(GPT):
    """A GPT-Neo causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = GPTNeoConfig
