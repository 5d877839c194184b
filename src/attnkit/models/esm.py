"""ESM-2: a protein language model (Lin et al. 2023, "Evolutionary-scale prediction of
atomic-level protein structure with a language model"), and ESM-1b (Rives et al. 2021,
"Biological structure and function emerge from scaling unsupervised learning to 250 million
protein sequences").

A BERT-style masked language model over amino-acid tokens with a modern encoder: pre-norm
layers (LayerNorm eps 1e-5, exact GELU), rotary position embeddings on queries and keys (Su et
al. 2021) instead of a position table, and a final LayerNorm (the reference code's
``emb_layer_norm_after``). No segment embeddings. ESM-1b is the same encoder with a learned
position table (fairseq's positions: counted from ``pad_token_id + 1``, padding at
``pad_token_id``) and a LayerNorm on the embeddings (``emb_layer_norm_before``):
``position_embedding="absolute"``, ``embed_norm=True``.

Token dropout (the reference code's, kept by Hugging Face): the embeddings of ``<mask>`` tokens
are zeroed and every embedding is scaled by ``(1 - 0.15·0.8) / (1 - observed mask ratio)``,
in training and in evaluation alike, as input dropout of the masked tokens would be.

Heads: masked LM (dense, GELU, LayerNorm, decoder tied to the word embeddings, bias: BERT's
head), sequence classification (Hugging Face's ``EsmClassificationHead``: dense + tanh on the
``<cls>`` state, then a linear layer) and token classification. Every ESM also carries the
contact-prediction head of Rao et al. 2021 ("Transformer protein language models are
unsupervised structure learners"): ``predict_contacts`` reads residue-residue contacts off the
attention maps with one logistic regression over every layer's heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.bert import FirstTokenHead, MaskedLMHead, init_bert_weights
from attnkit.models.classification import ClassifierLoss, ClassLabels, ProblemType, token_loss
from attnkit.models.config import Config
from attnkit.models.outputs import ModelOutput
from attnkit.nn import Encoder, LayerConfig, RotaryEmbedding, as_padding_mask, expand_padding_mask, mean_pool

# Token dropout as in the ESM reference code: 15% of the residues were chosen for prediction in
# training and 80% of those replaced by <mask>, so 12% of the inputs were <mask>.
MASK_RATIO_TRAIN = 0.15 * 0.8
EOS_TOKEN_ID = 2  # ESM's <eos>, whose attention the contact head ignores (fixed, as in Hugging Face)


@dataclass(frozen=True)
class EsmConfig(ClassLabels, Config):
    """Sizes of an ESM model. Defaults are ``esm2_t33_650M_UR50D`` (Lin et al. 2023: 33 layers,
    width 1280, 20 heads) with ESM's 33-token vocabulary."""

    model_type = "esm"

    vocab_size: int = 33
    # Rotary (ESM-2); absolute is ESM-1b's learned table of n_positions rows, the first
    # pad_token_id + 1 of them never used by a real token.
    position_embedding: Literal["rotary", "absolute"] = "rotary"
    embed_norm: bool = False  # a LayerNorm on the embeddings (ESM-1b's emb_layer_norm_before)
    # Longest sequence (with <cls> and <eos>) the checkpoint was trained on, + the padding offset
    # of absolute positions. Rotary positions have no table: recorded, not enforced (Hugging Face
    # runs longer sequences too); absolute ones enforce it.
    n_positions: int = 1026
    d_model: int = 1280
    n_layers: int = 33
    n_heads: int = 20
    d_ff: int = 5120
    norm_eps: float = 1e-5
    dropout: float = 0.0
    attn_dropout: float = 0.0
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    token_dropout: bool = True
    mask_token_id: int | None = 32
    pad_token_id: int | None = 1
    num_labels: int = 2
    # Sequence classification's loss; None infers it from num_labels and the labels' dtype (as HF).
    problem_type: ProblemType | None = None
    # The classes' names in id order (Hugging Face's id2label); None names them LABEL_0, LABEL_1, ...
    label_names: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.require_positive("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "d_ff", "norm_eps",
                              "rope_theta")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.position_embedding in ("rotary", "absolute"), "position_embedding",
                     "must be 'rotary' (ESM-2) or 'absolute' (ESM-1b)")
        self.require(self.position_embedding != "rotary" or (self.d_model // self.n_heads) % 2 == 0, "d_model",
                     f"must give an even head dimension (d_model / n_heads, {self.n_heads} heads) for rotary positions")
        self.require(self.position_embedding != "absolute" or self.pad_token_id is not None, "pad_token_id",
                     "must be set for absolute positions (they are counted from it)")
        self.require_fraction("dropout", "attn_dropout")
        self.require_token_ids("mask_token_id", "pad_token_id")
        self.require(not self.token_dropout or self.mask_token_id is not None, "mask_token_id",
                     "must be set when token_dropout is on (it scales by the share of <mask> tokens)")
        self.validate_labels()

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation="gelu", norm="layernorm",
            norm_eps=self.norm_eps, pre_norm=True, bias=True, dropout=self.dropout, attn_dropout=self.attn_dropout,
            ffn_dropout=0.0,  # as the reference code: dropout on the sublayer outputs only
        )


