"""Task-level inference in one call, with the outputs of Hugging Face's pipelines of the same
name: :func:`classify` (``"text-classification"``) and :func:`fill_mask` (``"fill-mask"``).
Sentence embeddings are :func:`attnkit.embed`; generation is ``model.generate`` and
:class:`attnkit.generation.text.TextStream`.
"""

from __future__ import annotations

import torch

from attnkit.errors import InputError


def _texts(texts) -> tuple[list[str], bool]:
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise InputError("texts must be a non-empty string or a non-empty list of non-empty strings")
    return texts, single


def _eval_batches(model, tokenizer, texts: list[str], batch_size: int, max_length: int | None):
    """``(batch, model output)`` for ``texts`` in order, ``batch_size`` at a time, without dropout."""
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], truncation=max_length is not None, max_length=max_length)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            with torch.no_grad():
                yield batch, model(**batch)
    finally:
        model.train(was_training)


def classify(model, tokenizer, texts: str | list[str], top_k: int | None = 1, function_to_apply: str | None = None,
             batch_size: int = 32, max_length: int | None = None):
    """Label texts with a sequence classifier (``BertForSequenceClassification``,
    ``EsmForSequenceClassification``): ``{"label", "score"}`` per text (the best label), or
    with ``top_k`` (``None``: all) a list of them, best first.

    Scores as Hugging Face's pipeline computes them: softmax over the labels for single-label
    classifiers, sigmoid for multi-label ones (and ``num_labels == 1``), the raw logit for
    regression; ``function_to_apply`` (``"softmax"``, ``"sigmoid"``, ``"none"``) overrides.
    A single text gives a single result."""
    if not hasattr(model.config, "num_labels") or not hasattr(model, "classification_loss"):
        raise InputError(f"classify needs a sequence classifier, got a {type(model).__name__}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1 or None (every label), got {top_k}")
    texts, single = _texts(texts)
    c = model.config
    if function_to_apply is None:
        function_to_apply = ("none" if c.problem_type == "regression" else "sigmoid"
                             if c.problem_type == "multi_label_classification" or c.num_labels == 1 else "softmax")
    if function_to_apply not in ("softmax", "sigmoid", "none"):
        raise InputError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function_to_apply!r}")
    names = c.label_names or tuple(f"LABEL_{i}" for i in range(c.num_labels))
    results = []
    for _, out in _eval_batches(model, tokenizer, texts, batch_size, max_length):
        logits = out.logits.float()
        scores = logits.softmax(-1) if function_to_apply == "softmax" else \
            logits.sigmoid() if function_to_apply == "sigmoid" else logits
        for row in scores.tolist():
            ranked = sorted(({"label": names[i], "score": s} for i, s in enumerate(row)), key=lambda d: -d["score"])
            results.append(ranked[0] if top_k == 1 else ranked[:top_k])
    return results[0] if single else results


def fill_mask(model, tokenizer, texts: str | list[str], top_k: int = 5, batch_size: int = 32):
    """The likeliest tokens for the mask token in each text (``"Paris is the [MASK] of
    France."``) with a masked LM (``BertForMaskedLM``, ``EsmForMaskedLM``): per text a list of
    ``{"score", "token", "token_str", "sequence"}`` (the softmax probability, the id, the token
    decoded alone, the text with it filled in), best first; for a text with several masks, one
    such list per mask. A single text gives a single result."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise InputError("fill_mask needs a tokenizer with a mask token")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    texts, single = _texts(texts)
    results = []
    for batch, out in _eval_batches(model, tokenizer, texts, batch_size, None):
        if out.logits is None or out.logits.dim() != 3:
            raise InputError(f"fill_mask needs a masked language model, got a {type(model).__name__}")
        for ids, mask, logits, text in zip(batch["input_ids"], batch["attention_mask"], out.logits, texts):
            ids = ids[mask.bool()]
            positions = (ids == mask_id).nonzero().flatten().tolist()
            if not positions:
                raise InputError(f"text {text!r} has no mask token ({tokenizer.id_to_token(mask_id)})")
            per_mask = []
            for pos in positions:
                values, tokens = logits[pos].float().softmax(-1).topk(min(top_k, logits.shape[-1]))
                row = []
                for v, t in zip(values.tolist(), tokens.tolist()):
                    filled = ids.clone()
                    filled[pos] = t
                    sequence = tokenizer.decode(filled.tolist(), skip_special_tokens=len(positions) == 1)
                    row.append({"score": v, "token": t, "token_str": tokenizer.decode([t]), "sequence": sequence})
                per_mask.append(row)
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
    return results[0] if single else results
