"""Checkpoint averaging (Vaswani et al. 2017 §6.1: "a single model obtained by averaging the
last 5 checkpoints").

Works on model directories as written by ``save_pretrained`` (``config.json`` +
``model.safetensors``), whatever the family: floating-point tensors are averaged element-wise,
other tensors must be equal. The result is a model directory with the config (and tokenizer
files and generation config) of the last checkpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from attnkit.errors import CheckpointError
from attnkit.interop.files import CONFIG_NAME, read_json, read_weights, write_checkpoint
from attnkit.models.generation_config import GENERATION_CONFIG_NAME
from attnkit.nn.lora import LORA_CONFIG_NAME
from attnkit.training.checkpoint import CHECKPOINTS, COMPLETE, METRICS, verify_checkpoint

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# files beside the weights that all checkpoints must share and the average keeps: what each holds
SIDE_FILES = {**{name: "tokenizer" for name in TOKENIZER_FILES}, GENERATION_CONFIG_NAME: "generation config"}


def average_checkpoints(paths: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Average the weights of the model directories ``paths`` into ``out_dir``; return ``out_dir``.

    All checkpoints must have the same ``config.json`` (same architecture and sizes) and the
    same tensor names, shapes and dtypes; otherwise a :class:`CheckpointError` names the culprit.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise CheckpointError("no checkpoints to average: pass one or more model directories")
    out_dir = Path(out_dir)
    if out_dir.resolve() in {p.resolve() for p in paths}:
        raise CheckpointError(f"--out {out_dir} is one of the checkpoints being averaged; choose another directory")
    if (out_dir / COMPLETE).exists() or (out_dir / CHECKPOINTS).exists() or (out_dir / METRICS).exists():
        raise CheckpointError(f"--out {out_dir} holds a training run or one of its checkpoints, which averaging "
                              "would overwrite; choose another directory (nothing was written)")
    for p in paths:
        if not (p / CONFIG_NAME).is_file():
            raise CheckpointError(f"{p} is not a model directory (no {CONFIG_NAME})")
        if (p / LORA_CONFIG_NAME).is_file():  # the mean of the A's times the mean of the B's is not the mean update
            raise CheckpointError(f"{p} holds LoRA adapters ({LORA_CONFIG_NAME}), which averaging would drop: load "
                                  "each checkpoint, merge_lora it, save it, and average those")
        if (p / COMPLETE).is_file():  # a training checkpoint: its files must match their checksums
            verify_checkpoint(p)
    for name, what in SIDE_FILES.items():  # one vocabulary and one way to decode, kept from the last checkpoint
        texts = [(p, (p / name).read_bytes()) for p in paths if (p / name).is_file()]
        odd = next((p for p, text in texts[1:] if text != texts[0][1]), None)
        if odd is not None:
            raise CheckpointError(f"{odd / name} differs from {texts[0][0] / name}; only checkpoints with the same "
                                  f"{what} can be averaged")
    config = read_json(paths[-1] / CONFIG_NAME)
    total: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    for p in paths:
        if read_json(p / CONFIG_NAME) != config:
            raise CheckpointError(f"{p / CONFIG_NAME} differs from {paths[-1] / CONFIG_NAME}; only checkpoints of "
                                  "the same model can be averaged")
        state = read_weights(p)
        if reference and set(state) != set(reference):
            diff = sorted(set(state) ^ set(reference))[:5]
            raise CheckpointError(f"{p} holds different tensors from {paths[0]} (e.g. {diff})")
        for name, t in state.items():
            if name not in reference:
                reference[name] = t
                total[name] = t.double() if t.is_floating_point() else t
                continue
            ref = reference[name]
            if t.shape != ref.shape or t.dtype != ref.dtype:
                raise CheckpointError(f"{p}: tensor {name} is {t.dtype} {tuple(t.shape)}, "
                                      f"but {ref.dtype} {tuple(ref.shape)} in {paths[0]}")
            if t.is_floating_point():
                total[name] += t.double()
            elif not torch.equal(t, ref):
                raise CheckpointError(f"{p}: integer tensor {name} differs from {paths[0]} and cannot be averaged")
    averaged = {name: (t / len(paths)).to(reference[name].dtype) if t.is_floating_point() else t
                for name, t in total.items()}
    generation = paths[-1] / GENERATION_CONFIG_NAME
    write_checkpoint(out_dir, config, averaged,
                     {GENERATION_CONFIG_NAME: read_json(generation) if generation.is_file() else None})
    for name in TOKENIZER_FILES:
        if (paths[-1] / name).is_file():
            shutil.copyfile(paths[-1] / name, out_dir / name)
    return out_dir
