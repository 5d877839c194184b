"""Gemma (Gemma Team 2024a), Gemma 2 (2024b) and Gemma 3 (2025, text): Llama-like decoders that
:class:`~attnkit.models.gpt.GPT` composes from config fields.

- **Gemma**: a GeGLU feed-forward (GELU, tanh approximation), heads of 256 whatever the width,
  token embeddings scaled by √d_model, RMSNorm weights stored as an offset from 1
  (``norm="rmsnorm_offset"``), and an LM head tied to the embeddings.
- **Gemma 2** adds a norm on each sublayer's output as well (``sandwich_norm``), a sliding
  window on every other layer from the first (``sliding_layers``), attention scores scaled by
  ``query_pre_attn_scalar`` (``attn_scale_dim``) rather than the head size, and soft-capped
  attention scores and logits, ``c · tanh(x / c)`` (``attn_softcap`` 50, ``logit_softcap`` 30).
- **Gemma 3** drops the soft caps for query/key norms (``qk_norm``), keeps the window on five
  layers of every six, and gives those layers their own RoPE base (``rope_local_base``, 10,000;
  the global layers' is 1,000,000, with linear scaling in the 4B-27B models).

Soft-capped attention has no fused kernel: Gemma 2 attends on the reference path, with its
``(B, H, T, S)`` scores, as ``transformers`` does (its SDPA path refuses soft caps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from attnkit.models.gpt import GPT
from attnkit.models.llama import LlamaConfig


@dataclass(frozen=True)
class GemmaConfig(LlamaConfig):
    """Sizes of a Gemma. Defaults are Hugging Face's ``GemmaConfig`` (Gemma-7B's shape)."""

    model_type = "gemma"

    vocab_size: int = 256000
    n_positions: int = 8192
    d_model: int = 3072
    n_layers: int = 28
    n_heads: int = 16
    head_dim: int | None = 256
    d_ff: int | None = 24576
    activation: str = "geglu_tanh"
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset"] = "rmsnorm_offset"
    embed_scale: bool = True
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 2
    eos_token_id: int | None = 1
    pad_token_id: int | None = 0


class Gemma(GPT):
    """A Gemma causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = GemmaConfig


@dataclass(frozen=True)
class Gemma2Config(GemmaConfig):
    """Sizes of a Gemma 2. Defaults are Hugging Face's ``Gemma2Config`` (Gemma-2-2B's shape).
    ``sliding_layers=None`` with a ``sliding_window`` means every other layer from the first."""

    model_type = "gemma2"
    sliding_pattern: ClassVar[int | None] = 2

    d_model: int = 2304
    n_layers: int = 26
    n_heads: int = 8
    n_kv_heads: int | None = 4
    d_ff: int | None = 9216
    sliding_window: int | None = 4096
    attn_scale_dim: int | None = 256
    attn_softcap: float | None = 50.0
    logit_softcap: float | None = 30.0
    sandwich_norm: bool = True


class Gemma2(GPT):
    """A Gemma 2 causal LM (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = Gemma2Config


@dataclass(frozen=True)
class Gemma3Config(GemmaConfig):
    """Sizes of a Gemma 3 text model. Defaults are Hugging Face's ``Gemma3TextConfig``.
    ``sliding_layers=None`` with a ``sliding_window`` means five layers of every six."""

    model_type = "gemma3_text"
    sliding_pattern: ClassVar[int | None] = 6

    vocab_size: int = 262208
    n_positions: int = 131072
    d_model: int = 2304
    n_layers: int = 26
    n_heads: int = 8
    n_kv_heads: int | None = 4
    d_ff: int | None = 9216
    rope_base: float = 1000000.0
    rope_local_base: float | None = 10000.0
    qk_norm: bool = True
    sliding_window: int | None = 4096
    attn_scale_dim: int | None = 256
    sandwich_norm: bool = True


class Gemma3(GPT):
    """A Gemma 3 causal LM, text only (see :class:`~attnkit.models.gpt.GPT` for the interface)."""

    config_class = Gemma3Config
