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


class LazyLogitsOutput(ModelOutput):
    """A :class:`ModelOutput` whose ``logits`` are computed on first access, by ``make_logits``,
    under the grad/inference/autocast modes of the forward that made it. Lets the training loss
    skip the (B, T, V) logits while ``out.logits`` still works as with Hugging Face."""

    def __init__(self, make_logits, **fields):
        super().__init__(**fields)
        device = fields["last_hidden_state"].device.type
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.is_autocast_enabled(device),
                 torch.get_autocast_dtype(device))

        def make():
            grad, inference, autocast, dtype = modes
            with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                    torch.autocast(device, dtype=dtype, enabled=autocast):
                return make_logits()

        self._make_logits = make

    @property
    def logits(self) -> torch.Tensor | None:
        if self._logits is None and getattr(self, "_make_logits", None) is not None:
            self._logits, self._make_logits = self._make_logits(), None
        return self._logits

    @logits.setter
    def logits(self, value: torch.Tensor | None) -> None:
        self._logits, self._make_logits = value, None
