"""Hugging Face checkpoints in and out: ``from_pretrained(dir_or_hub_id)`` and ``save_pretrained(model, dir)``.

On disk a checkpoint is Hugging Face's layout: ``config.json`` + ``model.safetensors`` (or
shards listed in ``model.safetensors.index.json``), with ``tokenizer.json`` beside them when
there is a tokenizer. For a model Hugging Face can represent, ``save_pretrained`` writes HF's
config fields and key names, so ``transformers`` loads it with no missing or unexpected keys,
plus an ``"attnkit"`` block in config.json::

    "attnkit": {"architecture": "GPT", "config": {...GPTConfig.to_dict()...}, "weights": "hf"}

On load the ``attnkit`` block wins (exact round trip of attnkit-only fields); without it the
HF config is converted by the family's mapping module. A variant Hugging Face cannot
represent (rotary or ALiBi GPT, RMSNorm, grouped-query attention, gated feed-forward) is
saved with ``"model_type": "attnkit"``, attnkit's own key names and ``"weights": "attnkit"``:
attnkit loads it, ``transformers`` cannot.

Adding a family
---------------
Write ``attnkit/interop/<family>.py`` defining::

    MODEL_TYPE = "bert"                      # HF model_type in config.json
    MODELS = {"Bert": Bert, ...}             # attnkit class name -> class
    ARCHITECTURES = {"BertModel": "Bert"}    # HF architectures -> attnkit class name (first wins on save)
    BASE_PREFIX = "bert."                    # prefix of base-model keys in HF head models ("" if none)
    IGNORED_HF_KEYS = (r"position_ids$",)    # regexes of HF keys to drop on load
    def key_rules(model) -> list[Rename]     # attnkit key <-> HF key table (see keymap.py)
    def config_to_hf(model) -> dict | None   # HF config fields; None = HF can't represent it
    def config_from_hf(hf: dict, model_class) -> Config
    def model_options(model_class, keys) -> dict  # optional: constructor options the checkpoint's keys decide
    def config_from_state(config, state) -> Config  # optional: config fields an HF checkpoint's tensors decide
    EXTRA_LAYERS = "model.layers."          # optional: this prefix's layers past n_layers are dropped on load
                                            # (DeepSeek-V3's and GLM-4.5's multi-token-prediction layers)

and register it with one line in ``FAMILIES`` below (or ``register("whisper", "attnkit.interop.whisper")``).
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path
from types import ModuleType

import torch

from attnkit.allocator import available_memory
from attnkit.errors import AttnkitError, CheckpointError, ConfigError, InputError
from attnkit.interop import keymap
from attnkit.interop.files import CONFIG_NAME, read_json, read_safetensors, read_weights, write_checkpoint
from attnkit.models.base import NoParameterInit
from attnkit.models.generation_config import GENERATION_CONFIG_NAME, GenerationConfig, generation_config
from attnkit.nn.lora import LORA_CONFIG_NAME, LORA_WEIGHTS_NAME, add_lora, lora_state, merge_lora
from attnkit.nn.quantize import Int8Embedding, QuantizedLinear, quantize_int4, quantize_int8

QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}  # from_pretrained(quantize=)

# HF model_type -> mapping module. One line per family.
FAMILIES: dict[str, str] = {
    "gpt2": "attnkit.interop.gpt2",
    "llama": "attnkit.interop.llama",
    "mistral": "attnkit.interop.mistral",
    "qwen2": "attnkit.interop.qwen2",
    "qwen3": "attnkit.interop.qwen3",
    "phi3": "attnkit.interop.phi3",
    "gemma": "attnkit.interop.gemma",
    "gemma2": "attnkit.interop.gemma2",
    "gemma3_text": "attnkit.interop.gemma3",  # before gemma3: attnkit saves Gemma3ForCausalLM
    "gemma3": "attnkit.interop.gemma3_multimodal",
    "gpt_neo": "attnkit.interop.gpt_neo",
    "gpt_bigcode": "attnkit.interop.gpt_bigcode",
    "modernbert": "attnkit.interop.modernbert",
    "opt": "attnkit.interop.opt",
    "bloom": "attnkit.interop.bloom",
    "falcon": "attnkit.interop.falcon",
    "gpt_oss": "attnkit.interop.gpt_oss",
    "cohere2": "attnkit.interop.cohere2",
    "exaone4": "attnkit.interop.exaone4",
    "helium": "attnkit.interop.helium",
    "arcee": "attnkit.interop.arcee",
    "nemotron": "attnkit.interop.nemotron",
    "ministral": "attnkit.interop.ministral",
    "glm4_moe": "attnkit.interop.glm4_moe",
    "dots1": "attnkit.interop.dots1",
    "ernie4_5_moe": "attnkit.interop.ernie4_5_moe",
    "olmo": "attnkit.interop.olmo",
    "mpt": "attnkit.interop.mpt",
    "hunyuan_v1_dense": "attnkit.interop.hunyuan_v1_dense",
    "mistral3": "attnkit.interop.mistral3",
    "qwen2_vl": "attnkit.interop.qwen2_vl",
    "qwen2_5_vl": "attnkit.interop.qwen2_vl",
    "granitemoe": "attnkit.interop.granitemoe",
    "stablelm": "attnkit.interop.stablelm",
    "gpt_neox": "attnkit.interop.gpt_neox",
    "olmo2": "attnkit.interop.olmo2",
    "olmoe": "attnkit.interop.olmoe",
    "olmo3": "attnkit.interop.olmo3",
    "smollm3": "attnkit.interop.smollm3",
    "glm": "attnkit.interop.glm",
    "glm4": "attnkit.interop.glm4",
    "ernie4_5": "attnkit.interop.ernie4_5",
    "seed_oss": "attnkit.interop.seed_oss",
    "deepseek_v3": "attnkit.interop.deepseek_v3",
    "deepseek_v2": "attnkit.interop.deepseek_v2",
    "llama4_text": "attnkit.interop.llama4_text",  # before llama4: attnkit saves Llama4ForCausalLM
    "llama4": "attnkit.interop.llama4",
    "starcoder2": "attnkit.interop.starcoder2",
    "granite": "attnkit.interop.granite",
    "phi": "attnkit.interop.phi",
    "cohere": "attnkit.interop.cohere",
    "gptj": "attnkit.interop.gptj",
    "mixtral": "attnkit.interop.mixtral",
    "qwen3_moe": "attnkit.interop.qwen3_moe",
    "qwen2_moe": "attnkit.interop.qwen2_moe",
    "bert": "attnkit.interop.bert",
    "roberta": "attnkit.interop.roberta",
    "xlm-roberta": "attnkit.interop.roberta",
    "distilbert": "attnkit.interop.distilbert",
    "marian": "attnkit.interop.marian",
    "t5": "attnkit.interop.t5",
    "vit": "attnkit.interop.vit",
    "clip": "attnkit.interop.clip",
    "siglip": "attnkit.interop.siglip",
    "whisper": "attnkit.interop.whisper",
    "esm": "attnkit.interop.esm",
}


def register(model_type: str, module: str) -> None:
    """Register a mapping module (dotted path) for a Hugging Face ``model_type``."""
    FAMILIES[model_type] = module


def _family(model_type: str) -> ModuleType:
    return importlib.import_module(FAMILIES[model_type])


def _unwrap(model):
    """The model inside a ``torch.compile`` or DDP wrapper."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def checkpoint_family(model) -> tuple[ModuleType, str]:
    """``(mapping module, architecture name)`` that saves ``model``: its own class's, or for a
    subclass of an attnkit model the nearest registered base class's (it loads as that class)."""
    model = _unwrap(model)
    for klass in type(model).__mro__:
        for model_type in FAMILIES:
            fam = _family(model_type)
            if fam.MODELS.get(klass.__name__) is klass:
                return fam, klass.__name__
    raise CheckpointError(f"no checkpoint mapping is registered for {type(model).__name__}: save_pretrained and "
                          f"the Trainer's checkpoints need an attnkit model ({', '.join(FAMILIES)} families) or a subclass")


