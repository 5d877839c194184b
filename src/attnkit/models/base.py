"""What every attnkit model shares: its config, parameter counting, and the thin entry points
to saving/loading (``attnkit.interop``) and decoding (``attnkit.generation``).

Those two are imported lazily: model files hold no file I/O and no decoding loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The block runs with ``model`` in eval mode (no dropout); its own mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class Model(nn.Module):
    """Base class of attnkit models. Subclasses set ``config_class``; heads on an encoder also
    ``base_model_prefix`` (the attribute holding it, Hugging Face's name) and ``base_model_class``.
    ``name_or_path`` is the checkpoint directory a model was loaded from (None for a new model),
    where pipelines find its tokenizer or image processor, as in ``transformers``."""

    config_class: type[Config] = Config
    base_model_prefix: str | None = None
    base_model_class: type | None = None
    name_or_path: str | None = None

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
        """Load a model saved by :meth:`save_pretrained` or by Hugging Face ``transformers``.

        Keyword arguments that are config fields (``num_labels=3``, ``label_names=(...)``,
        ``dropout=0.2``) change the checkpoint's config. A head class (``base_model_prefix``
        set: ``BertForSequenceClassification``, ``EsmForTokenClassification``,
        ``ViTForImageClassification``, ...) also loads a checkpoint of its encoder alone or of
        another head on it, as ``transformers``' ``AutoModelFor...`` do for fine-tuning: the
        encoder's weights load, the new head is initialised, and a warning names what was
        initialised and what the checkpoint held that is not used. Other keyword arguments go to
        :func:`attnkit.from_pretrained` (``dtype``, ``device``, ...).
        """
        from attnkit.interop import QUANTIZERS, from_pretrained

        fields = set(cls.config_class.field_names())
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        if overrides and kwargs.get("quantize") in QUANTIZERS:  # once the new config's model holds the weights
            quantize = QUANTIZERS[kwargs.pop("quantize")]
            return quantize(cls.from_pretrained(path, **overrides, **kwargs))
        model = from_pretrained(path, **kwargs)
        if isinstance(model, cls) and not overrides:
            return model
        prefix = cls.base_model_prefix
        if prefix is not None and isinstance(model, cls.base_model_class):
            encoder = model  # the encoder alone (a BertModel checkpoint)
        elif prefix is not None and getattr(type(model), "base_model_prefix", None) == prefix:
            encoder = getattr(model, prefix)  # another head on the same encoder
        elif isinstance(model, cls):
            encoder = None  # no encoder/head split: rebuilt whole with the new config
        else:
            from attnkit.errors import CheckpointError

            what = f"a {cls.__name__}" + (f" or a {cls.base_model_class.__name__}" if prefix is not None else "")
            raise CheckpointError(f"{path} holds a {type(model).__name__}, not {what}")
        return _with_new_config(cls, model, encoder, model.config.replace(**overrides), path)

    def with_config(self, **changes) -> Model:
        """A model of ``config.replace(**changes)`` holding this model's weights (and generation
        config and ``name_or_path``), in this model's mode, device and dtype: for settings that
        keep every tensor's shape (``dropout``, ``label_smoothing``, ...). A change of shape
        (layers, widths, vocabulary) is a :class:`ConfigError` naming the tensors it would change."""
        config = self.config.replace(**changes)
        with torch.device("meta"), NoParameterInit():
            probe = type(self)(config).state_dict()
        own = self.state_dict()
        changed = sorted(k for k in probe.keys() | own.keys() if k not in probe or k not in own
                         or probe[k].shape != own[k].shape)
        if changed:
            raise ConfigError(f"{type(self).__name__} config changes {sorted(changes)} would change the model's tensors "
                              f"({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''}); only settings that keep "
                              "every tensor's shape can change on a trained model")
        with NoParameterInit():
            new = type(self)(config)
        new = new.to(device=self.device, dtype=self.dtype)
        new.load_state_dict(own)
        if hasattr(self, "generation_config"):
            new.generation_config = self.generation_config
        new.name_or_path = self.name_or_path
        return new.train(self.training)

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


class NoParameterInit(TorchFunctionMode):
    """Within the block, models are built without initialising their parameters, for code that
    overwrites every parameter next (loading a checkpoint): ``torch.nn.init``'s functions and the
    value writes they are made of (``normal_``, ``uniform_``, ``fill_``, ...) do nothing to an
    ``nn.Parameter``. Random initialisation took 96% of a 1.1B-parameter model's load time (5.7 s
    of 5.9 in a one-off profile), and on the meta device it imports ``torch._dynamo`` (0.9 s). Buffers are computed as
    usual, and so is everything else (``requires_grad_`` included). Torch function modes are per
    thread: a model built in another thread meanwhile is initialised."""

    VALUE_WRITES = frozenset({"uniform_", "normal_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_", "copy_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by keyword
        init = getattr(func, "__module__", None) == "torch.nn.init" or getattr(func, "__name__", "") in self.VALUE_WRITES
        if init and type(target) is torch.nn.Parameter:
            return target
        return func(*args, **kwargs)


def _with_new_config(cls, source: Model, encoder: Model | None, config: Config, path) -> Model:
    """A ``cls(config)`` holding ``source``'s weights where they fit: ``encoder``'s in the new
    model's encoder (``cls.base_model_prefix``), or, with no encoder, every tensor of the same
    name and shape. A warning names the tensors initialised afresh and those not used."""
    import warnings

    new = cls(config).to(device=source.device, dtype=source.dtype)
    prefix = "" if encoder is None else cls.base_model_prefix + "."
    target = new if encoder is None else getattr(new, cls.base_model_prefix)
    state = (source if encoder is None else encoder).state_dict()
    own = target.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(fits, strict=False)
    if hasattr(source, "generation_config") and hasattr(new, "generation_config"):
        new.generation_config = source.generation_config  # the checkpoint's decoding defaults
    new.name_or_path = source.name_or_path
    source_prefix = "" if encoder is None or encoder is source else cls.base_model_prefix + "."
    used = {source_prefix + k for k in fits}
    fresh = [k for k in new.state_dict() if not k.startswith(prefix) or k[len(prefix):] not in fits]
    unused = [k for k in source.state_dict() if k not in used]
    if fresh or unused:
        warnings.warn(f"{cls.__name__} from {path}: initialised afresh (train them before use): {fresh or 'nothing'}; "
                      f"in the checkpoint but not used: {unused or 'nothing'}", stacklevel=3)
    return new.eval()
