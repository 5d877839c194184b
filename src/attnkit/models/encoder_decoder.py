"""What every encoder-decoder model shares (Vaswani et al. 2017 §3.1 and its descendants, T5):
teacher forcing with labels shifted right, the loss, and the decoding protocol of
:mod:`attnkit.generation` (the encoder runs once; its output and mask live in the decoder's cache).

A family subclasses :class:`EncoderDecoderModel`, builds ``self.encoder``
(:class:`~attnkit.nn.Encoder`), ``self.decoder`` (:class:`~attnkit.nn.Decoder` with
cross-attention) and ``self.lm_head``, and says in a few hooks how token ids become vectors
(``_embed_source``, ``_embed_target``), which additive bias self-attention gets
(``_self_attention_bias``) and how the decoder's output becomes logits (``_logits``). The
encoder's input need not be token ids: a family that reads something else (Whisper's log-mel
features) embeds it in ``_embed_source``, checks it in ``_check_source`` and names it in
``main_input_name`` (Hugging Face's attribute), which the decoding loop reads.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.outputs import ModelOutput
from attnkit.nn import DecoderCache, Linear, as_padding_mask, expand_padding_mask


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels (teacher forcing, Hugging Face convention): prepend the start
    token, drop the last label, and turn ignored labels (-100) into padding. ``(B, T) -> (B, T)``."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 0] = decoder_start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class EncoderDecoderModel(Model):
    """Base of sequence-to-sequence models: ``encode``, ``decode``, ``forward`` and the decoding
    protocol, written once over the hooks a family defines.

    ``forward(input_ids (B, S), attention_mask (B, S), decoder_input_ids (B, T) | labels (B, T))``
    returns a :class:`ModelOutput` with ``logits`` ``(B, T, V)``, ``loss`` (given labels) and
    ``encoder_last_hidden_state`` ``(B, S, C)``. The config needs ``vocab_size``,
    ``pad_token_id`` and ``decoder_start_token_id``.
    """

    main_input_name = "input_ids"  # what the encoder reads

    # -- hooks ----------------------------------------------------------------------------------
    def _embed_source(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Encoder input vectors ``(B, S, C)`` of source ids ``(B, S)`` (or of whatever the encoder reads)."""
        raise NotImplementedError

    def _check_source(self, source: torch.Tensor) -> None:
        """Raise :class:`~attnkit.InputError` for an encoder input the model cannot read."""
        self._check_ids(source, "input_ids")

    def _embed_target(self, decoder_input_ids: torch.Tensor, offset: int) -> torch.Tensor:
        """Decoder input vectors ``(B, T, C)`` of target ids ``(B, T)`` at positions ``offset ...``."""
        raise NotImplementedError

    def _self_attention_bias(self, T: int, S: int, decoder: bool) -> torch.Tensor | None:
        """Additive self-attention bias broadcastable to ``(B, H, T, S)`` for queries at the last
        ``T`` of ``S`` positions (every layer of the stack gets it), or None."""
        return None

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)`` from the decoder's output ``(B, T, C)``."""
        return self.lm_head(hidden)

    def _label_smoothing(self) -> float:
        """ε of the label-smoothed loss; 0 is plain cross-entropy."""
        return 0.0

    def _check_ids(self, ids: torch.Tensor, name: str, offset: int = 0) -> None:
        """Raise :class:`~attnkit.InputError` for ids the model cannot read (``offset``: cached positions)."""
        check_token_ids(ids, name, self.config.vocab_size)

    def _check_new_tokens(self, max_new_tokens: int) -> None:
        """Raise :class:`~attnkit.InputError` before decoding more tokens than the decoder can hold
        (it is fed the prompt, by default the start token, and all new tokens but the last)."""

    # -- the model ------------------------------------------------------------------------------
    @staticmethod
    def _padding(mask, B, S, name):
        """``(B, S)`` user mask -> ``(B, 1, 1, S)`` bool, or None when nothing is padded."""
        if mask is None:
            return None
        mask = as_padding_mask(mask, B, S, name)
        return None if bool(mask.all()) else expand_padding_mask(mask)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        """Run the encoder. ``input_ids`` ``(B, S)``, ``attention_mask`` ``(B, S)`` (True/1 = token).
        Returns ``last_hidden_state`` ``(B, S, C)`` (and ``attentions``, ``hidden_states`` when asked)."""
        self._check_source(input_ids)
        x = self._embed_source(input_ids)
        B, S = x.shape[:2]
        mask = self._padding(attention_mask, B, S, "attention_mask")
        out = self.encoder(x, mask=mask, bias=self._self_attention_bias(S, S, decoder=False),
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return ModelOutput(last_hidden_state=out.hidden, attentions=out.attentions, hidden_states=out.hidden_states)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """Run the decoder over ``encoder_hidden_states`` ``(B, S, C)``.

        ``attention_mask`` ``(B, S)`` is the source padding mask; ``decoder_attention_mask``
        ``(B, T_total)`` the target's (cached + new positions). With ``cache`` the new tokens
        continue the cached ones. Returns ``logits`` ``(B, T, V)`` and ``last_hidden_state``.
        """
        past = cache.length if cache is not None else 0
        self._check_ids(decoder_input_ids, "decoder_input_ids", offset=past)
        B, T = decoder_input_ids.shape
        S = encoder_hidden_states.shape[1]
        context_mask = self._padding(attention_mask, B, S, "attention_mask")
        self_mask = self._padding(decoder_attention_mask, B, past + T, "decoder_attention_mask")
        x = self._embed_target(decoder_input_ids, past)
        out = self.decoder(x, mask=self_mask, bias=self._self_attention_bias(T, past + T, decoder=True), is_causal=True,
                           cache=cache, context=encoder_hidden_states, context_mask=context_mask,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = out.hidden
        logits = self._logits(h[:, -logits_to_keep:] if logits_to_keep else h)
        return ModelOutput(logits=logits, last_hidden_state=h, attentions=out.attentions,
                           cross_attentions=out.cross_attentions, hidden_states=out.hidden_states)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """Args:
            input_ids: ``(B, S)`` source token ids.
            attention_mask: ``(B, S)`` bool or 0/1, True/1 = real source token.
            decoder_input_ids: ``(B, T)`` target prefix; made from ``labels`` by
                :func:`shift_tokens_right` when omitted.
            labels: ``(B, T)`` target ids, -100 ignored; the loss is the mean cross-entropy over
                the other targets (label-smoothed where the family says so).
            decoder_attention_mask: ``(B, T)`` target padding mask (optional: the causal mask
                already hides right padding from real positions).
            output_attentions / output_hidden_states: also return every layer's attention
                weights / hidden states (see :class:`ModelOutput`).
        """
        c = self.config
        if decoder_input_ids is None:
            if labels is None:
                raise InputError("pass decoder_input_ids or labels (decoder inputs are made by shifting labels right)")
            decoder_input_ids = shift_tokens_right(labels, c.pad_token_id, c.decoder_start_token_id)
        enc = self.encode(input_ids, attention_mask, output_attentions, output_hidden_states)
        dec = self.decode(decoder_input_ids, enc.last_hidden_state, attention_mask, decoder_attention_mask,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        loss = None
        if labels is not None:
            if labels.shape != decoder_input_ids.shape:
                raise InputError(f"labels must have the shape of decoder_input_ids {tuple(decoder_input_ids.shape)}, "
                                 f"got {tuple(labels.shape)}")
            loss = F.cross_entropy(dec.logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                   label_smoothing=self._label_smoothing())
        return ModelOutput(logits=dec.logits, loss=loss, last_hidden_state=dec.last_hidden_state,
                           attentions=dec.attentions, cross_attentions=dec.cross_attentions,
                           encoder_last_hidden_state=enc.last_hidden_state, encoder_attentions=enc.attentions,
                           hidden_states=dec.hidden_states, encoder_hidden_states=enc.hidden_states)

    # -- decoding protocol (see attnkit.generation) ------------------------------------------
    def decoder_start_ids(self, batch_size: int, device=None) -> torch.Tensor:
        """``(B, 1)`` decoder start tokens: what every generated sequence begins with (the
        generation config's ``decoder_start_token_id``, else the model config's, as in Hugging Face)."""
        start = self.generation_config.decoder_start_token_id
        start = self.config.decoder_start_token_id if start is None else start
        if not 0 <= start < self.config.vocab_size:
            raise InputError(f"generation_config.decoder_start_token_id must be in [0, {self.config.vocab_size}), "
                             f"got {start}")
        return torch.full((batch_size, 1), start, dtype=torch.long, device=device)

    def prepare_generation(self, input_ids, attention_mask, expand: int, max_new_tokens: int,
                           decoder_input_ids: torch.Tensor | None = None):
        """Run the encoder once and store its output (with the source mask) in a fresh cache
        whose cross-attention keys/values are computed on the first step, once per source, and
        repeated for its ``expand`` beams. ``decoder_input_ids`` ``(B, P)`` is a decoder prompt
        the new tokens continue (default: the start token). Returns ``(prompt, None, cache)``."""
        if decoder_input_ids is not None:
            self._check_ids(decoder_input_ids, "decoder_input_ids")
        self._check_new_tokens(max_new_tokens + (0 if decoder_input_ids is None else decoder_input_ids.shape[1] - 1))
        hidden = self.encode(input_ids, attention_mask).last_hidden_state
        B = hidden.shape[0]
        prompt = self.decoder_start_ids(B, hidden.device) if decoder_input_ids is None else decoder_input_ids
        if prompt.shape[0] != B:
            raise InputError(f"decoder_input_ids has {prompt.shape[0]} rows but the encoder input has {B}")
        mask = None if attention_mask is None else as_padding_mask(attention_mask, *hidden.shape[:2])
        mask = None if mask is None or bool(mask.all()) else mask  # nothing padded: no mask at every step
        if expand > 1:
            mask = None if mask is None else mask.repeat_interleave(expand, dim=0)
            prompt = prompt.repeat_interleave(expand, dim=0)
        cache = self.decoder.new_cache(prompt.shape[1] + max_new_tokens - 1, context_repeat=expand)
        cache.encoder_hidden, cache.encoder_mask = hidden, mask
        return prompt, None, cache

    def generation_modules(self) -> nn.ModuleList:
        """The modules every decoding step runs (the encoder and the cross-attention key/value
        projections run once): ``generate`` packs only their weights
        (:func:`attnkit.nn.packed_weights`)."""
        once = re.compile(r"cross_attn\.(k|v|kv)_proj$")
        steps = [m for name, m in self.decoder.named_modules() if isinstance(m, Linear) and not once.search(name)]
        return nn.ModuleList([*steps, self.lm_head])

    def generation_step(self, input_ids, attention_mask, cache: DecoderCache) -> torch.Tensor:
        """Logits ``(B, V)`` for the next target token after feeding ``input_ids`` through the cache."""
        out = self.decode(input_ids, cache.encoder_hidden, cache.encoder_mask, attention_mask, cache=cache,
                          logits_to_keep=1)
        return out.logits[:, -1]