class ContactPredictionHead(nn.Module):
    """Contacts from attention maps (Rao et al. 2021 §3): each of the ``L·H`` maps without
    ``<cls>``, ``<eos>`` and padding, symmetrised (``A + Aᵀ``) and average-product corrected
    (``F - F_i· F_·j / F_··``, which removes what every map shares along rows and columns), is a
    feature of each residue pair; ``sigmoid(regression(features))`` is the contact probability."""

    def __init__(self, in_features: int):
        super().__init__()
        self.regression = nn.Linear(in_features, 1)

    def forward(self, input_ids: torch.Tensor, attentions: torch.Tensor) -> torch.Tensor:
        """``attentions`` ``(B, L, H, T, T)`` with padded rows and columns zeroed ->
        ``(B, T - 2, T - 2)`` probabilities for the residues between ``<cls>`` and the last position."""
        keep = (input_ids != EOS_TOKEN_ID).to(attentions.dtype)  # (B, T)
        a = attentions * (keep[:, None, :] * keep[:, :, None])[:, None, None]
        a = a[..., 1:-1, 1:-1]  # without <cls> (first) and the last position (<eos> or padding)
        B, L, H, T, _ = a.shape
        a = a.reshape(B, L * H, T, T)
        a = a + a.transpose(-1, -2)
        a = a - a.sum(-1, keepdim=True) * a.sum(-2, keepdim=True) / a.sum((-1, -2), keepdim=True)
        return torch.sigmoid(self.regression(a.permute(0, 2, 3, 1).to(self.regression.weight.dtype)).squeeze(-1))


