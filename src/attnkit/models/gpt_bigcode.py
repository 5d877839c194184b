"""GPTBigCode (BigCode 2023: SantaCoder, StarCoder, StarCoderBase, WizardCoder, OctoCoder): GPT-2's
architecture (learned positions, pre-norm LayerNorms, tanh-GELU, biases, tied embeddings) with
multi-query attention (Shazeer 2019): one key/value head shared by every query head
(``n_kv_heads=1``; ``multi_query=False`` checkpoints have as many as query heads). ``GPTBigCode``
loads and saves ``GPTBigCodeForCausalLM`` checkpoints (:mod:`attnkit.interop.gpt_bigcode`).
"""

from __future__ import annotations

from dataclasses import dataclass

from attnkit.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class GPTBigCodeConfig(GPTConfig):
    """Sizes of a GPTBigCode model. Defaults are Hugging Face's ``GPTBigCodeConfig`` (GPT-2
    small's shape, multi-query)."""

    model_type = "gpt_bigcode"

    n_kv_heads: int | None = 1
    activation: str = "gelu_tanh"
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256


class GPTBigCode(GPT):
    """A GPTBigCode causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = GPTBigCodeConfig
