"""Logit transforms: the sampling warpers temperature, top-k (Fan et al. 2018), top-p /
nucleus (Holtzman et al. 2020), min-p (Nguyen et al. 2024), typical sampling (Meister et al.
2023), epsilon and eta sampling (Hewitt et al. 2022), with Hugging Face's order and tie rules
(:class:`Warpers` holds one call's); and the processors that
read the sequence so far: a repetition penalty (Keskar et al. 2019), no repeated n-grams
(Paulus et al. 2017) and banned token sequences, equal to Hugging Face's
``RepetitionPenaltyLogitsProcessor``, ``NoRepeatNGramLogitsProcessor`` and
``NoBadWordsLogitsProcessor``."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Warpers(NamedTuple):
    """One call's sampling warpers (:func:`process_logits`' arguments): ``warpers(logits,
    min_tokens_to_keep)`` applies them."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    epsilon_cutoff: float | None = None
    eta_cutoff: float | None = None

    def __call__(self, logits: torch.Tensor, min_tokens_to_keep: int = 1) -> torch.Tensor:
        return process_logits(logits, self.temperature, self.top_k, self.top_p, min_tokens_to_keep, self.min_p,
                              self.typical_p, self.epsilon_cutoff, self.eta_cutoff)


def _keep_top(remove: torch.Tensor, logits: torch.Tensor, keep: int) -> torch.Tensor:
    """``remove`` with the ``keep`` most likely tokens kept whatever it says."""
    kth = torch.topk(logits, min(keep, logits.size(-1)), dim=-1).values[..., -1:]
    return remove & (logits < kth)


def process_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, min_tokens_to_keep: int = 1, min_p: float | None = None,
                   typical_p: float | None = None, epsilon_cutoff: float | None = None,
                   eta_cutoff: float | None = None) -> torch.Tensor:
    """Return ``(B, V)`` logits with removed tokens set to ``-inf``, the warpers in Hugging
    Face's order: temperature, top-k, top-p, min-p (tokens less likely than ``min_p`` times the
    most likely one are removed), typical (the tokens whose surprisal is closest to the entropy,
    up to ``typical_p`` of the mass), epsilon (tokens below probability ``epsilon_cutoff``), eta
    (below ``min(eta, √eta · exp(-entropy))``).

    Each always keeps the ``min_tokens_to_keep`` most likely tokens (beam sampling keeps
    ``1 + number of EOS ids`` so a non-EOS continuation survives, as Hugging Face does).
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -min_tokens_to_keep:] = False  # always keep the most likely tokens
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    if min_p is not None and min_p > 0.0:
        probs = logits.softmax(dim=-1)
        remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(logits, min(min_tokens_to_keep, logits.size(-1)), dim=-1).indices
        remove.scatter_(-1, keep, False)
        logits = logits.masked_fill(remove, float("-inf"))
    if typical_p is not None and typical_p < 1.0:
        logp = logits.log_softmax(dim=-1)
        entropy = -(logp * logp.exp()).nansum(dim=-1, keepdim=True)
        shifted, order = (-logp - entropy).abs().sort(dim=-1)  # closest to the entropy first
        cum = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cum < typical_p).sum(dim=-1, keepdim=True).clamp(max=logits.size(-1) - 1)
        remove_sorted = shifted > shifted.gather(-1, last)
        remove_sorted[..., :min_tokens_to_keep] = False
        logits = logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))
    if epsilon_cutoff is not None and 0.0 < epsilon_cutoff < 1.0:
        remove = _keep_top(logits.softmax(dim=-1) < epsilon_cutoff, logits, min_tokens_to_keep)
        logits = logits.masked_fill(remove, float("-inf"))
    if eta_cutoff is not None and 0.0 < eta_cutoff < 1.0:
        probs = logits.softmax(dim=-1)
        entropy = torch.distributions.Categorical(logits=logits).entropy()[..., None]
        eta = torch.minimum(torch.tensor(eta_cutoff, device=logits.device), eta_cutoff ** 0.5 * torch.exp(-entropy))
        logits = logits.masked_fill(_keep_top(probs < eta, logits, min_tokens_to_keep), float("-inf"))
    return logits


def penalize_repetition(scores: torch.Tensor, seq: torch.Tensor, penalty: float,
                        start: torch.Tensor | None = None) -> torch.Tensor:
    """Make every token of ``seq`` ``(B, L)`` less likely, in place on ``scores`` ``(B, V)``: a
    score ``s`` becomes ``s / penalty`` if positive, ``s * penalty`` if not. Positions before
    ``start`` ``(B,)`` (a prompt's left padding) do not count."""
    V = scores.shape[-1]
    if start is not None:
        seq = seq.masked_fill(torch.arange(seq.shape[1], device=seq.device) < start[:, None], V)
    seen = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device).scatter_(1, seq, True)[:, :V]
    return scores.copy_(torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores))


def ban_repeated_ngrams(scores: torch.Tensor, seq: torch.Tensor, n: int) -> torch.Tensor:
    """Ban, in place, every token that would repeat an ``n``-gram of ``seq`` ``(B, L)``: the
    tokens that followed an earlier occurrence of the last ``n - 1`` tokens."""
    L = seq.shape[1]
    if L < n:
        return scores
    windows = seq.unfold(1, n, 1)  # (B, L - n + 1, n): every n-gram so far
    hit = (windows[:, :, :-1] == seq[:, L - n + 1:].unsqueeze(1)).all(-1)
    rows, cols = hit.nonzero(as_tuple=True)
    scores[rows, windows[rows, cols, -1]] = float("-inf")
    return scores


def ban_sequences(scores: torch.Tensor, seq: torch.Tensor, prefixes: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Ban, in place, the token that would complete a banned sequence: ``last[g]`` in the rows
    of ``seq`` ``(B, L)`` that end with ``prefixes[g]`` (``prefixes`` ``(G, n)``, one length
    ``n``; nothing is banned while ``L < n``)."""
    n = prefixes.shape[1]
    if seq.shape[1] < n:
        return scores
    hit = (seq[:, None, seq.shape[1] - n:] == prefixes).all(-1)  # (B, G)
    rows, groups = hit.nonzero(as_tuple=True)
    scores[rows, last[groups]] = float("-inf")
    return scores


class OpenAIPenalties:
    """OpenAI's ``frequency_penalty``, ``presence_penalty`` and ``logit_bias`` as a
    ``logits_processor`` (``(input_ids (B, L), scores (B, V)) -> scores``): each token's score
    minus ``frequency`` times its count among the generated tokens (those after the first
    ``prompt_length`` of ``input_ids``) and minus ``presence`` if it is among them at all, plus
    ``logit_bias[token]``; as OpenAI's API documents them (and vLLM applies them)."""

    def __init__(self, prompt_length: int, frequency: float = 0.0, presence: float = 0.0,
                 logit_bias: dict[int, float] | None = None):
        self.prompt_length, self.frequency, self.presence = prompt_length, frequency, presence
        self.logit_bias = dict(logit_bias or {})

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] and (self.frequency or self.presence):
            counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            scores = scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)
        if self.logit_bias:
            ids = torch.tensor(list(self.logit_bias), device=scores.device)
            scores = scores.index_add(1, ids, scores.new_tensor(list(self.logit_bias.values())).expand(len(scores), -1))
        return scores
