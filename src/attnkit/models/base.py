"""What every attnkit model shares: its config, parameter counting, and the thin entry points
to saving/loading (``attnkit.interop``) and decoding (``attnkit.generation``).

Those two are imported lazily: model files hold no file I/O and no decoding loop.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attnkit.errors import ConfigError, InputError
from attnkit.models.config import Config
from attnkit.models.generation_config import GenerationConfig


def check_token_ids(ids: torch.Tensor, name: str, vocab_size: int, vocab_field: str = "vocab_size") -> None:
    """Raise :class:`~attnkit.InputError` unless ``ids`` is a non-empty ``(batch, seq_len)``
    int64/int32 tensor of ids in ``[0, vocab_size)``."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise InputError(f"{name} must be an integer tensor (batch, seq_len), got {getattr(ids, 'dtype', type(ids))} "
                         f"{tuple(getattr(ids, 'shape', ()))}")
    if ids.shape[1] == 0:
        raise InputError(f"{name} is empty: every sequence needs at least one token")
    lo, hi = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one device sync
    if lo < 0 or hi >= vocab_size:
        raise InputError(f"{name} must lie in [0, {vocab_size}) ({vocab_field}), got values in [{lo}, {hi}]")


class Model(nn.Module):
    """Base class of attnkit models. Subclasses set ``config_class``."""

    config_class: type[Config] = Config

    def __init__(self, config: Config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        if hasattr(self, "generation_step"):  # a generative model: its decoding defaults (Hugging Face's name)
            self.generation_config = GenerationConfig()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        seen, total = set(), 0
        for module in self.modules():
            if exclude_embeddings and isinstance(module, nn.Embedding):
                seen.update(id(p) for p in module.parameters(recurse=False))
                continue
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        return total

    def count_targets(self, batch: dict) -> int:
        """How many targets ``self(**batch).loss`` averages over (the Trainer weights batches of
        different sizes by it): the integer ``labels`` that are not -100, every element of float
        labels (regression and multi-label losses have no ignore index), else the rows."""
        labels = batch.get("labels")
        if torch.is_tensor(labels):
            return labels.numel() if labels.dtype.is_floating_point else int((labels != -100).sum())
        first = next((v for v in batch.values() if torch.is_tensor(v)), None)
        if first is None:
            raise InputError(f"a batch must hold tensors (input_ids, labels, ...), got keys {sorted(batch)}")
        return first.shape[0]

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (Hugging Face layout) to ``path``."""
        from attnkit.interop import save_pretrained

        save_pretrained(self, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs):
        """Load a model saved by :meth:`save_pretrained` or by Hugging Face ``transformers``."""
        from attnkit.interop import from_pretrained

        model = from_pretrained(path, **kwargs)
        if not isinstance(model, cls):
            from attnkit.errors import CheckpointError

            raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def generate(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        """Decode with greedy search, sampling or beam search; see :func:`attnkit.generation.generate`."""
        from attnkit.generation import generate

        return generate(self, input_ids, **kwargs)

    def compute_transition_scores(self, sequences: torch.Tensor, scores, beam_indices: torch.Tensor | None = None,
                                  normalize_logits: bool = False) -> torch.Tensor:
        """Each generated token's score; see :func:`attnkit.generation.compute_transition_scores`."""
        from attnkit.generation import compute_transition_scores

        return compute_transition_scores(sequences, scores, beam_indices, normalize_logits)

    def stream(self, input_ids: torch.Tensor, **kwargs):
        """Iterate over generated tokens, one ``(B,)`` tensor per step; see :func:`attnkit.generation.stream`."""
        from attnkit.generation import stream

        return stream(self, input_ids, **kwargs)
