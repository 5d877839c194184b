"""MPT (MosaicML 2023: MPT-7B, MPT-30B): a pre-norm decoder with ALiBi positions, no biases
(the LayerNorms have none either), exact GELU, tied embeddings, and optionally queries, keys and
values clamped (``clip_qkv``). ``Mpt`` loads and saves ``MptForCausalLM`` checkpoints
(:mod:`attnkit.interop.mpt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class MptConfig(GPTConfig):
    """Sizes of an MPT. Defaults are Hugging Face's ``MptConfig`` (``n_positions`` is the
    training context; ALiBi sets no hard limit)."""

    model_type = "mpt"

    vocab_size: int = 50368
    n_positions: int = 2048
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 16
    activation: str = "gelu"
    positional: Literal["learned", "rotary", "alibi"] = "alibi"
    bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class Mpt(GPT):
    """An MPT causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = MptConfig
