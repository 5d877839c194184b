"""OPT (Zhang et al. 2022, Meta's Open Pre-trained Transformers): GPT-2's pre-norm decoder with
ReLU feed-forwards, biases everywhere, tied embeddings and learned positions whose table is
offset by two rows (``position_offset``: position ``p`` reads row ``p + 2``). ``OPT`` loads and
saves ``OPTForCausalLM`` checkpoints (:mod:`attnkit.interop.opt`).
"""

from __future__ import annotations

from dataclasses import dataclass

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class OPTConfig(GPTConfig):
    """Sizes of an OPT. Defaults are Hugging Face's ``OPTConfig`` (OPT-125M's shape)."""

    model_type = "opt"

    vocab_size: int = 50272
    n_positions: int = 2048
    position_offset: int = 2
    activation: str = "relu"
    dropout: float = 0.1
    bos_token_id: int | None = 2
    eos_token_id: int | None = 2
    pad_token_id: int | None = 1


class OPT(GPT):
    """An OPT causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = OPTConfig