def check_saveable(model) -> None:
    """Raise :class:`CheckpointError` unless :func:`save_pretrained` can write ``model`` (a
    Trainer checks before its first step, not at its first checkpoint)."""
    model = _unwrap(model)
    fam, _ = checkpoint_family(model)
    if fam.config_to_hf(model) is not None:  # Hugging Face's names: every tensor needs one
        rules = fam.key_rules(model)
        for name in _weights_state(model):
            keymap.hf_names_of(rules, name)


def _class_named(name: str) -> tuple[ModuleType, type]:
    for model_type in FAMILIES:
        fam = _family(model_type)
        if name in fam.MODELS:
            return fam, fam.MODELS[name]
    known = sorted(n for mt in FAMILIES for n in _family(mt).MODELS)
    raise CheckpointError(f"config.json names attnkit architecture {name!r}; known: {known}")


def _canonical_state(model) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(state without tied duplicates, alias name -> canonical name)``."""
    state, aliases, first = {}, {}, {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in first:
            aliases[name] = first[id(t)]
        else:
            first[id(t)] = name
            state[name] = t
    return state, aliases


def _weights_state(model) -> dict[str, torch.Tensor]:
    """What ``model.safetensors`` holds: the state without tied duplicates and without LoRA
    adapters (they go beside it)."""
    adapters = lora_state(model)[1]
    return {k: v for k, v in _canonical_state(model)[0].items() if k not in adapters}


# -- saving ------------------------------------------------------------------------------------
def save_pretrained(model, path: str | Path) -> None:
    """Write ``model`` to directory ``path`` as ``config.json`` + ``model.safetensors`` (atomically).

    Hugging Face names and config fields are used when the model has an HF equivalent;
    ``model.generation_config`` goes to ``generation_config.json`` when anything is set in it;
    LoRA adapters (:mod:`attnkit.nn.lora`) to ``lora_config.json`` + ``lora.safetensors``, the
    base weights staying as they are; other files in ``path`` (tokenizer.json, ...) are left in place.
    """
    model = _unwrap(model)
    if any(isinstance(m, (QuantizedLinear, Int8Embedding)) for m in model.modules()):
        raise InputError("a model with int8 or int4 weights (attnkit.nn.quantize_int8/int4) cannot be saved: save "
                         "it before quantizing, and quantize after loading")
    fam, arch = checkpoint_family(model)
    lora_config, lora_tensors = lora_state(model)
    state = {k: v.detach() for k, v in _weights_state(model).items()}
    hf_config = fam.config_to_hf(model)
    block = {"architecture": arch, "config": model.config.to_dict(), "weights": "hf" if hf_config else "attnkit"}
    if hf_config is not None:
        hf_arch = next(h for h, a in fam.ARCHITECTURES.items() if a == arch)
        config = {**hf_config, "architectures": [hf_arch], "dtype": str(model.dtype).removeprefix("torch."),
                  "attnkit": block}
        tensors = keymap.to_hf(fam.key_rules(model), state)
    else:
        config = {"model_type": "attnkit", "architectures": [arch], "attnkit": block}
        tensors = state
    # No generation config: one left by another model must not change how this one decodes.
    write_checkpoint(path, config, tensors,
                     {GENERATION_CONFIG_NAME: _generation_file(model) or None, LORA_CONFIG_NAME: lora_config},
                     {LORA_WEIGHTS_NAME: lora_tensors or None})


_SPECIAL_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_eos_token_id")


def _generation_file(model) -> dict:
    """What ``generation_config.json`` holds for ``model`` (empty: no file): its generation
    config, with the model config's special tokens where it sets none, since ``transformers``
    reads them from that file alone when there is one."""
    d = generation_config(model).to_hf()
    if d:
        for name in _SPECIAL_TOKENS:
            value = getattr(model.config, name, None)
            if value is not None:
                d.setdefault(name, value)
    return d


# -- loading -----------------------------------------------------------------------------------
def resolve_checkpoint_dir(path_or_hub_id: str | Path, allow_pickle: bool = False, **hub_options) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id downloaded with ``huggingface_hub``
    (configs, tokenizer files and safetensors weights; ``pytorch_model.bin`` too with
    ``allow_pickle``). ``hub_options`` go to ``snapshot_download`` (``revision``, ``cache_dir``,
    ``token``, ``local_files_only``)."""
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    name = str(path_or_hub_id)
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint directory that holds {CONFIG_NAME}")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) or name.startswith((".", "/")):
        raise CheckpointError(f"checkpoint directory {name} does not exist")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{name} is not a local directory, and loading hub ids needs `pip install huggingface_hub`") from None
    try:
        patterns = ["*.json", "*.safetensors", "*.txt", "*.model"] + (["*.bin"] if allow_pickle else [])
        return Path(snapshot_download(name, allow_patterns=patterns, **hub_options))
    except Exception as e:
        raise CheckpointError(f"{name} is not a local directory and could not be downloaded from the hub: {e}") from None


