"""Checkpoint files in Hugging Face's layout, read defensively and written atomically.

A checkpoint directory holds ``config.json`` and the weights as ``model.safetensors`` or as
shards listed in ``model.safetensors.index.json``. Files come from strangers, so a
safetensors header is checked against the file size and its own offsets *before* any tensor
is read, and every failure is a :class:`~attnkit.CheckpointError` naming the file. Pickle
(``pytorch_model.bin``) is refused unless the caller opts in, and then read with
``torch.load(weights_only=True)``, which executes no code from the file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from attnkit.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit
MAX_JSON_BYTES = 100 * 2**20

# safetensors dtype name -> torch dtype (https://github.com/huggingface/safetensors, format spec)
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def read_json(path: Path) -> Any:
    """Parse a small JSON file; a missing, huge, non-UTF-8 or invalid file is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is {path.stat().st_size} bytes; a JSON file this large is not a checkpoint file")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, or an int too long to convert
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def _header_error(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors file: {what}")


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Validate a safetensors file's header without reading tensor data.

    Checks the header length against the file size, that every entry has a known dtype, a
    shape of non-negative ints and byte offsets matching ``prod(shape) * itemsize``, and that
    the entries tile the data area exactly (no gap, overlap, truncation or trailing bytes).
    Returns ``name -> {"dtype", "shape", "data_offsets"}`` (``__metadata__`` removed).
    """
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    size = path.stat().st_size
    if size < 8:
        raise _header_error(path, f"file is truncated ({size} bytes; the 8-byte header length is missing)")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES:
            raise _header_error(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (corrupt header)")
        if 8 + n > size:
            raise _header_error(path, f"header length {n} runs past the end of the {size}-byte file (truncated?)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise _header_error(path, f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _header_error(path, f"header must be a JSON object, got {type(header).__name__}")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _header_error(path, "__metadata__ must map strings to strings")

    spans = []
    for name, entry in header.items():
        where = f"tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _header_error(path, f"{where} must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
            raise _header_error(path, f"{where} has unknown dtype {dtype!r}; known: {sorted(SAFETENSORS_DTYPES)}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _header_error(path, f"{where} has invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _header_error(path, f"{where} has invalid data_offsets {offsets!r}")
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _header_error(
                path, f"{where} of dtype {dtype} and shape {shape} needs {nbytes} bytes, its offsets {offsets} span "
                f"{offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))

    data_size = size - 8 - n
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _header_error(path, f"tensor {name!r} starts at byte {begin}, expected {end} (overlapping or gapped data)")
        end = stop
    if end > data_size:
        raise _header_error(path, f"tensor data needs {end} bytes but the file holds {data_size} (truncated file)")
    if end < data_size:
        raise _header_error(path, f"{data_size - end} unexpected trailing bytes after the tensor data")
    return header


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file (on CPU), after :func:`read_safetensors_header`."""
    from safetensors import safe_open

    read_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as e:  # the Rust reader raises PanicException (a BaseException) on some corruptions
        raise CheckpointError(f"{path} could not be read as safetensors: {e}") from None


def _pickle_message(directory: Path, name: str) -> str:
    return (
        f"{directory} holds only a pickle checkpoint ({name}). attnkit loads weights from safetensors only, "
        "because unpickling can run code from the file. If you trust it, convert it once:\n"
        "  python -c \"import torch; from safetensors.torch import save_file; "
        f"save_file(torch.load('{directory / 'pytorch_model.bin'}', weights_only=True), "
        f"'{directory / WEIGHTS_NAME}', metadata={{'format': 'pt'}})\"\n"
        "or pass allow_pickle=True (read with torch.load(weights_only=True))."
    )


def read_weights(directory: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict stored in a checkpoint directory (single file, shards, or opt-in pickle)."""
    single, index = directory / WEIGHTS_NAME, directory / WEIGHTS_INDEX_NAME
    if single.exists():
        return read_safetensors(single)
    if index.exists():
        return _read_sharded(directory, index)
    for name in PICKLE_NAMES:
        if (directory / name).exists():
            if not allow_pickle:
                raise CheckpointError(_pickle_message(directory, name))
            if name.endswith(".index.json"):
                raise CheckpointError(f"{directory / name}: sharded pickle checkpoints are not supported; convert to safetensors")
            try:
                state = torch.load(directory / name, map_location="cpu", weights_only=True)
            except Exception as e:
                raise CheckpointError(f"{directory / name} could not be read with torch.load(weights_only=True): {e}") from None
            if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
                raise CheckpointError(f"{directory / name} does not hold a flat dict of tensors")
            return state
    raise CheckpointError(f"{directory} has no weights: expected {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} "
                          f"({PICKLE_NAMES[0]} is read, and downloaded from the hub, with allow_pickle=True)")


def _read_sharded(directory: Path, index_path: Path) -> dict[str, torch.Tensor]:
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path} must hold a 'weight_map' object mapping tensor names to shard file names")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index_path} names shard {shard!r}; shards must be plain file names in {directory}")
        tensors = read_safetensors(directory / shard)
        listed = {k for k, v in weight_map.items() if v == shard}
        if set(tensors) != listed:
            extra, missing = sorted(set(tensors) - listed), sorted(listed - set(tensors))
            raise CheckpointError(
                f"{directory / shard} does not match {index_path.name}: missing {missing[:5]}, not listed {extra[:5]}")
        state.update(tensors)
    return state


def chmod_like_new(path: Path) -> None:
    """Give a temporary file or directory (``mkstemp``/``mkdtemp``: private, 0600/0700) the
    permissions a plain ``open``/``mkdir`` would have under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in UTF-8 through a synced temporary file and ``os.replace``: a
    crash leaves the old file or the new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        chmod_like_new(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_path(path: Path) -> None:
    """Flush a file or directory to disk (directories: so that a rename inside it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(directory: str | Path, config: dict, tensors: dict[str, torch.Tensor],
                     extra_json: dict[str, dict | None] | None = None,
                     extra_tensors: dict[str, dict[str, torch.Tensor] | None] | None = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` (+ the JSON files ``extra_json`` and the
    safetensors files ``extra_tensors``, by name; a name mapped to None is a file this checkpoint
    has not, removed if ``directory`` holds one from an earlier save) into ``directory`` atomically.

    Both files are written and fsynced in a temporary directory beside the target, then moved
    in: a new ``directory`` appears whole in one ``os.rename``; into an existing one each file is
    replaced atomically (``os.replace``), weights first, so a crash never leaves a partial file
    under its final name. Other files already in ``directory`` (tokenizer, optimiser state) stay.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot save into {directory}: it exists and is not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        chmod_like_new(tmp)  # a saved model is an ordinary directory, not a private one
        weights = {WEIGHTS_NAME: tensors, **{k: v for k, v in (extra_tensors or {}).items() if v is not None}}
        for name, part in weights.items():
            part = {k: v.detach().to("cpu").contiguous() for k, v in part.items()}
            save_file(part, str(tmp / name), metadata={"format": "pt"})
        extra = {k: v for k, v in (extra_json or {}).items() if v is not None}
        names = [*weights, CONFIG_NAME, *extra]
        for name, content in {CONFIG_NAME: config, **extra}.items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        for name in names:
            chmod_like_new(tmp / name)  # safetensors writes 0600
            fsync_path(tmp / name)
        try:
            os.rename(tmp, directory)  # fresh target: one atomic step
        except OSError:
            if not directory.is_dir():
                raise
            for name in names:  # existing target: replace file by file
                os.replace(tmp / name, directory / name)
            for name in (set(extra_json or {}) - set(extra)) | (set(extra_tensors or {}) - set(weights)):
                (directory / name).unlink(missing_ok=True)
            tmp.rmdir()
        fsync_path(directory)
        fsync_path(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
