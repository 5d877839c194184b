"""PEFT LoRA and DoRA adapters (``adapter_config.json`` + ``adapter_model.safetensors``, as the ``peft``
package saves them): merged into an attnkit model's weights (:func:`load_peft_adapter`), and
attnkit's own adapters written in that format (:func:`save_peft_adapter`).

An adapter names the Hugging Face modules it adapts (``base_model.model.<HF module>.lora_A``
/ ``lora_B``): each update ``(α / r) · B A`` (``α / √r`` with rsLoRA; transposed for GPT-2's
``Conv1D`` layers, ``fan_in_fan_out``) is added to that module's weight in Hugging Face's layout,
and the model's family key map turns the result back into attnkit's (splitting, fusing or
transposing as the family does), so any family attnkit reads takes any adapter ``peft`` writes
for it. Other tensors in the adapter (``modules_to_save``, trained biases) replace the model's.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from attnkit.errors import CheckpointError, InputError
from attnkit.interop import _weights_state, checkpoint_family, keymap, load_state, resolve_checkpoint_dir
from attnkit.interop.files import chmod_like_new, fsync_path, read_json, read_safetensors, write_text_atomic
from attnkit.nn.lora import lora_layers

ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
_PREFIX = "base_model.model."


def _adapter_settings(cfg, where: Path) -> tuple[float, bool, bool, bool]:
    """``(lora_alpha, use_rslora, fan_in_fan_out, use_dora)`` of an adapter config, after refusing
    what is not a LoRA or DoRA adapter."""
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{where}: peft_type {cfg.get('peft_type') if isinstance(cfg, dict) else cfg!r} is "
                              "not supported; attnkit merges LoRA adapters (peft_type 'LORA')")
    if cfg.get("lora_bias"):
        raise CheckpointError(f"{where}: lora_bias adapters are not supported (LoRA and DoRA only)")
    if cfg.get("alpha_pattern"):
        raise CheckpointError(f"{where}: alpha_pattern (a lora_alpha per module) is not supported")
    alpha = cfg.get("lora_alpha", 8)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise CheckpointError(f"{where}: lora_alpha must be a number, got {alpha!r}")
    return (float(alpha), bool(cfg.get("use_rslora", False)), bool(cfg.get("fan_in_fan_out", False)),
            bool(cfg.get("use_dora", False)))


def load_peft_adapter(model, adapter: str | Path, **hub_options):
    """Merge the PEFT LoRA adapter in directory (or hub id) ``adapter`` into ``model``'s weights,
    in place; returns ``model``. ``hub_options`` go to ``huggingface_hub`` (``revision``, ...).

    A DoRA adapter (``use_dora``) sets each adapted weight to ``m · (W + ΔW) / ‖W + ΔW‖`` (norms
    per output feature), as ``peft`` merges it.

    Raises :class:`~attnkit.CheckpointError` for an adapter that is not LoRA or DoRA on linear
    layers (embedding adapters, per-module alphas), or that names a module the model does not
    have or with another shape."""
    directory = resolve_checkpoint_dir(adapter, **hub_options)
    where = directory / ADAPTER_CONFIG_NAME
    alpha, rslora, transposed, dora = _adapter_settings(read_json(where), where)
    if not (directory / ADAPTER_WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{directory} has no {ADAPTER_WEIGHTS_NAME} (adapters are read from safetensors only)")
    tensors = read_safetensors(directory / ADAPTER_WEIGHTS_NAME)
    factors: dict[str, dict[str, torch.Tensor]] = {}
    replaced: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        name = key.removeprefix(_PREFIX).replace(".default.", ".").replace(".base_layer.", ".")
        if "lora_embedding" in name:
            raise CheckpointError(f"{directory / ADAPTER_WEIGHTS_NAME}: {key} (an embedding adapter) is not supported")
        if ".lora_A." in name or ".lora_B." in name or ".lora_magnitude_vector" in name:
            module, part = name.rsplit(".lora_", 1)
            factors.setdefault(module, {})[part.split(".")[0]] = t
        else:
            replaced[name] = t
    fam, _ = checkpoint_family(model)
    rules = fam.key_rules(model)
    hf = keymap.to_hf(rules, {k: v.detach() for k, v in _weights_state(model).items()})
    for module, ab in factors.items():
        target = f"{module}.weight"
        parts = {"A", "B", "magnitude_vector"} if dora else {"A", "B"}
        if set(ab) != parts:
            have, need = (", ".join(f"lora_{p}" for p in sorted(x)) for x in (ab, parts))
            raise CheckpointError(f"{directory / ADAPTER_WEIGHTS_NAME}: {module} has {have}, not {need}")
        if target not in hf:
            raise CheckpointError(f"{directory / ADAPTER_WEIGHTS_NAME}: the adapter changes {target}, which the "
                                  f"model's checkpoint layout ({type(model).__name__}) does not have")
        A, B = ab["A"].float(), ab["B"].float()
        r = A.shape[0]
        w = hf[target].float().T if transposed else hf[target].float()  # (out, in)
        if (B @ A).shape != w.shape or (dora and ab["magnitude_vector"].shape != w.shape[:1]):
            raise CheckpointError(f"{directory / ADAPTER_WEIGHTS_NAME}: {module}'s update is {tuple((B @ A).shape)} "
                                  f"but {target} is {tuple(w.shape)} (out, in)")
        w = w + (B @ A) * (alpha / (math.sqrt(r) if rslora else r))
        if dora:  # rescaled to the magnitude of each output feature
            w = w * (ab["magnitude_vector"].float() / torch.linalg.norm(w, dim=1))[:, None]
        hf[target] = (w.T if transposed else w).to(hf[target].dtype)
    for name, t in replaced.items():
        if name not in hf or hf[name].shape != t.shape:
            raise CheckpointError(f"{directory / ADAPTER_WEIGHTS_NAME}: {name} {tuple(t.shape)} replaces no tensor of "
                                  "that shape in the model")
        hf[name] = t.to(hf[name].dtype)
    state, origin, unmatched = keymap.from_hf(rules, hf)
    load_state(model, state, origin, unmatched)
    return model


def save_peft_adapter(model, directory: str | Path, base_model_name_or_path: str | None = None) -> None:
    """Write ``model``'s LoRA adapters (:func:`attnkit.nn.add_lora`) to ``directory`` in PEFT's
    format, for ``peft.PeftModel.from_pretrained`` on the `transformers` model of the base
    checkpoint (``base_model_name_or_path``: default, where ``model`` was loaded from). Each
    adapter becomes one per Hugging Face module that holds its weight: a fused query/key/value
    projection's adapter three, sharing ``A``, each with its rows of ``B`` (exact: the updates
    are the same). Each file is replaced atomically.

    Raises :class:`~attnkit.InputError` for a model without adapters, and
    :class:`~attnkit.CheckpointError` for what PEFT's format cannot hold: ``trainable`` modules,
    an adapter on a layer that is one part of a fused Hugging Face tensor (Phi-3's
    ``gate_up_proj``) or on an expert of a mixture (stacked in ``transformers``), ``Conv1D`` and
    linear layers together."""
    layers = lora_layers(model)
    if not layers:
        raise InputError("the model has no LoRA adapters (attnkit.nn.add_lora)")
    cfg = model.lora_config
    if cfg["trainable"]:
        raise CheckpointError(f"trainable modules {cfg['trainable']} are not written in PEFT's format; merge_lora and "
                              "save the model instead")
    experts = [name for name in layers if ".experts." in name]
    if experts:
        raise CheckpointError(f"{experts[0]} is a mixture-of-experts weight, which transformers holds stacked (one "
                              "tensor for all experts, PEFT's target_parameters): not written in PEFT's format; "
                              "merge_lora and save the model instead")
    fam, _ = checkpoint_family(model)
    rules = fam.key_rules(model)
    tensors, targets, flipped = {}, [], set()
    for name, layer in layers.items():
        updates, transposed = keymap.lora_to_hf(rules, f"{name}.weight", layer.lora_A.detach(), layer.lora_B.detach())
        flipped.add(transposed)
        magnitudes = [None] * len(updates)
        if cfg.get("dora"):  # one per output feature: split and regrouped as the rows of B
            m = layer.lora_magnitude.detach()[:, None]
            magnitudes = [part[:, 0] for _, _, part in keymap.lora_to_hf(rules, f"{name}.weight", m[:0], m)[0]]
        for (hf_weight, A, B), m in zip(updates, magnitudes):
            module = hf_weight.removesuffix(".weight")
            tensors[f"{_PREFIX}{module}.lora_A.weight"], tensors[f"{_PREFIX}{module}.lora_B.weight"] = A, B
            if m is not None:
                tensors[f"{_PREFIX}{module}.lora_magnitude_vector"] = m
            targets.append(module)
    if len(flipped) > 1:
        raise CheckpointError("the adapters are on Conv1D and linear layers together, which PEFT's one "
                              "fan_in_fan_out setting cannot describe")
    generative = hasattr(model, "generation_step")
    config = dict(peft_type="LORA", r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
                  target_modules=targets, fan_in_fan_out=flipped.pop(), bias="none", use_rslora=False,
                  use_dora=bool(cfg.get("dora")),
                  modules_to_save=None, inference_mode=True,
                  task_type=("SEQ_2_SEQ_LM" if hasattr(model, "decoder_start_ids") else "CAUSAL_LM") if generative
                  else None, base_model_name_or_path=base_model_name_or_path or getattr(model, "name_or_path", None))
    _write_adapter(Path(directory), config, tensors)


def _write_adapter(directory: Path, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """The two adapter files, each written beside its final name and moved in atomically."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".adapter.", dir=directory)
    os.close(fd)
    try:
        save_file({k: v.to("cpu").clone() for k, v in tensors.items()}, tmp, metadata={"format": "pt"})  # A is shared
        chmod_like_new(Path(tmp))
        fsync_path(Path(tmp))
        os.replace(tmp, directory / ADAPTER_WEIGHTS_NAME)
    finally:
        Path(tmp).unlink(missing_ok=True)
    write_text_atomic(directory / ADAPTER_CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    fsync_path(directory)