def _config_from_hf(fam: ModuleType, config: dict, cls: type, state: dict[str, torch.Tensor]):
    """The family's config for a Hugging Face config.json, with the fields the checkpoint's
    tensors decide (the family's optional ``config_from_state``: T5's untied LM head)."""
    converted = fam.config_from_hf(config, cls)
    return fam.config_from_state(converted, state) if hasattr(fam, "config_from_state") else converted


def _parse_config(config: dict, directory: Path, state: dict[str, torch.Tensor]):
    """``(family module, model class, model config, weights layout)`` from a parsed config.json
    and the checkpoint's tensors (by their stored names)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{directory / CONFIG_NAME} must hold a JSON object, got {type(config).__name__}")
    block = config.get("attnkit")
    if block is not None:
        if not (isinstance(block, dict) and isinstance(block.get("architecture"), str)
                and isinstance(block.get("config"), dict) and block.get("weights") in ("hf", "attnkit")):
            raise ConfigError(
                f"{directory / CONFIG_NAME}: the 'attnkit' block must hold architecture (str), config (object) and "
                "weights ('hf' or 'attnkit')")
        fam, cls = _class_named(block["architecture"])
        return fam, cls, cls.config_class.from_dict(block["config"]), block["weights"]
    model_type = config.get("model_type")
    quantization = config.get("quantization_config")
    if quantization is not None:  # GPTQ, AWQ, bitsandbytes, MXFP4 (gpt-oss): packed weights
        method = quantization.get("quant_method") if isinstance(quantization, dict) else quantization
        raise CheckpointError(f"{directory / CONFIG_NAME}: quantized weights (quantization_config: {method!r}) are not "
                              "supported; attnkit reads float weights (fp32, bf16, fp16) and dequantizes FP8 ones "
                              "(quant_method 'fp8'): use an unquantized checkpoint of the model, or dequantize it with "
                              "transformers and save_pretrained")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: model_type {model_type!r} is not supported; supported: {sorted(FAMILIES)}")
    fam = _family(model_type)
    archs = config.get("architectures") or []
    if not isinstance(archs, list):
        raise ConfigError(f"{directory / CONFIG_NAME}: architectures must be a list, got {archs!r}")
    # A decoder's base model (Qwen3Model: an embedding checkpoint) loads as its causal LM, whose
    # head is tied to the embeddings or reported missing by the key check.
    known = [a if a in fam.ARCHITECTURES else f"{a[:-5]}ForCausalLM" for a in archs if isinstance(a, str)
             and (a in fam.ARCHITECTURES or a.endswith("Model") and f"{a[:-5]}ForCausalLM" in fam.ARCHITECTURES)]
    if archs and not known:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: architectures {archs} are not supported for {model_type}; "
            f"supported: {sorted(fam.ARCHITECTURES)}")
    cls = fam.MODELS[fam.ARCHITECTURES[known[0] if known else next(iter(fam.ARCHITECTURES))]]
    return fam, cls, _config_from_hf(fam, config, cls, state), "hf"


FP8_SCALE = ".weight_scale_inv"


def _dequantized(config: dict, state: dict[str, torch.Tensor], directory: Path,
                 dtype: torch.dtype | None) -> tuple[dict, dict]:
    """``(config, state)`` of an FP8 checkpoint (``quantization_config.quant_method == "fp8"``:
    DeepSeek-V3, Qwen3-FP8 and the like) as float weights: each float8 ``W`` times its
    ``weight_scale_inv``, one scale per ``weight_block_size`` block (or one for the tensor),
    computed in fp32 as DeepSeek's ``weight_dequant`` and stored in ``dtype`` (the dtype the model
    is loaded in; fp32 by default); the activation scales dropped. Anything else as it is."""
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    if not (isinstance(quantization, dict) and quantization.get("quant_method") == "fp8"):
        return config, state
    where = directory / CONFIG_NAME
    block = quantization.get("weight_block_size")
    if block is not None and not (isinstance(block, list) and len(block) == 2
                                  and all(type(b) is int and b > 0 for b in block)):
        raise CheckpointError(f"{where}: quantization_config.weight_block_size must be two positive integers, got "
                              f"{block!r}")
    out = {}
    for name, tensor in state.items():
        if name.endswith(FP8_SCALE) or name.endswith(".input_scale") or name.endswith(".activation_scale"):
            continue
        scale = state.get(name.removesuffix(".weight") + FP8_SCALE) if name.endswith(".weight") else None
        if tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            if scale is None:
                raise CheckpointError(f"{directory}: {name} is float8 but the checkpoint has no {name[:-7]}{FP8_SCALE}")
            out[name] = _fp8_weight(tensor, scale, block, name, directory).to(dtype or torch.float32)
        else:
            out[name] = tensor
    return {k: v for k, v in config.items() if k != "quantization_config"}, out


def _fp8_weight(w: torch.Tensor, scale: torch.Tensor, block: list[int] | None, name: str, directory: Path):
    """One float8 weight ``(out, in)`` times its scales, in fp32."""
    if w.dim() != 2 or not scale.dtype.is_floating_point:
        raise CheckpointError(f"{directory}: {name} must be a float8 matrix with floating scales, got shapes "
                              f"{tuple(w.shape)} and {tuple(scale.shape)} ({scale.dtype})")
    if scale.numel() == 1:
        return w.float() * scale.float().reshape(())
    rows, cols = block or [-(-w.shape[0] // scale.shape[0]), -(-w.shape[1] // scale.shape[-1])]
    expected = (-(-w.shape[0] // rows), -(-w.shape[1] // cols))
    if tuple(scale.shape) != expected:
        raise CheckpointError(f"{directory}: {name[:-7]}{FP8_SCALE} has shape {tuple(scale.shape)}; a {tuple(w.shape)} "
                              f"weight in {rows}x{cols} blocks needs {expected}")
    full = scale.float().repeat_interleave(rows, 0)[:w.shape[0]].repeat_interleave(cols, 1)[:, :w.shape[1]]
    return w.float() * full


def _check_layer_counts(config, n_tensors: int, directory: Path) -> None:
    """Refuse a config whose layer count could not fit the checkpoint before building anything
    (a config.json saying ``n_layers: 10**9`` must not hang model construction)."""
    for name, value in config.to_dict().items():
        if re.fullmatch(r"n_\w*layers", name) and isinstance(value, int) and value > n_tensors:
            raise CheckpointError(
                f"{directory / CONFIG_NAME}: {name}={value} but the checkpoint holds only {n_tensors} tensors")


def _stale_block_fields(fam, skeleton, config_json: dict) -> list[str]:
    """The Hugging Face fields of ``config_json`` that disagree with what its attnkit block
    implies (``config_to_hf`` of the block's model): the HF fields were edited after saving."""
    implied = fam.config_to_hf(skeleton) or {}
    return [k for k, v in implied.items() if k in config_json and config_json[k] != v]


def _check_computed_buffers(skeleton, directory: Path) -> None:
    """Refuse a config whose computed buffers (not in the checkpoint, e.g. a sinusoidal position
    table of ``n_positions`` rows) would take more than half the free memory to build."""
    free, stored = available_memory(), set(skeleton.state_dict())
    for name, buf in skeleton.named_buffers():
        nbytes = buf.numel() * buf.element_size()
        if free is not None and name not in stored and nbytes > free // 2:
            raise ConfigError(f"{directory / CONFIG_NAME}: the model's {name} would be {tuple(buf.shape)} "
                              f"({nbytes / 2**30:.1f} GiB, more than half the free memory); is a size in config.json wrong?")


def _add_or_strip_prefix(rules, state: dict, prefix: str) -> dict:
    """HF base models save keys without the head model's prefix (``wte.weight`` vs
    ``transformer.wte.weight``); make the checkpoint's keys agree with the rule table."""
    if not prefix:
        return state
    wants_prefix = any(h.startswith(prefix) for r in rules for h in r.hf_names)
    has_prefix = any(k.startswith(prefix) for k in state)
    if wants_prefix and not has_prefix:
        return {prefix + k: v for k, v in state.items()}
    if has_prefix and not wants_prefix:
        return {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _drop_extra_layers(state: dict, prefix: str, n_layers: int) -> dict:
    """``state`` without the layers under ``prefix`` numbered ``n_layers`` or more (a
    multi-token-prediction layer after the model's own, which generation does not use)."""
    extra = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {k: v for k, v in state.items() if not ((m := extra.match(k)) and int(m.group(1)) >= n_layers)}


def check_state(model, state: dict[str, torch.Tensor], origin: dict[str, str] | None = None,
                unexpected: list[str] | None = None) -> None:
    """Raise CheckpointError unless ``state`` fits ``model`` exactly (``model`` may live on "meta").

    Every key must be present and none extra; shapes equal; floating tensors may differ in
    dtype (they are cast), any other dtype difference is an error. Tied aliases
    (``lm_head.weight`` = ``wte.weight``) may be present if equal to their canonical tensor.
    ``origin`` maps attnkit names to checkpoint names for the messages.
    """
    origin = origin or {}
    where = lambda name: f"{origin[name]} (attnkit {name})" if origin.get(name, name) != name else name  # noqa: E731
    expected, aliases = _canonical_state(model)
    unexpected = list(unexpected or []) + [origin.get(k, k) for k in state if k not in expected and k not in aliases]
    missing = [k for k in expected if k not in state]
    if missing or unexpected:
        raise CheckpointError(
            "checkpoint does not match the model: "
            + (f"missing keys {[where(k) for k in missing][:10]}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected keys {unexpected[:10]}" if unexpected else "")
            + f" ({len(missing)} missing, {len(unexpected)} unexpected)")
    for name, target in expected.items():
        t = state[name]
        if t.shape != target.shape:
            raise CheckpointError(
                f"shape mismatch for {where(name)}: checkpoint has {tuple(t.shape)}, model needs {tuple(target.shape)}")
        if t.dtype != target.dtype and not (t.is_floating_point() and target.is_floating_point()):
            raise CheckpointError(f"dtype mismatch for {where(name)}: checkpoint has {t.dtype}, model needs {target.dtype}")
    for alias, canonical in aliases.items():
        if alias in state and not (state[alias].shape == state[canonical].shape
                                   and torch.equal(state[alias].to(state[canonical].dtype), state[canonical])):
            untie = ("set tie_word_embeddings=false in the config" if "tie_word_embeddings" in model.config.field_names()
                     else f"attnkit's {type(model).__name__} has no untied variant")
            raise CheckpointError(
                f"checkpoint has an untied {where(alias)} that differs from {where(canonical)}; "
                f"attnkit's model ties them ({untie})")


def load_state(model, state: dict[str, torch.Tensor], origin: dict[str, str] | None = None,
               unexpected: list[str] | None = None) -> None:
    """:func:`check_state`, then copy ``state`` into ``model``'s parameters and buffers."""
    check_state(model, state, origin, unexpected)
    expected, _ = _canonical_state(model)
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(state[name])


def _load_quantized(model, state: dict[str, torch.Tensor], origin: dict[str, str], quantizer) -> None:
    """:func:`load_state` with ``quantizer`` (:func:`attnkit.nn.quantize_int8` or ``_int4``)
    applied on the way: each layer it replaces is filled from ``state`` just before, and freed
    once replaced, so that one float layer at a time is in memory."""
    check_state(model, state, origin)
    expected, aliases = _canonical_state(model)

    def fill(name: str, layer) -> None:
        for part in ("weight", "bias"):
            key = aliases.get(f"{name}.{part}", f"{name}.{part}")
            if key in expected:  # (filled already when tied to a layer quantized before)
                expected.pop(key).copy_(state[key])

    with torch.no_grad():
        quantizer(model, fill=fill)
        for name, target in expected.items():
            target.copy_(state[name])


def from_pretrained(path_or_hub_id: str | Path, *, dtype: torch.dtype | str | None = None,
                    device: str | torch.device = "cpu", quantize: str | None = None, allow_pickle: bool = False,
                    revision: str | None = None, cache_dir: str | Path | None = None, token: str | bool | None = None,
                    local_files_only: bool = False):
    """Load an attnkit model from a checkpoint directory (HF layout) or a hub id; a PEFT LoRA
    adapter's directory loads its ``base_model_name_or_path`` with the adapter merged in
    (:func:`attnkit.interop.peft.load_peft_adapter`).

    The family comes from config.json (the ``attnkit`` block, else ``model_type`` /
    ``architectures``); a generative model's ``generation_config`` from ``generation_config.json``
    (:func:`read_generation_config`). Returns the model in eval mode. Weights load from safetensors only;
    ``allow_pickle=True`` accepts ``pytorch_model.bin`` via ``torch.load(weights_only=True)``.
    ``dtype``: the weights' and compute dtype (fp32 when None, whatever the checkpoint stores;
    ``"auto"``: the one it stores, :func:`stored_dtype`). ``quantize``: ``"int8"`` or ``"int4"``
    quantizes the linear layers and token embeddings (:func:`attnkit.nn.quantize_int8` /
    ``quantize_int4``, their defaults) as the weights load, each float layer quantized right after
    it is filled, so that only one is in memory at a time (LoRA or PEFT adapters are merged into
    the float weights first, which then load whole). ``revision``, ``cache_dir``, ``token`` and
    ``local_files_only`` are ``huggingface_hub``'s, for hub ids.
    The model's ``name_or_path`` is the (downloaded) directory.
    Raises :class:`~attnkit.CheckpointError` / :class:`~attnkit.ConfigError` on anything malformed.
    """
    if dtype is not None and dtype != "auto" and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputError(f"dtype must be a floating torch.dtype such as torch.bfloat16, or 'auto', got {dtype!r}")
    if quantize is not None and quantize not in QUANTIZERS:
        raise InputError(f"quantize must be one of {sorted(QUANTIZERS)} or None, got {quantize!r}")
    hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    directory = resolve_checkpoint_dir(path_or_hub_id, allow_pickle, **hub)
    if not (directory / CONFIG_NAME).is_file() and (directory / "adapter_config.json").is_file():
        from attnkit.interop.peft import load_peft_adapter  # a PEFT adapter: its base model, adapted

        base = read_json(directory / "adapter_config.json")
        base = base.get("base_model_name_or_path") if isinstance(base, dict) else None
        if not isinstance(base, str) or not base:
            raise CheckpointError(f"{directory / 'adapter_config.json'} names no base_model_name_or_path to adapt")
        model = load_peft_adapter(from_pretrained(base, dtype=dtype, device="cpu", allow_pickle=allow_pickle, **hub),
                                  directory)
        return (QUANTIZERS[quantize](model) if quantize else model).to(device)
    config_json = read_json(directory / CONFIG_NAME)
    state = read_weights(directory, allow_pickle=allow_pickle)
    if dtype == "auto":
        dtype = stored_dtype(config_json, state)
    config_json, state = _dequantized(config_json, state, directory, dtype)
    try:
        fam, cls, config, layout = _parse_config(config_json, directory, state)
        _check_layer_counts(config, len(state), directory)
        # Constructor options the checkpoint's keys decide (a BertModel saved without its pooler).
        options = fam.model_options(cls, state.keys()) if hasattr(fam, "model_options") else {}
        with torch.device("meta"), NoParameterInit():
            skeleton = cls(config, **options)  # shapes only: mismatches are reported before any real allocation
        if layout == "hf" and "attnkit" in config_json:
            stale = _stale_block_fields(fam, skeleton, config_json)
            if stale:  # another tool (transformers) changed the HF fields after attnkit saved: they win
                warnings.warn(f"{directory / CONFIG_NAME}: {', '.join(stale)} differ from the attnkit block written "
                              "with them (the file was changed by another tool since); using the Hugging Face fields",
                              stacklevel=2)
                config = _config_from_hf(fam, config_json, cls, state)
                with torch.device("meta"), NoParameterInit():
                    skeleton = cls(config, **options)
        _check_computed_buffers(skeleton, directory)
    except AttnkitError:
        raise
    except Exception as e:  # config.json is untrusted: whatever slipped past validation is still its fault
        raise ConfigError(f"{directory / CONFIG_NAME} does not describe a model attnkit can build: {e!r}") from None
    origin, unmatched = {}, []
    if layout == "hf":
        rules = fam.key_rules(skeleton)
        state = _add_or_strip_prefix(rules, state, fam.BASE_PREFIX)
        if hasattr(fam, "EXTRA_LAYERS"):
            state = _drop_extra_layers(state, fam.EXTRA_LAYERS, config.n_layers)
        state, origin, unmatched = keymap.from_hf(rules, state, fam.IGNORED_HF_KEYS)
        for name in skeleton.state_dict():
            if name not in state:  # report missing tensors by the names the checkpoint should have used
                origin[name] = " + ".join(keymap.hf_names_of(rules, name))
    try:
        check_state(skeleton, state, origin, unmatched)
    except CheckpointError as e:
        raise CheckpointError(f"{directory}: {e}") from None
    previous = torch.get_default_dtype()
    if dtype is not None:  # built in the asked dtype: no fp32 copy of the weights on the way
        torch.set_default_dtype(dtype)
    try:
        with NoParameterInit():  # every parameter is copied from the checkpoint next
            model = cls(config, **options)
    finally:
        torch.set_default_dtype(previous)
    if dtype is not None:
        model = model.to(dtype)  # the buffers a model computes in fp32 (the parameters are in dtype already)
    if quantize is not None and not (directory / LORA_CONFIG_NAME).is_file():
        _load_quantized(model, state, origin, QUANTIZERS[quantize])
    else:
        load_state(model, state, origin)
        _load_lora(model, directory)
        if quantize is not None:
            QUANTIZERS[quantize](merge_lora(model))
    if hasattr(model, "generation_step"):
        model.generation_config = read_generation_config(directory, config_json)
    model.name_or_path = str(directory)
    return model.to(device).eval()


FLOAT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def stored_dtype(config: dict, state: dict[str, torch.Tensor]) -> torch.dtype | None:
    """The dtype a checkpoint is meant to run in (``from_pretrained(dtype="auto")``, as
    ``transformers`` reads it): config.json's ``dtype`` (``torch_dtype`` in older files) when it
    names fp32, bf16 or fp16, else the one most of its fp32/bf16/fp16 tensors' elements are stored
    in; None (fp32) when it has none."""
    named = config.get("dtype", config.get("torch_dtype"))
    if named in FLOAT_DTYPES:
        return FLOAT_DTYPES[named]
    counts: dict[torch.dtype, int] = {}
    for t in state.values():
        if t.dtype in FLOAT_DTYPES.values():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    return max(counts, key=counts.get) if counts else None


def _load_lora(model, directory: Path) -> None:
    """Put back the LoRA adapters saved beside the weights (``lora_config.json``), if any."""
    path = directory / LORA_CONFIG_NAME
    if not path.is_file():
        return
    cfg = read_json(path)
    fields = ("r", "alpha", "dropout", "modules", "trainable")
    if not isinstance(cfg, dict) or sorted(set(cfg) - {"dora"}) != sorted(fields) \
            or not isinstance(cfg["modules"], list):
        raise CheckpointError(f"{path} must hold an object with {', '.join(fields)} (and dora)")
    try:
        add_lora(model, **cfg)
    except InputError as e:
        raise CheckpointError(f"{path}: {e}") from None
    tensors = read_safetensors(directory / LORA_WEIGHTS_NAME) if (directory / LORA_WEIGHTS_NAME).is_file() else {}
    _, expected = lora_state(model)
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    bad = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or bad:
        raise CheckpointError(f"{directory / LORA_WEIGHTS_NAME} does not match {path}: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}, misshapen {bad[:3]}")
    with torch.no_grad():
        for name, t in tensors.items():
            expected[name].copy_(t)


def read_generation_config(directory: Path, config_json: dict) -> GenerationConfig:
    """The checkpoint's decoding defaults: ``generation_config.json``, else (as ``transformers``
    does) the legacy generation fields of ``config.json``."""
    path = directory / GENERATION_CONFIG_NAME
    legacy = not path.is_file()
    d = config_json if legacy else read_json(path)
    source = directory / CONFIG_NAME if legacy else path
    if not isinstance(d, dict):
        raise ConfigError(f"{source} must hold a JSON object, got {type(d).__name__}")
    try:
        return GenerationConfig.from_hf(d, str(source), legacy=legacy)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


__all__ = ["FAMILIES", "check_saveable", "check_state", "checkpoint_family", "from_pretrained", "load_state",
           "read_generation_config", "register", "resolve_checkpoint_dir", "save_pretrained"]
