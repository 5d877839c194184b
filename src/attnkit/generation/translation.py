"""Translate sentences with an encoder-decoder model the way Vaswani et al. 2017 §6.1 decode:
beam search with beam size 4, GNMT length penalty α = 0.6, and a maximum output length of
input length + 50, in batches of length-sorted sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnkit.errors import InputError


def translate(model, tokenizer, texts: Sequence[str], num_beams: int = 4, length_penalty: float = 0.6,
              length_penalty_style: str = "gnmt", extra_tokens: int = 50, batch_size: int = 64) -> list[str]:
    """Translate ``texts`` (detokenised strings) and return detokenised translations, in order.

    Each source ends with the tokenizer's EOS token (as in training). Sentences are sorted by
    length and decoded ``batch_size`` at a time; the search runs up to the batch's longest
    source plus ``extra_tokens`` steps (capped by the model's ``n_positions``, where it has
    one: T5's relative positions have no limit), and each translation is cut to its own source
    length plus ``extra_tokens`` tokens.
    An empty text or one longer than the model's ``n_positions`` is an :class:`InputError`.
    """
    if not hasattr(model, "decoder_start_ids"):
        raise InputError(f"translating needs an encoder-decoder model (attnkit.Transformer or T5), got a "
                         f"{type(model).__name__}")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None or pad is None:
        raise InputError("the tokenizer needs EOS and pad tokens to translate")
    ids = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    n_positions = getattr(model.config, "n_positions", None)
    for i, (text, row) in enumerate(zip(texts, ids)):
        if not text.strip():
            raise InputError(f"source sentence {i} is empty; remove it or give it some text")
        if n_positions is not None and len(row) + 1 > n_positions:
            raise InputError(f"source sentence {i} is {len(row) + 1} tokens (with EOS), more than the model's "
                             f"{n_positions} positions (n_positions); split it into shorter sentences")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    device = model.device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows = [ids[i] + [eos] for i in chunk]
        S = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), S), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), S, dtype=torch.long)
        for j, r in enumerate(rows):
            input_ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        max_new = S + extra_tokens if n_positions is None else min(S + extra_tokens, n_positions)
        generated = model.generate(input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new,
                                   num_beams=num_beams, length_penalty=length_penalty, do_sample=False,
                                   num_return_sequences=1, length_penalty_style=length_penalty_style, eos_token_id=eos,
                                   pad_token_id=pad).tolist()
        for j, i in enumerate(chunk):
            tokens = generated[j][1:1 + len(rows[j]) + extra_tokens]  # this sentence's own limit
            if eos in tokens:
                tokens = tokens[: tokens.index(eos)]
            out[i] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return out
