"""ModernBERT (Warner et al. 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional
Encoder"): a BERT-style encoder with the decoders' improvements: rotary positions (a base of
160,000 on the global layers, 10,000 on the others), pre-norm layers with LayerNorms and no
biases, a GeGLU feed-forward, alternating attention (every third layer, from the first, attends
over the whole sequence; the others within a window of ``local_attention`` tokens, half on each
side), a LayerNorm on the embeddings and none before the first layer's attention, and an 8,192-
token context.

Heads, as Hugging Face's: masked LM (dense without bias, GELU, LayerNorm, then the decoder tied
to the token embeddings, with a bias), and sequence classification (the ``[CLS]`` state or the
mean over real tokens, ``classifier_pooling``, through the same dense, GELU, LayerNorm, then
dropout and a linear layer) and token classification (every state through them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from attnkit.models.base import Model, check_token_ids
from attnkit.models.bert import init_bert_weights
from attnkit.models.classification import ClassifierLoss, ClassLabels, ProblemType, token_loss
from attnkit.models.config import Config
from attnkit.models.outputs import ModelOutput
from attnkit.nn import (ACTIVATIONS, Encoder, LayerConfig, RotaryEmbedding, as_padding_mask, expand_padding_mask,
                        mean_pool)


# the feed-forward's gated kind for each activation Hugging Face's ``hidden_activation`` names:
# act(the first half of Wi) * the second half
GATED_BY_ACTIVATION = {"gelu": "geglu", "gelu_tanh": "geglu_tanh", "silu": "swiglu", "relu": "reglu"}


@dataclass(frozen=True)
class ModernBertConfig(ClassLabels, Config):
    """Sizes of a ModernBERT. Defaults are Hugging Face's ``ModernBertConfig`` (ModernBERT-base:
    22 layers, width 768, 12 heads, 1,152-wide GeGLU)."""

    model_type = "modernbert"

    vocab_size: int = 50368
    n_positions: int = 8192  # recorded, not enforced: rotary positions have no table
    d_model: int = 768
    n_layers: int = 22
    n_heads: int = 12
    d_ff: int = 1152  # the width of each GeGLU half
    activation: str = "gelu"  # the GeGLU's (Hugging Face's hidden_activation)
    norm_eps: float = 1e-5
    bias: bool = False  # on the attention and feed-forward projections
    norm_bias: bool = False
    global_every: int = 3  # layers 0, global_every, 2·global_every, ... attend globally
    local_attention: int = 128  # the other layers' window: local_attention // 2 tokens on each side
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    embedding_dropout: float = 0.0
    attn_dropout: float = 0.0
    mlp_dropout: float = 0.0
    head_bias: bool = False  # Hugging Face's classifier_bias: on the heads' dense layer
    head_activation: str = "gelu"
    decoder_bias: bool = True
    classifier_pooling: Literal["cls", "mean"] = "cls"
    classifier_dropout: float = 0.0
    initializer_range: float = 0.02
    pad_token_id: int | None = 50283
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    num_labels: int = 2
    problem_type: ProblemType | None = None
    label_names: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.require_positive("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "d_ff", "norm_eps",
                              "global_every", "local_attention", "global_rope_theta", "local_rope_theta")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require((self.d_model // self.n_heads) % 2 == 0, "d_model",
                     f"must give an even head dimension (d_model / n_heads, {self.n_heads} heads) for rotary positions")
        self.require(self.activation in GATED_BY_ACTIVATION, "activation",
                     f"must be one of {sorted(GATED_BY_ACTIVATION)} (the GeGLU's)")
        self.require(self.head_activation in ACTIVATIONS, "head_activation", f"must be one of {sorted(ACTIVATIONS)}")
        self.require(self.classifier_pooling in ("cls", "mean"), "classifier_pooling", "must be 'cls' or 'mean'")
        self.require_fraction("embedding_dropout", "attn_dropout", "mlp_dropout", "classifier_dropout")
        self.require_token_ids("pad_token_id", "cls_token_id", "sep_token_id")
        self.validate_labels()

    @property
    def local_layers(self) -> tuple[int, ...]:
        """The layers that attend within the window."""
        return tuple(i for i in range(self.n_layers) if i % self.global_every)

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=GATED_BY_ACTIVATION[self.activation],
            norm="layernorm", norm_eps=self.norm_eps,
            pre_norm=True, bias=self.bias, norm_bias=self.norm_bias, dropout=0.0, attn_dropout=self.attn_dropout,
            ffn_dropout=self.mlp_dropout,
        )


class ModernBert(Model):
    """The ModernBERT encoder (Hugging Face's ``ModernBertModel``).

    ``forward(input_ids (B, T), attention_mask (B, T)=None)`` returns a :class:`ModelOutput` with
    ``last_hidden_state`` ``(B, T, C)`` after the final LayerNorm; ``hidden_states`` are the
    embeddings and each layer's output, the last one normed. Padding may be on either side:
    positions count from the first column, as in Hugging Face."""

    config_class = ModernBertConfig

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        c = config
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.embed_norm = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.norm_bias)
        self.embed_drop = nn.Dropout(c.embedding_dropout)
        self.encoder = Encoder(c.layer_config(), c.n_layers, final_norm=True, local_layers=c.local_layers)
        self.encoder.layers[0].attn_norm = None  # the embeddings are normed already
        head_dim = c.d_model // c.n_heads
        self.rotary = RotaryEmbedding(head_dim, base=c.global_rope_theta)
        self.local_rotary = RotaryEmbedding(head_dim, base=c.local_rope_theta)
        self.apply(lambda m: init_bert_weights(m, c.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> ModelOutput:
        """Args:
            input_ids: ``(B, T)`` token ids.
            attention_mask: ``(B, T)`` bool or 0/1, True/1 = real token.
            token_type_ids: accepted so that a tokenizer's output can be passed whole, and ignored
                (ModernBERT has no segment embeddings; its tokenizer makes zeros).
        """
        check_token_ids(input_ids, "input_ids", self.config.vocab_size)
        B, T = input_ids.shape
        mask = None
        if attention_mask is not None:
            attention_mask = as_padding_mask(attention_mask, B, T)
            mask = expand_padding_mask(attention_mask)  # (B, 1, 1, T)
        half = self.config.local_attention // 2  # local layers: the keys at most `half` away, no (T, T) mask
        positions = torch.arange(T, device=input_ids.device)[None]
        x = self.embed_drop(self.embed_norm(self.tok_embeddings(input_ids)))
        out = self.encoder(x, mask=mask, rotary=self.rotary(positions), output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states,
                           local=(mask, self.local_rotary(positions), (half, half)))
        return ModelOutput(last_hidden_state=out.hidden, attentions=out.attentions, hidden_states=out.hidden_states)

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           normalize: bool = False) -> torch.Tensor:
        """Mean of the last hidden states over real tokens: ``(B, C)``; L2-normalised with ``normalize``."""
        return mean_pool(self(input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask,
                         normalize=normalize)


class ModernBertHead(nn.Module):
    """Hugging Face's ``ModernBertPredictionHead``: dense, activation, LayerNorm."""

    def __init__(self, c: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.d_model, c.d_model, bias=c.head_bias)
        self.act = ACTIVATIONS[c.head_activation]
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.norm_bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(h)))


