"""StarCoder2 (Lozhkov et al. 2024): the BigCode code models, a GPT with rotary positions,
grouped-query attention, LayerNorms and biases everywhere, an ungated tanh-GELU feed-forward and
a sliding window of 4,096 positions. :class:`~attnkit.models.gpt.GPT` composes it from config
fields; ``Starcoder2`` is that GPT under Hugging Face's ``starcoder2`` model type, so
``Starcoder2ForCausalLM`` checkpoints load and save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class Starcoder2Config(GPTConfig):
    """Sizes of a StarCoder2. Defaults are Hugging Face's ``Starcoder2Config`` (StarCoder2-3B's shape),
    but the special tokens are the released checkpoints' (id 0): HF's default, 50256, is past the
    49,152-token vocabulary."""

    model_type = "starcoder2"

    vocab_size: int = 49152
    n_positions: int = 4096
    d_model: int = 3072
    n_layers: int = 30
    n_heads: int = 24
    n_kv_heads: int | None = 2
    d_ff: int | None = 12288
    positional: Literal["learned", "rotary", "alibi"] = "rotary"
    initializer_range: float = 0.018042
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0


class Starcoder2(GPT):
    """A StarCoder2 causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = Starcoder2Config
