"""GPT-NeoX (Black et al. 2022) and Pythia (Biderman et al. 2023): a GPT whose layers run
self-attention and the feed-forward side by side on the same input (``parallel_residual``:
``x + attn(norm(x)) + ffn(norm'(x))``, as GPT-J), with rotary positions on the first quarter of
each head (``rotary_dim``), LayerNorms and biases, exact GELU and an untied LM head.
:class:`~attnkit.models.gpt.GPT` composes it from config fields; ``GPTNeoX`` is that GPT under
Hugging Face's ``gpt_neox`` model type, so ``GPTNeoXForCausalLM`` checkpoints (Pythia's suite,
GPT-NeoX-20B) load and save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class GPTNeoXConfig(GPTConfig):
    """Sizes of a GPT-NeoX. Defaults are Pythia-160M's; ``rotary_dim`` None rotates whole heads
    (Pythia rotates a quarter: 16 of 64)."""

    model_type = "gpt_neox"

    vocab_size: int = 50304
    n_positions: int = 2048
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    rotary_dim: int | None = 16
    activation: str = "gelu"
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    parallel_residual: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0


class GPTNeoX(GPT):
    """A GPT-NeoX / Pythia causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = GPTNeoXConfig