class _ModernBertTask(Model):
    """A ModernBERT encoder (``self.model``) plus ``self.head``."""

    config_class = ModernBertConfig
    base_model_prefix, base_model_class = "model", ModernBert

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.model = ModernBert(config)
        self.head = ModernBertHead(config)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, output_attentions=False,
               output_hidden_states=False) -> ModelOutput:
        return self.model(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)

    def _init_head(self, *modules: nn.Module) -> None:
        for m in (self.head, *modules):
            m.apply(lambda x: init_bert_weights(x, self.config.initializer_range))


class ModernBertForMaskedLM(_ModernBertTask):
    """The masked language model (Hugging Face's ``ModernBertForMaskedLM``): ``logits``
    ``(B, T, V)``; ``labels`` ``(B, T)`` with -100 on the positions not to predict give ``loss``."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=config.decoder_bias)
        self._init_head(self.decoder)
        self.decoder.weight = self.model.tok_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """See :meth:`ModernBert.forward`."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.decoder(self.head(out.last_hidden_state))
        if labels is not None:
            out.loss = token_loss(out.logits, labels, self.config.vocab_size)
        return out


class _ModernBertClassifier(_ModernBertTask):
    """A ModernBERT with the head, dropout and a linear layer to the labels (``classify``)."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.head_drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self._init_head(self.classifier)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_drop(self.head(h)))


class ModernBertForSequenceClassification(ClassifierLoss, _ModernBertClassifier):
    """Classifier or regressor (Hugging Face's ``ModernBertForSequenceClassification``): the
    ``[CLS]`` state or the mean over real tokens (``classifier_pooling``), the head, dropout, a
    linear layer: ``logits`` ``(B, num_labels)``; the loss follows ``config.problem_type``."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """See :meth:`ModernBert.forward`."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        h = out.last_hidden_state
        out.logits = self.classify(h[:, 0] if self.config.classifier_pooling == "cls" else mean_pool(h, attention_mask))
        if labels is not None:
            out.loss = self.classification_loss(out.logits, labels)
        return out


class ModernBertForTokenClassification(_ModernBertClassifier):
    """Per-token classifier (Hugging Face's ``ModernBertForTokenClassification``): ``logits``
    ``(B, T, num_labels)``; ``labels`` ``(B, T)``, -100 ignored."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """See :meth:`ModernBert.forward`."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.classify(out.last_hidden_state)
        if labels is not None:
            out.loss = token_loss(out.logits, labels, self.config.num_labels)
        return out
