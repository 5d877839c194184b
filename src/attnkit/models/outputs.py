"""The output objects of every model's forward and of ``generate`` (Hugging Face's field names
and idioms)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from attnkit.errors import InputError


class _Fields:
    """Hugging Face's idioms for an output dataclass: the fields that are set read as a tuple or
    a dict (``out[0]``, ``out["logits"]``, ``out.to_tuple()``, ``out.keys()``, ``"loss" in out``)."""

    def _is_set(self, name: str) -> bool:
        return getattr(self, name) is not None

    def keys(self) -> list[str]:
        """The names of the fields that are set, in field order."""
        return [f.name for f in dataclasses.fields(self) if self._is_set(f.name)]

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, n) for n in self.keys())

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())


@dataclass
class GenerateOutput(_Fields):
    """What ``generate(..., return_dict_in_generate=True)`` returns (Hugging Face's fields).

    sequences: ``(B · num_return_sequences, T_out)`` token ids.
    sequences_scores: beam search with ``output_scores``: each returned hypothesis' final score
        (summed log-probabilities over its length penalty).
    scores / logits: with ``output_scores`` / ``output_logits``, one ``(rows, V)`` tensor per
        step: the processed scores the next token was chosen from (log-probabilities in beam
        search, one row per beam) / the model's raw logits.
    beam_indices: beam search: ``(B · num_return_sequences, new tokens)``, for each generated
        token the row of ``scores`` (batch index × num_beams + beam) it was chosen from; -1 after
        a hypothesis ended. With ``scores``, what ``compute_transition_scores`` needs.
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None


@dataclass
class ModelOutput(_Fields):
    """Fields a model does not produce stay ``None``.

    logits: ``(B, T, V)`` language-model logits, or ``(B, n_labels)`` / ``(B, T, n_labels)`` for heads.
    loss: scalar training loss when labels were given.
    last_hidden_state: ``(B, T, C)`` final hidden states.
    pooler_output: ``(B, C)`` pooled sentence vector (BERT).
    attentions / cross_attentions: per-layer ``(B, H, T, S)`` weights when requested (the decoder's
        self-attentions in an encoder-decoder model, also named ``decoder_attentions`` there).
    hidden_states: when requested, ``n_layers + 1`` tensors ``(B, T, C)``: the embeddings, then each
        layer's output, the last after the final norm if the model has one (ViT's: before it, as
        Hugging Face's) (the decoder's in an encoder-decoder model, also named ``decoder_hidden_states``).
    encoder_last_hidden_state / encoder_attentions / encoder_hidden_states: the encoder's, for
        encoder-decoder models.

    As in Hugging Face, the fields that are set read as a tuple or a dict: ``out[0]``,
    ``out["logits"]``, ``out.to_tuple()``, ``out.keys()``, ``"loss" in out``. The first fields come
    in Hugging Face's order (the loss, then the logits, or QA's start and end logits, or the
    encoder's last hidden state); heads also keep ``last_hidden_state``, which Hugging Face's
    head outputs leave out, so later positions can differ from theirs.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: list[torch.Tensor] | None = None
    attentions: list[torch.Tensor] | None = None
    cross_attentions: list[torch.Tensor] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: list[torch.Tensor] | None = None
    encoder_attentions: list[torch.Tensor] | None = None

    @property
    def decoder_attentions(self) -> list[torch.Tensor] | None:
        return self.attentions

    @property
    def decoder_hidden_states(self) -> list[torch.Tensor] | None:
        return self.hidden_states


@dataclass
class ContrastiveOutput(_Fields):
    """What an image-text dual encoder (CLIP, SigLIP) returns, Hugging Face's ``CLIPOutput``
    fields: ``logits_per_image`` ``(images, texts)`` and ``logits_per_text`` (its transpose),
    ``text_embeds`` and ``image_embeds`` (normalised projected features), and with
    ``return_loss`` the contrastive ``loss``."""

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


class LazyLogitsOutput(ModelOutput):
    """A :class:`ModelOutput` whose ``logits`` are computed on first access, by ``make_logits``,
    under the grad/inference/autocast modes of the forward that made it. Lets the training loss
    skip the (B, T, V) logits while ``out.logits`` still works as with Hugging Face.

    ``weights()`` returns the tensors ``make_logits`` reads (the LM head's): if they changed after
    the forward (an optimizer step, a cast, a move, a replaced parameter), reading the logits is
    an error rather than logits of other weights."""

    def __init__(self, make_logits, weights=tuple, **fields):
        super().__init__(**fields)
        device = fields["last_hidden_state"].device.type
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.is_autocast_enabled(device),
                 torch.get_autocast_dtype(device))
        # Inference tensors keep no version counter (nothing can change them in place, either).
        stamp = lambda: [(id(w), None if w.is_inference() else w._version, w.data_ptr(), w.dtype)  # noqa: E731
                         for w in weights()]
        made_with = stamp()

        def make():
            if stamp() != made_with:
                raise InputError("out.logits of a loss forward are computed when first read, and the LM head's "
                                 "weights changed since that forward (an optimizer step, a cast, a move or a "
                                 "replaced parameter): read out.logits before changing the model, or run the forward "
                                 "again")
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

    def _is_set(self, name: str) -> bool:
        if name == "logits":  # without computing them
            return self._logits is not None or getattr(self, "_make_logits", None) is not None
        return super()._is_set(name)

    def __repr__(self) -> str:
        pending = self._logits is None and getattr(self, "_make_logits", None) is not None
        shown = {n: getattr(self, n) for n in self.keys() if not (n == "logits" and pending)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())}" + \
            (", logits=<computed when read>)" if pending else ")")
