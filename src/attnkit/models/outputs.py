"""The output object every model's forward returns (Hugging Face's field names)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """Fields a model does not produce stay ``None``.

    logits: ``(B, T, V)`` language-model logits, or ``(B, n_labels)`` / ``(B, T, n_labels)`` for heads.
    loss: scalar training loss when labels were given.
    last_hidden_state: ``(B, T, C)`` final hidden states.
    pooler_output: ``(B, C)`` pooled sentence vector (BERT).
    attentions / cross_attentions: per-layer ``(B, H, T, S)`` weights when requested.
    encoder_last_hidden_state: ``(B, S, C)`` for encoder-decoder models.
    """

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    attentions: list[torch.Tensor] | None = None
    cross_attentions: list[torch.Tensor] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None

    def __getitem__(self, key: str):
        return getattr(self, key)
