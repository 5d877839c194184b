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
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import check_token_ids
from attnkit.models.config import Config
from attnkit.models.encoder_decoder import EncoderDecoderModel, shift_tokens_right
from attnkit.nn import FEEDFORWARD_ACTIVATIONS, Decoder, Encoder, LayerConfig, Linear, sinusoidal_positions

__all__ = ["Transformer", "TransformerConfig", "shift_tokens_right"]


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
        self.require_positive("vocab_size", "n_positions", "d_model", "n_heads", "d_ff", "n_encoder_layers",
                              "n_decoder_layers", "norm_eps")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.activation in FEEDFORWARD_ACTIVATIONS, "activation", f"must be one of {FEEDFORWARD_ACTIVATIONS}")
        self.require_fraction("dropout", "attn_dropout", "ffn_dropout", "label_smoothing")
        self.require_token_ids("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
                               "forced_eos_token_id")

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=self.activation,
            norm_eps=self.norm_eps, pre_norm=self.pre_norm, dropout=self.dropout,
            attn_dropout=self.attn_dropout, ffn_dropout=self.ffn_dropout, fused_qkv=False,
        )


class Transformer(EncoderDecoderModel):
    """Encoder-decoder Transformer for sequence-to-sequence tasks (machine translation).

    ``forward(input_ids (B, S), attention_mask (B, S), decoder_input_ids (B, T) | labels (B, T))``
    returns a :class:`ModelOutput` with ``logits`` ``(B, T, V)``, ``loss`` (label-smoothed
    cross-entropy, given labels) and ``encoder_last_hidden_state`` ``(B, S, C)``; ``encode``,
    ``decode`` and the decoding protocol come from :class:`EncoderDecoderModel`.
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

    def _check_new_tokens(self, max_new_tokens: int) -> None:
        # The decoder is fed the start token and every new token but the last.
        if max_new_tokens > self.config.n_positions:
            raise InputError(f"cannot decode {max_new_tokens} new tokens: the decoder holds {self.config.n_positions} "
                             "positions (n_positions), the start token and all new tokens but the last")

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        pos = self.positions[offset: offset + ids.shape[1]].to(embedding.weight.dtype)  # (T, C)
        return self.drop(embedding(ids) * self.embed_scale + pos)

    def _embed_source(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._embed(self.src_embed, input_ids)

    def _embed_target(self, decoder_input_ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self._embed(self.tgt_embed, decoder_input_ids, offset)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        bias = self.final_logits_bias
        if bias is None:
            return self.lm_head(hidden)
        fused = None if torch.is_autocast_enabled(hidden.device.type) else self.lm_head.fused(hidden, bias=bias[0])
        return self.lm_head(hidden) + bias if fused is None else fused  # as Marian under autocast: fp32 bias, fp32 sum

    def _label_smoothing(self) -> float:
        return self.config.label_smoothing  # §5.4
