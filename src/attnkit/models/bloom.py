"""BLOOM (BigScience 2022): a pre-norm decoder with ALiBi instead of position embeddings (Press
et al. 2022), a LayerNorm on the token embeddings (``embedding_norm``), tanh-GELU, biases
everywhere and tied embeddings. ``Bloom`` loads and saves ``BloomForCausalLM`` checkpoints
(:mod:`attnkit.interop.bloom`; BLOOM 560M to 176B, BLOOMZ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class BloomConfig(GPTConfig):
    """Sizes of a BLOOM. Defaults are BLOOM-560M's (``n_positions`` is its training context;
    ALiBi sets no hard limit)."""

    model_type = "bloom"

    vocab_size: int = 250880
    n_positions: int = 2048
    d_model: int = 1024
    n_layers: int = 24
    n_heads: int = 16
    positional: Literal["learned", "rotary", "alibi"] = "alibi"
    embedding_norm: bool = True
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = 3


class Bloom(GPT):
    """A BLOOM causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = BloomConfig
