"""Sentence embeddings: ``attnkit.embed(model_or_dir, sentences) -> (N, C)``.

Tokenise, run a BERT-style encoder, mean-pool over real tokens and L2-normalise
(Sentence-BERT, Reimers & Gurevych 2019), so that a dot product is the cosine similarity.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from attnkit.errors import InputError
from attnkit.models.base import eval_mode


def _max_length(directory: Path | None, tokenizer, model) -> int:
    """sentence-transformers' ``max_seq_length`` when the directory has one, else the model's limit."""
    limits = [model.config.n_positions]
    if getattr(tokenizer, "model_max_length", None):
        limits.append(tokenizer.model_max_length)
    st_config = directory / "sentence_bert_config.json" if directory is not None else None
    if st_config is not None and st_config.is_file():
        try:
            limits.append(int(json.loads(st_config.read_text())["max_seq_length"]))
        except (ValueError, KeyError, TypeError):
            pass  # malformed optional file: keep the model's own limit
    return min(limits)


@torch.inference_mode()
def embed(model_or_dir, sentences: str | list[str], batch_size: int = 32, normalize: bool = True,
          tokenizer=None, max_length: int | None = None, device: str | torch.device = "cpu",
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Embed sentences with a BERT-style model.

    Args:
        model_or_dir: a checkpoint directory (model + ``tokenizer.json``) or hub id, or a model
            with a ``sentence_embedding`` method (then pass ``tokenizer``).
        sentences: one string or a list of ``N`` strings.
        batch_size: sentences per forward pass.
        normalize: L2-normalise each embedding (cosine similarity = dot product).
        tokenizer: an :class:`attnkit.Tokenizer`; read from the directory by default.
        max_length: tokens per sentence; longer ones are truncated. Defaults to the directory's
            ``sentence_bert_config.json`` ``max_seq_length``, else the model's position limit.
        device, dtype: where and in which dtype a model loaded from a directory runs (a model
            passed in runs where it is).

    Returns a float tensor ``(N, C)`` on the CPU.
    """
    from attnkit.tokenizers import Tokenizer

    directory = None
    if isinstance(model_or_dir, (str, Path)):
        from attnkit.interop import from_pretrained, resolve_checkpoint_dir

        directory = resolve_checkpoint_dir(model_or_dir)
        model = from_pretrained(directory, dtype=dtype, device=device)
        tokenizer = tokenizer or Tokenizer.from_pretrained(directory)
    else:
        model = model_or_dir
        if tokenizer is None:
            raise InputError("embed(model, ...) needs tokenizer=...; or pass a checkpoint directory with tokenizer.json")
    if not hasattr(model, "sentence_embedding"):
        raise InputError(f"{type(model).__name__} does not produce sentence embeddings (needs an encoder such as Bert)")
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise InputError("sentences is empty")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    max_length = max_length or _max_length(directory, tokenizer, model)
    out = []
    with eval_mode(model):  # no dropout, as sentence-transformers' encode(); the caller's mode is restored
        for i in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length)
            ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
            pooled = model.sentence_embedding(ids, mask, normalize=False).float()  # normalised in fp32 below
            out.append((torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled).cpu())
    return torch.cat(out)
