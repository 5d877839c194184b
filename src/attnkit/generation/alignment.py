"""Word-level timestamps for Whisper from its cross-attention (Radford et al. 2022, and the
``openai/whisper`` timing code; Hugging Face's ``return_token_timestamps``).

Some decoder cross-attention heads follow the speech as the text is written: the checkpoint's
``generation_config.json`` lists them (``alignment_heads``, ``[[layer, head], ...]``). Their
weights over the encoder frames, for each generated token, are normalised per frame column,
smoothed along time by a median filter (``median_filter_width``, 7), averaged over the heads, and
aligned to the frames by dynamic time warping: a token's time is the frame where the monotonic
alignment path first reaches it. Words are then tokens grouped at spaces, punctuation joined to
its neighbour, each word timed from its first token to the next word's first token.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attnkit.errors import InputError

PREPENDED = "\"'“¿([{-"  # openai/whisper's punctuation joined to the next word
APPENDED = "\"'.。,，!！?？:：”)]}、"  # ... and to the previous word


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """The running median of ``width`` (odd) values along the last dimension, the edges padded by
    reflection (``scipy.signal.medfilt``'s window; unchanged when the dimension is too short)."""
    if width < 1 or width % 2 != 1:
        raise InputError(f"median filter width must be a positive odd number, got {width}")
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., pad].reshape(shape)


def dynamic_time_warping(cost: torch.Tensor) -> tuple[list[int], list[int]]:
    """The cheapest monotonic path through ``cost`` ``(tokens, frames)`` from the top-left to the
    bottom-right cell, each step one token on, one frame on, or both: ``(token index, frame
    index)`` of every cell on it, in order. Ties go to the frame step, then the token step, as in
    ``openai/whisper``."""
    rows, cols = cost.shape
    c = cost.double().tolist()
    inf = float("inf")
    total = [[inf] * (cols + 1) for _ in range(rows + 1)]
    trace = [[2] * (cols + 1) for _ in range(rows + 1)]  # 0: diagonal, 1: token step, 2: frame step
    total[0][0] = 0.0
    for j in range(1, cols + 1):
        for i in range(1, rows + 1):
            diagonal, up, left = total[i - 1][j - 1], total[i - 1][j], total[i][j - 1]
            if diagonal < up and diagonal < left:
                best, step = diagonal, 0
            elif up < diagonal and up < left:
                best, step = up, 1
            else:
                best, step = left, 2
            total[i][j] = c[i - 1][j - 1] + best
            trace[i][j] = step
    for i in range(rows + 1):
        trace[i][0] = 1
    for j in range(cols + 1):
        trace[0][j] = 2
    i, j, tokens, frames = rows, cols, [], []
    while i > 0 or j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        step = trace[i][j]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return tokens[::-1], frames[::-1]


def alignment_heads(model) -> list[tuple[int, int]]:
    """The checkpoint's ``(decoder layer, head)`` pairs whose cross-attention tracks the speech."""
    heads = model.generation_config.other.get("alignment_heads")
    c = model.config
    if not heads:
        raise InputError("this checkpoint has no alignment_heads in its generation config: word timestamps need the "
                         "cross-attention heads that follow the speech (the released openai/whisper-* configs list them)")
    try:
        pairs = [(int(layer), int(head)) for layer, head in heads]
    except (TypeError, ValueError):
        raise InputError(f"generation config alignment_heads must be [[layer, head], ...], got {heads!r}") from None
    bad = [p for p in pairs if not (0 <= p[0] < c.n_decoder_layers and 0 <= p[1] < c.n_heads)]
    if bad:
        raise InputError(f"alignment_heads {bad} are outside the model's {c.n_decoder_layers} decoder layers × "
                         f"{c.n_heads} heads")
    return pairs


@torch.no_grad()
def token_timestamps(model, features: torch.Tensor, sequences: torch.Tensor, prompt_length: int,
                     frames: Sequence[int] | None = None, time_precision: float = 0.02) -> torch.Tensor:
    """``(B, T)`` seconds from the window's start for each token of ``sequences`` ``(B, T)`` (a
    decoder prompt of ``prompt_length`` tokens, then what ``generate`` added), as Hugging Face's
    ``generate(return_token_timestamps=True)``: the prompt's tokens get 0; each generated token the
    frame where the alignment path reaches the decoder position that reads it; the last token
    repeats the one before (no position reads it). ``frames``: log-mel frames of real audio per
    row; the alignment stops there (default: the whole window)."""
    heads = alignment_heads(model)
    B, T = sequences.shape
    out = model(features, decoder_input_ids=sequences[:, :-1], output_attentions=True)
    weights = torch.stack([out.cross_attentions[layer][:, head] for layer, head in heads], dim=1)  # (B, heads, T-1, S)
    weights = weights[:, :, prompt_length:].float()
    times = torch.zeros(B, T)
    if weights.shape[2] == 0:
        return times
    for b in range(B):
        w = weights[b] if frames is None else weights[b, ..., :frames[b] // 2]
        std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
        w = median_filter((w - mean) / std, model.config.median_filter_width).mean(dim=0)
        rows, cols = dynamic_time_warping(-w)
        jumps = [k for k in range(len(rows)) if k == 0 or rows[k] != rows[k - 1]]
        found = torch.tensor([cols[k] * time_precision for k in jumps])
        times[b, prompt_length:] = torch.cat([found, found[-1:]])
    return times


def words(tokenizer, tokens: Sequence[int], times: Sequence[float], end: float) -> list[dict]:
    """``[{"word", "start", "end", "tokens"}]``: text ``tokens`` (no special or timestamp tokens)
    with their ``times`` grouped into words as ``openai/whisper`` groups them: a word starts at a
    token that begins with a space or is punctuation (``split_tokens_on_spaces``); it lasts from
    its first token's time to the next word's (the last one to ``end``); then opening
    punctuation (:data:`PREPENDED`) joins the word after it and closing punctuation
    (:data:`APPENDED`) the word before (``merge_punctuations``). Words are given without their
    leading space, times rounded to 0.01 s."""
    groups: list[list] = []  # [text, tokens, start]
    for token, time in zip(tokens, times):
        text = tokenizer.decode([token])
        if not groups or text.startswith(" ") or text.strip() in string.punctuation:
            groups.append([text, [token], float(time)])
        else:
            groups[-1][0] += text
            groups[-1][1].append(token)
    found = [[text, ids, start, groups[k + 1][2] if k + 1 < len(groups) else float(end)]
             for k, (text, ids, start) in enumerate(groups)]
    i, j = len(found) - 2, len(found) - 1
    while i >= 0:  # opening punctuation onto the word after it
        before, after = found[i], found[j]
        if before[0].startswith(" ") and before[0].strip() in PREPENDED:
            after[0], after[1], before[0], before[1] = before[0] + after[0], before[1] + after[1], "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(found):  # closing punctuation onto the word before it
        before, after = found[i], found[j]
        if not before[0].endswith(" ") and after[0] in APPENDED:
            before[0], before[1], after[0], after[1] = before[0] + after[0], before[1] + after[1], "", []
        else:
            i = j
        j += 1
    return [dict(word=text.strip(), start=round(start, 2), end=round(stop, 2), tokens=ids)
            for text, ids, start, stop in found if text]
