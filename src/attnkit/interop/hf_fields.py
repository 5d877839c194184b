"""Hugging Face config fields that several families read and write the same way: the
activation's name (BERT's and ViT's ``hidden_act``, GPT-2's ``activation_function``) and a
classifier's labels (``id2label``, ``label2id``, ``problem_type``).
"""

from __future__ import annotations

from attnkit.errors import ConfigError

# attnkit activation <-> Hugging Face's name (gelu_new is the tanh approximation)
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu", "quick_gelu": "quick_gelu"}
ACT_FROM_HF = {**{v: k for k, v in ACT_TO_HF.items()}, "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def activation_from_hf(hf: dict, field: str, default: str) -> str:
    """attnkit's name for the activation in ``hf[field]`` (``default`` when absent); one attnkit
    does not implement is a :class:`~attnkit.ConfigError` listing those it does."""
    act = hf.get(field, default)
    if not isinstance(act, str) or act not in ACT_FROM_HF:
        raise ConfigError(f"config.json: {field} {act!r} is not supported; supported: {sorted(ACT_FROM_HF)}")
    return ACT_FROM_HF[act]


def labels_from_hf(hf: dict) -> dict:
    """``num_labels`` and ``label_names`` (None for transformers' default ``LABEL_i`` names) from
    an HF config's ``id2label`` (else ``num_labels``, default 2), and its ``problem_type``."""
    id2label = hf.get("id2label")
    num_labels = len(id2label) if isinstance(id2label, dict) and id2label else hf.get("num_labels", 2)
    label_names = None
    if isinstance(id2label, dict) and id2label:
        names = [id2label.get(str(i)) for i in range(len(id2label))]
        if None in names:
            raise ConfigError(f"config.json: id2label must name the classes 0..{len(names) - 1}, got keys "
                              f"{sorted(id2label)[:10]}")
        if names != [f"LABEL_{i}" for i in range(len(names))]:  # transformers' default names stay implicit
            label_names = names
    return dict(num_labels=num_labels, label_names=label_names, problem_type=hf.get("problem_type"))


def labels_to_hf(id2label: dict[int, str], problem_type: str | None) -> dict:
    """HF's ``id2label`` (string keys, as in config.json), ``label2id`` and ``problem_type``."""
    return dict(id2label={str(i): name for i, name in id2label.items()},
                label2id={name: i for i, name in id2label.items()}, problem_type=problem_type)