class Esm(Model):
    """The ESM-2 encoder (Hugging Face's ``EsmModel``).

    ``forward(input_ids (B, T), attention_mask (B, T)=None)`` returns a :class:`ModelOutput` with
    ``last_hidden_state`` ``(B, T, C)`` after the final LayerNorm and, with the pooler (Hugging
    Face's, tanh of a dense layer over ``<cls>``), ``pooler_output`` ``(B, C)``. ``hidden_states``
    are the embeddings and each layer's output, the last one after the final LayerNorm (as
    Hugging Face's). Padding must be on the right: positions count from the first token.
    """

    config_class = EsmConfig

    def __init__(self, config: EsmConfig, add_pooler: bool = True):
        super().__init__(config)
        c = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        absolute = c.position_embedding == "absolute"
        self.position_embeddings = nn.Embedding(c.n_positions, c.d_model, padding_idx=c.pad_token_id) if absolute \
            else None
        self.rotary = None if absolute else RotaryEmbedding(c.d_model // c.n_heads, base=c.rope_theta)
        self.embed_norm = nn.LayerNorm(c.d_model, eps=c.norm_eps) if c.embed_norm else None
        self.encoder = Encoder(c.layer_config(), c.n_layers, final_norm=True)
        self.pooler = nn.Linear(c.d_model, c.d_model) if add_pooler else None
        self.contact_head = ContactPredictionHead(c.n_layers * c.n_heads)
        self.apply(lambda m: init_bert_weights(m, c.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> ModelOutput:
        """Args:
            input_ids: ``(B, T)`` token ids (``<cls>`` residues ``<eos>``, as the tokenizer makes them).
            attention_mask: ``(B, T)`` bool or 0/1, True/1 = real token (padding on the right).
            token_type_ids: accepted so that a tokenizer's output can be passed whole; ESM has
                no segments, so they must be zeros.
        """
        check_token_ids(input_ids, "input_ids", self.config.vocab_size)
        B, T = input_ids.shape
        if token_type_ids is not None and bool((token_type_ids != 0).any()):
            raise InputError("ESM has no segment embeddings: token_type_ids must be zeros (or not passed)")
        mask = None
        if attention_mask is not None:
            attention_mask = as_padding_mask(attention_mask, B, T)
            if not bool(attention_mask.all()):  # nothing padded: no mask for the kernel to apply
                mask = expand_padding_mask(attention_mask)  # (B, 1, 1, T)
        x = self.embed(input_ids, attention_mask)
        rotary = None if self.rotary is None else self.rotary(torch.arange(T, device=input_ids.device)[None])
        out = self.encoder(x, mask=mask, rotary=rotary, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        h = out.hidden
        pooled = torch.tanh(self.pooler(h[:, 0])) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=h, pooler_output=pooled, attentions=out.attentions,
                           hidden_states=out.hidden_states)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Word embeddings with token dropout (see the module docstring), plus ESM-1b's positions
        and embedding LayerNorm, padding zeroed: ``(B, T, C)``. ``attention_mask``: ``(B, T)`` bool or None."""
        x = self.word_embeddings(input_ids)
        c = self.config
        if c.token_dropout:
            is_mask = input_ids == c.mask_token_id  # (B, T)
            x = x.masked_fill(is_mask[..., None], 0.0)
            lengths = attention_mask.sum(-1) if attention_mask is not None else torch.full_like(input_ids[:, 0], x.shape[1])
            # clamp: a row of padding alone, or of <mask> alone, stays finite (zeros) where HF gives NaN
            observed = is_mask.sum(-1).float() / lengths.clamp(min=1)  # (B,)
            x = (x * ((1 - MASK_RATIO_TRAIN) / (1 - observed).clamp(min=1e-6))[:, None, None]).to(x.dtype)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(self.position_ids(input_ids))
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x.dtype)
        return x

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """ESM-1b's (fairseq's) positions ``(B, T)``: ``pad_token_id + 1, + 2, ...`` over the
        tokens that are not padding, ``pad_token_id`` at padding. Longer than the table is an
        :class:`InputError`."""
        pad = self.config.pad_token_id
        real = (input_ids != pad).long()
        positions = real.cumsum(dim=1) * real + pad
        if int(positions.max()) >= self.config.n_positions:
            raise InputError(f"a sequence of {int(real.sum(1).max())} tokens is longer than the model's "
                             f"{self.config.n_positions - pad - 1} positions (n_positions - pad_token_id - 1)")
        return positions

    def predict_contacts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Residue-residue contact probabilities ``(B, T - 2, T - 2)`` of ``input_ids``
        (``<cls>`` residues ``<eos>``, padding on the right): entry ``[b, i, j]`` is for residues
        ``i`` and ``j`` (0-based, ``<cls>`` not counted), symmetric in ``i``, ``j``; rows of
        padding are meaningless. Hugging Face's ``EsmModel.predict_contacts``."""
        B, T = input_ids.shape
        real = torch.ones(B, T, dtype=torch.bool, device=input_ids.device) if attention_mask is None \
            else as_padding_mask(attention_mask, B, T)
        attentions = torch.stack(self(input_ids, real, output_attentions=True).attentions, dim=1)  # (B, L, H, T, T)
        keep = real.to(attentions.dtype)
        return self.contact_head(input_ids, attentions * (keep[:, :, None] * keep[:, None, :])[:, None, None])

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           normalize: bool = False) -> torch.Tensor:
        """Mean of the last hidden states over real tokens (``<cls>``/``<eos>`` included): ``(B, C)``,
        the usual per-protein ESM embedding; L2-normalised with ``normalize``."""
        h = self(input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(h, attention_mask, normalize=normalize)


class _EsmHead(Model):
    """An ESM encoder (``self.esm``, without pooler) plus a task head."""

    config_class = EsmConfig
    base_model_prefix, base_model_class = "esm", Esm

    def __init__(self, config: EsmConfig):
        super().__init__(config)
        self.esm = Esm(config, add_pooler=False)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, output_attentions=False,
               output_hidden_states=False) -> ModelOutput:
        return self.esm(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)

    def predict_contacts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """See :meth:`Esm.predict_contacts`."""
        return self.esm.predict_contacts(input_ids, attention_mask)


class EsmForMaskedLM(MaskedLMHead, _EsmHead):
    """ESM-2's masked language model (Hugging Face's ``EsmForMaskedLM``): ``logits`` ``(B, T, V)``;
    ``labels`` ``(B, T)`` with -100 on the positions not to predict give ``loss``."""

    def __init__(self, config: EsmConfig):
        super().__init__(config)
        self.add_masked_lm_head(self.esm.word_embeddings, "gelu", config.norm_eps, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """See :meth:`Esm.forward`."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        return self.masked_lm_output(out, labels)

    @torch.no_grad()
    def masked_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         batch_size: int = 32) -> torch.Tensor:
        """``log p(token | the sequence with that position masked)`` at every real position:
        ``(B, T, V)`` float32 log-probabilities (zeros at padding), one forward pass per position,
        ``batch_size`` of them at a time.

        What protein LMs are scored with: summed over the residues at the true ids it is the
        pseudo-log-likelihood (Salazar et al. 2020); at one position,
        ``lp[b, t, mutant] - lp[b, t, wild_type]`` is the masked-marginal score of a
        substitution (Meier et al. 2021). Positions of ``<cls>``/``<eos>`` are scored too: slice
        them off.
        """
        c = self.config
        if c.mask_token_id is None:
            raise InputError("masked_log_probs needs the model's mask_token_id (EsmConfig.mask_token_id is None)")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        check_token_ids(input_ids, "input_ids", c.vocab_size)
        B, T = input_ids.shape
        real = torch.ones(B, T, dtype=torch.bool, device=input_ids.device) if attention_mask is None \
            else as_padding_mask(attention_mask, B, T)
        rows, cols = real.nonzero(as_tuple=True)  # one masked copy of its sequence per real position
        out = torch.zeros(B, T, c.vocab_size, device=input_ids.device)
        for start in range(0, len(rows), batch_size):
            r, t = rows[start:start + batch_size], cols[start:start + batch_size]
            picked = torch.arange(len(r), device=input_ids.device)
            ids = input_ids[r].index_put((picked, t), torch.tensor(c.mask_token_id, device=input_ids.device))
            logits = self(ids, attention_mask=real[r]).logits[picked, t]  # (n, V)
            out[r, t] = logits.float().log_softmax(-1)
        return out


class EsmForSequenceClassification(ClassifierLoss, FirstTokenHead, _EsmHead):
    """Classifier or regressor over the ``<cls>`` state (Hugging Face's ``EsmClassificationHead``:
    dropout, dense, tanh, dropout, linear): ``logits`` ``(B, num_labels)``. The loss follows
    ``config.problem_type`` (see :class:`~attnkit.models.classification.ClassifierLoss`)."""

    def __init__(self, config: EsmConfig):
        super().__init__(config)
        self.add_first_token_head(config.d_model, config.num_labels, config.dropout, config.initializer_range)


class EsmForTokenClassification(_EsmHead):
    """Per-residue classifier (secondary structure, binding sites): ``logits`` ``(B, T, num_labels)``;
    ``labels`` ``(B, T)``, -100 ignored."""

    def __init__(self, config: EsmConfig):
        super().__init__(config)
        self.head_drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        init_bert_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_attentions=False,
                output_hidden_states=False) -> ModelOutput:
        """See :meth:`Esm.forward`."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        out.logits = self.classifier(self.head_drop(out.last_hidden_state))
        if labels is not None:
            out.loss = token_loss(out.logits, labels, self.config.num_labels)
        return out
