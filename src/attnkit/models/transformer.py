"""The original encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need").

An encoder reads the source with self-attention; a decoder writes the target with masked
self-attention and cross-attention over the encoder output (§3.1, Figure 1). The defaults are
the paper's: post-norm sublayers, sinusoidal positions (§3.5), embeddings scaled by √d_model
and shared between source, target and the output projection (§3.4), dropout 0.1 on every
sublayer output and on the embedding sums (§5.4), label smoothing ε = 0.1 in the loss (§5.4).
Config fields also express Hugging Face's MarianMT (split sine/cosine layout, SiLU, a final
logits bias), so one class serves both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.config import Config
from attnkit.models.outputs import ModelOutput
from attnkit.nn import (
    FEEDFORWARD_ACTIVATIONS,
    Decoder,
    DecoderCache,
    Encoder,
    LayerConfig,
    Linear,
    as_padding_mask,
    expand_padding_mask,
    sinusoidal_positions,
)


@dataclass(frozen=True)
class TransformerConfig(Config):
    """Sizes and variants of an encoder-decoder Transformer. Defaults are the paper's base
    model (Table 3) with a shared 37,000-token vocabulary."""

    model_type = "transformer"

    vocab_size: int = 37000
    n_positions: int = 1024
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    activation: str = "relu"
    pre_norm: bool = False
    norm_eps: float = 1e-5
    sinusoid_layout: Literal["interleaved", "split"] = "interleaved"
    scale_embedding: bool = True
    share_embeddings: bool = True
    tie_word_embeddings: bool = True
    final_logits_bias: bool = False
    dropout: float = 0.1
    attn_dropout: float = 0.0
    ffn_dropout: float = 0.0
    label_smoothing: float = 0.1
    pad_token_id: int = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    decoder_start_token_id: int = 1
    forced_eos_token_id: int | None = None  # decoding ends on this token at max length (Marian's is its EOS)

    def validate(self) -> None:
        for name in ("vocab_size", "n_positions", "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers"):
            self.require(getattr(self, name) > 0, name, "must be positive")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.activation in FEEDFORWARD_ACTIVATIONS, "activation", f"must be one of {FEEDFORWARD_ACTIVATIONS}")
        for name in ("dropout", "attn_dropout", "ffn_dropout"):
            self.require(0.0 <= getattr(self, name) < 1.0, name, "must be in [0, 1)")
        self.require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        self.require(self.norm_eps > 0, "norm_eps", "must be positive")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id"):
            v = getattr(self, name)
            self.require(v is None or 0 <= v < self.vocab_size, name, f"must be None or in [0, {self.vocab_size})")

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=self.activation,
            norm_eps=self.norm_eps, pre_norm=self.pre_norm, dropout=self.dropout,
            attn_dropout=self.attn_dropout, ffn_dropout=self.ffn_dropout, fused_qkv=False,
        )


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels (teacher forcing, Hugging Face convention): prepend the start
    token, drop the last label, and turn ignored labels (-100) into padding. ``(B, T) -> (B, T)``."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 0] = decoder_start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class Transformer(Model):
    """Encoder-decoder Transformer for sequence-to-sequence tasks (machine translation).

    ``forward(input_ids (B, S), attention_mask (B, S), decoder_input_ids (B, T) | labels (B, T))``
    returns a :class:`ModelOutput` with ``logits`` ``(B, T, V)``, ``loss`` (label-smoothed
    cross-entropy, given labels) and ``encoder_last_hidden_state`` ``(B, S, C)``.
    Sources are right-padded; positions count from 0 on every row.
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        layer = c.layer_config()
        self.src_embed = nn.Embedding(c.vocab_size, c.d_model)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.vocab_size, c.d_model)
        interleave = c.sinusoid_layout == "interleaved"
        self.register_buffer("positions", sinusoidal_positions(c.n_positions, c.d_model, interleave=interleave),
                             persistent=False)
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0  # §3.4
        self.drop = nn.Dropout(c.dropout)  # §5.4: dropout on the sums of embeddings and positions
        self.encoder = Encoder(layer, c.n_encoder_layers)
        self.decoder = Decoder(layer, c.n_decoder_layers, cross=True)
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=False)
        if c.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, c.vocab_size))
        else:
            self.final_logits_bias = None
        self.apply(self._init_weights)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.tgt_embed.weight  # §3.4: one matrix for embeddings and softmax

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # N(0, d^-1/2): after the √d scaling the embeddings have unit variance.
            nn.init.normal_(module.weight, std=self.config.d_model ** -0.5)

    def _check_ids(self, ids: torch.Tensor, name: str, offset: int = 0) -> None:
        check_token_ids(ids, name, self.config.vocab_size)
        if offset + ids.shape[1] > self.config.n_positions:
            raise InputError(
                f"{name} reaches position {offset + ids.shape[1]}, longer than the model's maximum of "
                f"{self.config.n_positions} (n_positions); split or truncate the input"
            )

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        pos = self.positions[offset: offset + ids.shape[1]].to(embedding.weight.dtype)  # (T, C)
        return self.drop(embedding(ids) * self.embed_scale + pos)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        """Run the encoder. ``input_ids`` ``(B, S)``, ``attention_mask`` ``(B, S)`` (True/1 = token).
        Returns ``last_hidden_state`` ``(B, S, C)`` (and ``attentions`` when asked)."""
        self._check_ids(input_ids, "input_ids")
        mask = self._padding(attention_mask, *input_ids.shape, "attention_mask")
        out = self.encoder(self._embed(self.src_embed, input_ids), mask=mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        return ModelOutput(last_hidden_state=out.hidden, attentions=out.attentions, hidden_states=out.hidden_states)

    @staticmethod
    def _padding(mask, B, S, name):
        """``(B, S)`` user mask -> ``(B, 1, 1, S)`` bool, or None when nothing is padded."""
        if mask is None:
            return None
        mask = as_padding_mask(mask, B, S, name)
        return None if bool(mask.all()) else expand_padding_mask(mask)

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
        x = self._embed(self.tgt_embed, decoder_input_ids, offset=past)
        out = self.decoder(x, mask=self_mask, is_causal=True, cache=cache, context=encoder_hidden_states,
                           context_mask=context_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        h = out.hidden
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        if self.final_logits_bias is not None:
            bias = self.final_logits_bias  # in place when decoding (no graph) and the dtypes agree
            in_place = not torch.is_grad_enabled() and logits.dtype == bias.dtype
            logits = logits.add_(bias) if in_place else logits + bias
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
            input_ids: ``(B, S)`` source token ids, right-padded.
            attention_mask: ``(B, S)`` bool or 0/1, True/1 = real source token.
            decoder_input_ids: ``(B, T)`` target prefix; made from ``labels`` by
                :func:`shift_tokens_right` when omitted.
            labels: ``(B, T)`` target ids, -100 ignored; the loss is label-smoothed
                cross-entropy with ``config.label_smoothing`` (§5.4).
            decoder_attention_mask: ``(B, T)`` target padding mask (optional: the causal mask
                already hides right padding from real positions).
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
                                   label_smoothing=c.label_smoothing)
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

    def prepare_generation(self, input_ids, attention_mask, expand: int, max_new_tokens: int):
        """Run the encoder once, repeat its output for ``expand`` beams, and store it (with the
        source mask) in a fresh cache whose cross-attention keys/values are computed on the
        first step. Returns ``(start_ids, None, cache)``."""
        # The decoder is fed the start token and every new token but the last.
        if max_new_tokens > self.config.n_positions:
            raise InputError(f"cannot decode {max_new_tokens} new tokens: the decoder holds {self.config.n_positions} "
                             "positions (n_positions), the start token and all new tokens but the last")
        hidden = self.encode(input_ids, attention_mask).last_hidden_state
        mask = None if attention_mask is None else as_padding_mask(attention_mask, *input_ids.shape)
        mask = None if mask is None or bool(mask.all()) else mask  # nothing padded: no mask at every step
        if expand > 1:
            hidden = hidden.repeat_interleave(expand, dim=0)
            mask = None if mask is None else mask.repeat_interleave(expand, dim=0)
        cache = self.decoder.new_cache(max_new_tokens)
        cache.encoder_hidden, cache.encoder_mask = hidden, mask
        return self.decoder_start_ids(hidden.shape[0], hidden.device), None, cache

    def generation_modules(self) -> nn.ModuleList:
        """The modules every decoding step runs (the encoder runs once): ``generate`` packs only
        their weights (:func:`attnkit.nn.packed_weights`)."""
        return nn.ModuleList([self.decoder, self.lm_head])

    def generation_step(self, input_ids, attention_mask, cache: DecoderCache) -> torch.Tensor:
        """Logits ``(B, V)`` for the next target token after feeding ``input_ids`` through the cache."""
        out = self.decode(input_ids, cache.encoder_hidden, cache.encoder_mask, attention_mask, cache=cache,
                          logits_to_keep=1)
        return out.logits[:, -1]
