"""T5: the Text-to-Text Transfer Transformer (Raffel et al. 2020, "Exploring the Limits of
Transfer Learning with a Unified Text-to-Text Transformer").

An encoder-decoder (§3.2.1) whose differences from Vaswani et al. are all composition: pre-norm
sublayers with a scale-only RMS norm and no biases anywhere, a final norm per stack (§2.1);
no absolute positions but a learned relative position bias, one scalar per (bucket, head),
computed once per stack (bidirectional in the encoder, causal in the decoder) and added to the
self-attention scores of every layer (§2.1); attention without the 1/√d scaling (Mesh
TensorFlow folds it into the initialisation); one embedding matrix for encoder and decoder.

Two generations share this class. T5 v1.0 (``t5-*``): a ReLU feed-forward and the LM head
tied to the embeddings, the decoder output scaled by d_model^-1/2 before it. T5 v1.1 and
Flan-T5 (``flan-t5-*``): a gated GELU (tanh) feed-forward (Shazeer 2020) and an untied head
without the scaling. The layout and numerics follow Hugging Face's ``T5ForConditionalGeneration``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from attnkit.models.config import Config
from attnkit.models.encoder_decoder import EncoderDecoderModel
from attnkit.models.outputs import ModelOutput
from attnkit.nn import (
    Decoder,
    Encoder,
    FeedForward,
    LayerConfig,
    Linear,
    MultiHeadAttention,
    RelativePositionBias,
)

# The feed-forwards a T5 checkpoint can name (Hugging Face's ``feed_forward_proj``).
T5Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "geglu_tanh", "reglu", "swiglu"]


@dataclass(frozen=True)
class T5Config(Config):
    """Sizes and variants of T5. Defaults are ``t5-small`` (T5 v1.0, 60.5M parameters)."""

    model_type = "t5"

    vocab_size: int = 32128
    d_model: int = 512
    head_dim: int = 64  # per head, independent of d_model / n_heads (Hugging Face's d_kv)
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    activation: T5Activation = "relu"  # v1.1 / Flan-T5: "geglu_tanh" (Hugging Face's "gated-gelu")
    num_buckets: int = 32  # relative position buckets (§2.1)
    max_distance: int = 128  # offsets from here on share the last bucket
    norm_eps: float = 1e-6
    dropout: float = 0.1  # on embeddings, sublayer outputs, attention weights, feed-forward units, stack outputs
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None  # × d_model^-1/2 before the LM head; None: as tie_word_embeddings
    pad_token_id: int = 0
    eos_token_id: int | None = 1
    decoder_start_token_id: int = 0  # T5 starts decoding from the padding token

    def validate(self) -> None:
        self.require_positive("vocab_size", "d_model", "head_dim", "n_heads", "d_ff", "n_encoder_layers",
                              "n_decoder_layers", "norm_eps")
        # The encoder's bidirectional bucketing halves num_buckets, and half of each half are exact offsets.
        self.require(self.num_buckets >= 4, "num_buckets", "must be at least 4")
        self.require(self.max_distance > self.num_buckets // 2, "max_distance",
                     f"must exceed num_buckets // 2 ({self.num_buckets // 2}), the offsets with buckets of their own")
        self.require_fraction("dropout")
        self.require_token_ids("pad_token_id", "eos_token_id", "decoder_start_token_id")

    @property
    def scales_decoder_outputs(self) -> bool:
        """Whether the decoder output is multiplied by d_model^-1/2 before the LM head (T5 v1.0)."""
        return self.tie_word_embeddings if self.scale_decoder_outputs is None else self.scale_decoder_outputs

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, head_dim=self.head_dim,
            activation=self.activation, norm="rmsnorm", norm_eps=self.norm_eps, pre_norm=True, bias=False,
            dropout=self.dropout, attn_dropout=self.dropout, ffn_dropout=self.dropout,
            attn_scale=1.0,  # no 1/√d: Mesh TensorFlow's T5 folds it into the initialisation of q
        )


class T5(EncoderDecoderModel):
    """T5 for conditional generation (Hugging Face's ``T5ForConditionalGeneration``).

    ``forward(input_ids (B, S), attention_mask (B, S), decoder_input_ids (B, T) | labels (B, T))``
    returns a :class:`ModelOutput` with ``logits`` ``(B, T, V)``, ``loss`` (mean cross-entropy
    over the labels that are not -100; decoder inputs are the labels shifted right after
    ``decoder_start_token_id``) and ``encoder_last_hidden_state`` ``(B, S, C)``. Relative
    positions make padding on either side work. ``encode``, ``decode`` and the decoding
    protocol (encoder once, cross-attention keys/values cached) come from
    :class:`EncoderDecoderModel`.
    """

    config_class = T5Config

    def __init__(self, config: T5Config):
        super().__init__(config)
        c = config
        layer = c.layer_config()
        self.embed = nn.Embedding(c.vocab_size, c.d_model)  # shared by encoder and decoder
        self.encoder_position_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=True)
        self.decoder_position_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=False)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Encoder(layer, c.n_encoder_layers)  # pre-norm: ends with its final norm
        self.decoder = Decoder(layer, c.n_decoder_layers, cross=True)
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=False)
        self.output_scale = c.d_model ** -0.5 if c.scales_decoder_outputs else 1.0
        self._init_weights()
        if c.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Mesh TensorFlow's initialisation (Hugging Face's, factor 1): unit-variance embeddings
        and LM head, every other matrix N(0, 1/fan_in), the queries' also divided by √head_dim
        (the attention scaling the scores leave out), RMS norm weights 1."""
        c = self.config
        nn.init.normal_(self.embed.weight, std=1.0)
        if not c.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, std=1.0)
        for bias in (self.encoder_position_bias, self.decoder_position_bias):
            nn.init.normal_(bias.embedding.weight, std=c.d_model ** -0.5)
        for module in self.modules():
            if isinstance(module, MultiHeadAttention):
                if module.cross:
                    q, kv = module.q_proj.weight, module.kv_proj.weight
                else:
                    q, kv = module.qkv_proj.weight.split([module.q_dim, 2 * module.kv_dim])  # views of rows
                q.normal_(0.0, (c.d_model * c.head_dim) ** -0.5)
                kv.normal_(0.0, c.d_model ** -0.5)
                nn.init.normal_(module.out_proj.weight, std=module.q_dim ** -0.5)
            elif isinstance(module, FeedForward):
                for fc in (module.fc_in, module.fc_gate):
                    if fc is not None:
                        nn.init.normal_(fc.weight, std=c.d_model ** -0.5)
                nn.init.normal_(module.fc_out.weight, std=c.d_ff ** -0.5)

    # -- hooks of EncoderDecoderModel ----------------------------------------------------------
    def _embed_source(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embed(input_ids))

    def _embed_target(self, decoder_input_ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self.drop(self.embed(decoder_input_ids))  # positions enter through the attention bias

    def _self_attention_bias(self, T: int, S: int, decoder: bool) -> torch.Tensor:
        # (1, H, T, S) for queries at positions S - T ... S - 1: right for cached decoding steps too
        return (self.decoder_position_bias if decoder else self.encoder_position_bias)(T, S)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.drop(hidden)  # Hugging Face drops out each stack's normed output
        return self.lm_head(h * self.output_scale if self.output_scale != 1.0 else h)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        """:meth:`EncoderDecoderModel.encode`, with dropout on the encoder's normed output (training)."""
        out = super().encode(input_ids, attention_mask, output_attentions, output_hidden_states)
        out.last_hidden_state = self.drop(out.last_hidden_state)
        return out
