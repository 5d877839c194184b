"""BERT: a bidirectional Transformer encoder (Devlin et al. 2019) and its task heads.

Word + position + token-type embeddings, a post-norm encoder (Vaswani et al. 2017's residual
wiring, GELU, LayerNorm eps 1e-12) and a tanh pooler over the first ([CLS]) token. Heads:
masked LM (decoder tied to the word embeddings), sequence classification, token
classification and extractive question answering. Mean pooling gives sentence embeddings
(Reimers & Gurevych 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.classification import ClassifierLoss, ClassLabels, ProblemType, class_ids, token_loss
from attnkit.models.config import Config
from attnkit.models.outputs import ModelOutput
from attnkit.nn import ACTIVATIONS, Encoder, LayerConfig, as_padding_mask, expand_padding_mask, mean_pool


@dataclass(frozen=True)
class BertConfig(ClassLabels, Config):
    """Sizes of a BERT. Defaults are BERT-base (Devlin et al. 2019, §3)."""

    model_type = "bert"

    vocab_size: int = 30522
    n_positions: int = 512
    type_vocab_size: int = 2
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.1
    attn_dropout: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    num_labels: int = 2
    classifier_dropout: float | None = None
    # Sequence classification's loss; None infers it from num_labels and the labels' dtype (as HF).
    problem_type: ProblemType | None = None
    # The classes' names in id order (Hugging Face's id2label); None names them LABEL_0, LABEL_1, ...
    label_names: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.require_positive("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "d_ff", "norm_eps")
        self.require(isinstance(self.type_vocab_size, int) and self.type_vocab_size >= 0, "type_vocab_size",
                     "must be an integer >= 0 (0: no segment embeddings, as DistilBERT)")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.activation in ACTIVATIONS, "activation", f"must be one of {tuple(ACTIVATIONS)}")
        self.require_fraction("dropout", "attn_dropout")
        self.require(self.classifier_dropout is None or 0.0 <= self.classifier_dropout < 1.0, "classifier_dropout",
                     "must be None or in [0, 1)")
        self.require_token_ids("pad_token_id")
        self.validate_labels()

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=self.activation, norm="layernorm",
            norm_eps=self.norm_eps, pre_norm=False, bias=True, dropout=self.dropout, attn_dropout=self.attn_dropout,
            ffn_dropout=0.0,  # BERT drops out the sublayer outputs only, not the feed-forward's hidden units
        )


class Bert(Model):
    """The BERT encoder.

    ``forward(input_ids (B, T), attention_mask (B, T)=None, token_type_ids (B, T)=None)`` returns a
    :class:`ModelOutput` with ``last_hidden_state`` ``(B, T, C)`` and ``pooler_output`` ``(B, C)``.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig, add_pooler: bool = True):
        super().__init__(config)
        c = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.n_positions, c.d_model)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.d_model) if c.type_vocab_size else None
        self.embed_norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Encoder(c.layer_config(), c.n_layers, final_norm=False)
        self.pooler = nn.Linear(c.d_model, c.d_model) if add_pooler else None
        self.apply(lambda m: init_bert_weights(m, c.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> ModelOutput:
        """Args:
            input_ids: ``(B, T)`` token ids.
            attention_mask: ``(B, T)`` bool or 0/1, True/1 = real token.
            token_type_ids: ``(B, T)`` segment ids (0 = sentence A, 1 = sentence B); zeros by default.
        """
        check_token_ids(input_ids, "input_ids", self.config.vocab_size)
        B, T = input_ids.shape
        c = self.config
        if T > self.max_length:
            raise InputError(f"sequence of {T} tokens is longer than the model's {self.max_length} positions "
                             f"(n_positions={c.n_positions})")
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise InputError(f"token_type_ids must have the shape of input_ids {(B, T)}, got {tuple(token_type_ids.shape)}")
        if token_type_ids is not None and c.type_vocab_size:
            check_token_ids(token_type_ids, "token_type_ids", c.type_vocab_size, "type_vocab_size")
        mask = None
        if attention_mask is not None:
            attention_mask = as_padding_mask(attention_mask, B, T)
            if not bool(attention_mask.all()):  # nothing padded: no mask for the kernel to apply
                mask = expand_padding_mask(attention_mask)  # (B, 1, 1, T)

        x = self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids(input_ids))
        if self.token_type_embeddings is not None:  # a model without segments ignores token_type_ids
            x = x + self.token_type_embeddings(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        x = self.drop(self.embed_norm(x))
        out = self.encoder(x, mask=mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = out.hidden
        pooled = torch.tanh(self.pooler(h[:, 0])) if self.pooler is not None else None  # Devlin et al. §3: [CLS]
        return ModelOutput(last_hidden_state=h, pooler_output=pooled, attentions=out.attentions,
                           hidden_states=out.hidden_states)

    @property
    def max_length(self) -> int:
        """The longest input, in tokens."""
        return self.config.n_positions

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The position of each token: ``0 .. T-1`` (``(T,)``, the same for every row)."""
        return torch.arange(input_ids.shape[1], device=input_ids.device)

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           token_type_ids: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
        """Mean of the last hidden states over real tokens, L2-normalised by default: ``(B, C)``."""
        h = self(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(h, attention_mask, normalize=normalize)


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) matrices and embeddings, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _BertHead(Model):
    """A BERT encoder plus a task head; the encoder is the attribute named ``base_model_prefix``
    (``self.bert``; ``self.roberta`` in RoBERTa's heads)."""

    config_class = BertConfig
    base_model_prefix, base_model_class = "bert", Bert
    add_pooler = False
    has_classifier = False  # a linear ``classifier`` to num_labels outputs

    def __init__(self, config: BertConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config, add_pooler=self.add_pooler))
        if self.has_classifier:
            p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
            self.head_drop = nn.Dropout(p)
            self.classifier = nn.Linear(config.d_model, config.num_labels)
            init_bert_weights(self.classifier, config.initializer_range)

    @property
    def encoder_model(self) -> Bert:
        return getattr(self, self.base_model_prefix)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, output_attentions=False,
               output_hidden_states=False) -> ModelOutput:
        return self.encoder_model(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)

    def sentence_embedding(self, input_ids, attention_mask=None, token_type_ids=None, normalize: bool = True):
        """See :meth:`Bert.sentence_embedding`."""
        return self.encoder_model.sentence_embedding(input_ids, attention_mask, token_type_ids, normalize)


class MaskedLMHead:
    """The masked-LM head BERT and ESM share (Devlin et al. §3.1, task 1), a mixin of their
    models: ``transform`` (dense), the activation, ``transform_norm`` (LayerNorm), then
    ``decoder``, whose weight is the word embeddings (tied, as in Google's reference BERT and in
    ESM) and whose bias is the head's own."""

    def add_masked_lm_head(self, embeddings: nn.Embedding, activation: str, norm_eps: float, std: float) -> None:
        """Build the head on ``self`` for ``embeddings`` ``(V, C)``, initialised as BERT's."""
        V, C = embeddings.weight.shape
        self.transform = nn.Linear(C, C)
        self.transform_act = ACTIVATIONS[activation]
        self.transform_norm = nn.LayerNorm(C, eps=norm_eps)
        self.decoder = nn.Linear(C, V)
        for m in (self.transform, self.transform_norm, self.decoder):
            init_bert_weights(m, std)
        self.decoder.weight = embeddings.weight

    def masked_lm_output(self, out: ModelOutput, labels: torch.Tensor | None) -> ModelOutput:
        """Set ``out.logits`` ``(B, T, V)`` from ``out.last_hidden_state``, and ``out.loss`` (mean
        cross-entropy, -100 ignored) when ``labels`` ``(B, T)`` are given."""
        h = self.transform_norm(self.transform_act(self.transform(out.last_hidden_state)))
        out.logits = self.decoder(h)
        if labels is not None:
            out.loss = token_loss(out.logits, labels, self.decoder.out_features)
        return out


class FirstTokenHead:
    """The sequence-classification head RoBERTa, ESM and DistilBERT share, a mixin of their
    models: on the first token's state, ``head_drop`` (dropout; not DistilBERT's), ``head_dense``
    (dense), tanh (DistilBERT: ReLU), dropout, then ``classifier`` to the labels (Hugging Face's
    ``RobertaClassificationHead``, ``EsmClassificationHead``, DistilBERT's ``pre_classifier``).
    BERT instead reads its pooler (the same dense and tanh, inside the encoder, with dropout only
    after it)."""

    def add_first_token_head(self, d_model: int, num_labels: int, dropout: float, std: float,
                             activation: str = "tanh", drop_first: bool = True) -> None:
        self.head_drop = nn.Dropout(dropout)
        self.head_dense = nn.Linear(d_model, d_model)
        self.classifier = nn.Linear(d_model, num_labels)
        self.head_act = torch.tanh if activation == "tanh" else ACTIVATIONS[activation]
        self.head_drop_first = drop_first
        for m in (self.head_dense, self.classifier):
            init_bert_weights(m, std)

    def first_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, num_labels)`` from the last hidden states ``(B, T, C)``."""
        h = hidden[:, 0]
        h = self.head_act(self.head_dense(self.head_drop(h) if self.head_drop_first else h))
        return self.classifier(self.head_drop(h))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """``logits`` ``(B, num_labels)``; ``labels`` ``(B,)`` class ids (or floats, per
        ``config.problem_type``, :class:`~attnkit.models.classification.ClassifierLoss`) give ``loss``."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.first_token_logits(out.last_hidden_state)
        if labels is not None:
            out.loss = self.classification_loss(out.logits, labels)
        return out


class BertForMaskedLM(MaskedLMHead, _BertHead):
    """Masked language model (Devlin et al. §3.1, task 1). ``logits`` ``(B, T, V)``; ``labels``
    ``(B, T)`` with -100 on unmasked positions give ``loss``."""

    lm_head_activation: str | None = None  # the head's activation; None: the encoder's (BERT's)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.add_masked_lm_head(self.encoder_model.word_embeddings, self.lm_head_activation or config.activation,
                                config.norm_eps, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        return self.masked_lm_output(out, labels)


class BertForSequenceClassification(ClassifierLoss, _BertHead):
    """Classifier over the pooled [CLS] vector: ``logits`` ``(B, num_labels)``. The loss follows
    ``config.problem_type`` (see :class:`~attnkit.models.classification.ClassifierLoss`)."""

    add_pooler = True
    has_classifier = True

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.classifier(self.head_drop(out.pooler_output))
        if labels is not None:
            out.loss = self.classification_loss(out.logits, labels)
        return out


class BertForTokenClassification(_BertHead):
    """Per-token classifier (NER, POS): ``logits`` ``(B, T, num_labels)``; ``labels`` ``(B, T)``, -100 ignored."""

    has_classifier = True

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.classifier(self.head_drop(out.last_hidden_state))
        if labels is not None:
            out.loss = token_loss(out.logits, labels, self.config.num_labels)
        return out


class BertForQuestionAnswering(_BertHead):
    """Extractive QA (Devlin et al. §4.2, SQuAD): ``start_logits`` and ``end_logits`` ``(B, T)``.
    ``start_positions``/``end_positions`` ``(B,)`` give the mean of the two cross-entropies;
    positions outside the sequence are ignored."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.qa_drop = nn.Dropout(getattr(config, "qa_dropout", 0.0))  # DistilBERT's; BERT has none
        self.qa_outputs = nn.Linear(config.d_model, 2)
        init_bert_weights(self.qa_outputs, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None, end_positions=None,
                output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        start, end = self.qa_outputs(self.qa_drop(out.last_hidden_state)).unbind(dim=-1)  # (B, T) each
        out.start_logits, out.end_logits = start, end
        if (start_positions is None) != (end_positions is None):
            raise InputError("pass both start_positions and end_positions, or neither")
        if start_positions is not None:
            T = input_ids.shape[1]
            # Answers outside the window (truncated away) are ignored, as in the reference implementation.
            s = class_ids(start_positions, input_ids.shape[:1], None, "start_positions").clamp(0, T)
            e = class_ids(end_positions, input_ids.shape[:1], None, "end_positions").clamp(0, T)
            out.loss = (F.cross_entropy(start.float(), s, ignore_index=T) + F.cross_entropy(end.float(), e, ignore_index=T)) / 2
        return out

    def count_targets(self, batch: dict) -> int:
        """The answers inside the window (the loss ignores the others; ``start_positions`` decide)."""
        if not torch.is_tensor(batch.get("start_positions")):
            return super().count_targets(batch)
        T = batch["input_ids"].shape[1]
        return int((batch["start_positions"].clamp(0, T) < T).sum())

