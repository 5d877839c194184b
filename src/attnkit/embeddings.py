"""Sentence embeddings: ``attnkit.embed(model_or_dir, sentences) -> (N, C)``; image embeddings:
``attnkit.embed_images(model_or_dir, images) -> (N, C)``.

Tokenise, run a BERT-style encoder, pool over real tokens (mean by default; the [CLS] state, the
maximum or the last token where a sentence-transformers checkpoint says so) and L2-normalise
(Sentence-BERT, Reimers & Gurevych 2019), so that a dot product is the cosine similarity.
Decoder-only models (Qwen3-Embedding, gte-Qwen2, e5-mistral: a Qwen3, Qwen2 or Mistral whose
checkpoint may hold the base model alone) pool the last real token's state by default, which is
the only one that has read the whole sentence. Image-text dual encoders (CLIP, SigLIP) embed
texts and images into one space, where a text's embedding is close to those of the images it
describes (:func:`embed_images`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attnkit.errors import InputError
from attnkit.models.base import eval_mode
from attnkit.nn.pooling import POOLING, pool


_ST_POOLING_FIELDS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                      "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                      "pooling_mode_lasttoken": "lasttoken"}


def sentence_transformers_modules(directory: Path) -> tuple[str | None, bool | None]:
    """``(pooling, normalize)`` that a sentence-transformers checkpoint's ``modules.json`` (its
    ``Pooling`` module's ``config.json``, and whether a ``Normalize`` module follows) asks for;
    ``(None, None)`` for a directory without one. Refuses what :func:`embed` does not implement."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return None, None
    try:
        modules = json.loads(modules_file.read_text())
        kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{modules_file} is not a sentence-transformers module list") from None
    unknown = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unknown:
        raise InputError(f"{modules_file}: modules {unknown} are not supported (attnkit.embed runs Transformer, "
                         "Pooling and Normalize)")
    pooling = None
    if "Pooling" in kinds:
        try:
            config = json.loads((directory / kinds["Pooling"] / "config.json").read_text())
        except (OSError, ValueError):
            raise InputError(f"{directory / kinds['Pooling'] / 'config.json'} is missing or not JSON") from None
        modes = [mode for field, mode in _ST_POOLING_FIELDS.items() if config.get(field)]
        other = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in _ST_POOLING_FIELDS)
        if len(modes) != 1 or other:
            raise InputError(f"{directory / kinds['Pooling']}: pooling {modes + other} is not supported (one of "
                             f"{', '.join(POOLING)})")
        pooling = modes[0]
    return pooling, "Normalize" in kinds


def _max_length(directory: Path | None, tokenizer, model) -> int:
    """sentence-transformers' ``max_seq_length`` when the directory has one, else the model's limit."""
    encoder = getattr(model, "encoder_model", model)
    limits = [getattr(encoder, "max_length", model.config.n_positions)]
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
def embed(model_or_dir, sentences: str | list[str], batch_size: int = 32, normalize: bool | None = None,
          tokenizer=None, max_length: int | None = None, device: str | torch.device = "cpu",
          dtype: torch.dtype | None = None, pooling: str | None = None, show_progress: bool = False) -> torch.Tensor:
    """Embed sentences with a BERT-style model, or a decoder-only one (last-token pooling).

    The sentences go through the model longest first, in batches of similar lengths (as
    sentence-transformers' ``encode``: less padding), and come back in the order given.

    Args:
        model_or_dir: a checkpoint directory (model + ``tokenizer.json``) or hub id, or a model
            with a ``sentence_embedding`` method or a decoder-only one (then pass ``tokenizer``).
        sentences: one string or a list of ``N`` strings.
        batch_size: sentences per forward pass.
        normalize: L2-normalise each embedding (cosine similarity = dot product). Default: as a
            sentence-transformers directory's ``modules.json`` says (a ``Normalize`` module),
            else True.
        pooling: one of :data:`POOLING` (:func:`pool`). Default: a sentence-transformers
            directory's ``Pooling`` config, else ``"mean"`` (``"lasttoken"`` for a decoder-only
            model).
        tokenizer: an :class:`attnkit.Tokenizer`; read from the directory by default.
        max_length: tokens per sentence; longer ones are truncated. Defaults to the directory's
            ``sentence_bert_config.json`` ``max_seq_length``, else the model's position limit.
        device, dtype: where and in which dtype a model loaded from a directory runs (a model
            passed in runs where it is).
        show_progress: a progress bar over the batches.

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
    decoder = hasattr(model, "generation_logits")  # a decoder-only LM: its states read only what came before
    if hasattr(model, "get_text_features"):  # an image-text dual encoder: its text features
        return _dual_encoder_texts(model, tokenizer, sentences, batch_size, normalize, show_progress)
    if not (hasattr(model, "sentence_embedding") or decoder):
        raise InputError(f"{type(model).__name__} does not produce sentence embeddings (needs an encoder such as Bert, "
                         "a decoder-only model, or an image-text model such as Clip)")
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise InputError("sentences is empty")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    max_length = max_length or _max_length(directory, tokenizer, model)
    st_pooling, st_normalize = sentence_transformers_modules(directory) if directory is not None else (None, None)
    pooling = pooling or st_pooling or ("lasttoken" if decoder else "mean")
    if pooling not in POOLING:
        raise InputError(f"pooling must be one of {POOLING}, got {pooling!r}")
    normalize = normalize if normalize is not None else st_normalize if st_normalize is not None else True

    def embed_batch(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length)
        ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
        if pooling == "mean" and not decoder:
            pooled = model.sentence_embedding(ids, mask, normalize=False)
        else:  # a decoder's LM head runs on the last position only: its logits are not needed
            states = model(ids, attention_mask=mask, **({"logits_to_keep": 1} if decoder else {})).last_hidden_state
            pooled = pool(states, mask, pooling)
        pooled = pooled.float()  # normalised in fp32 below
        return (torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled).cpu()

    with eval_mode(model):  # no dropout, as sentence-transformers' encode(); the caller's mode is restored
        return torch.stack(by_length(sentences, batch_size, embed_batch, show_progress))


def by_length(texts: list, batch_size: int, run, show_progress: bool = False) -> list:
    """``run(batch)`` (a list of texts -> one result per text) over ``texts`` in batches of
    ``batch_size``, longest first (by characters, as sentence-transformers sorts: batches of
    similar lengths, little padding); the results in the order of ``texts``. ``show_progress``:
    a progress bar over the batches."""
    longest_first = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    results = [None] * len(texts)
    for start in tqdm(range(0, len(texts), batch_size), desc="embed", unit="batch", disable=not show_progress):
        chosen = longest_first[start:start + batch_size]
        for i, result in zip(chosen, run([texts[i] for i in chosen]), strict=True):
            results[i] = result
    return results


def _checked(items, batch_size: int, what: str) -> list:
    items = [items] if isinstance(items, (str, Path)) or not isinstance(items, (list, tuple)) else list(items)
    if not items:
        raise InputError(f"{what} is empty")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return items


def dual_encoder_text_inputs(model, tokenizer, texts: list[str],
                             truncation: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(input_ids, attention_mask or None)`` of texts as an image-text dual encoder reads them:
    CLIP's padded to the longest (cut to ``n_positions`` with ``truncation``), SigLIP's padded to
    its full length without a mask, as it was trained (and as ``transformers``' pipeline pads them)."""
    n = model.config.n_positions
    if model.config.model_type == "siglip":
        return tokenizer(texts, padding="max_length", max_length=n, truncation=True)["input_ids"], None
    batch = tokenizer(texts, truncation=truncation, max_length=n if truncation else None)
    return batch["input_ids"], batch["attention_mask"]


def _dual_encoder_texts(model, tokenizer, sentences, batch_size: int, normalize: bool | None,
                        show_progress: bool = False) -> torch.Tensor:
    """A CLIP's or SigLIP's text features, as its ``get_text_features`` (texts encoded by
    :func:`dual_encoder_text_inputs`), longest first as :func:`embed`'s."""
    sentences = _checked(sentences, batch_size, "sentences")

    def embed_batch(texts: list[str]) -> torch.Tensor:
        ids, mask = dual_encoder_text_inputs(model, tokenizer, texts)
        features = model.get_text_features(ids.to(model.device), None if mask is None else mask.to(model.device))
        features = features.float()
        return (torch.nn.functional.normalize(features, dim=-1) if normalize is not False else features).cpu()

    with eval_mode(model):
        return torch.stack(by_length(sentences, batch_size, embed_batch, show_progress))


@torch.inference_mode()
def embed_images(model_or_dir, images, batch_size: int = 32, normalize: bool = True, processor=None,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """Embed images with an image-text dual encoder (CLIP, SigLIP): its image features
    (``get_image_features``), L2-normalised unless ``normalize=False``, in the space where
    :func:`embed` puts texts.

    ``model_or_dir``: a model or a checkpoint directory (or hub id); ``images``: one or a list
    (paths, PIL images, uint8 pixel arrays); ``processor``: an
    :class:`attnkit.vision.ImageProcessor`, by default the checkpoint's
    ``preprocessor_config.json`` (else the model's defaults). Returns ``(N, C)`` float on the CPU."""
    from attnkit.pipelines import _image_processor

    if isinstance(model_or_dir, (str, Path)):
        from attnkit.interop import from_pretrained, resolve_checkpoint_dir

        model = from_pretrained(resolve_checkpoint_dir(model_or_dir), dtype=dtype, device=device)
    else:
        model = model_or_dir
    if not hasattr(model, "get_image_features"):
        raise InputError(f"{type(model).__name__} does not embed images (needs an image-text model such as Clip)")
    images = _checked(images, batch_size, "images")
    processor = processor or _image_processor(model)
    out = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            features = model.get_image_features(processor(images[i:i + batch_size]).to(model.device)).float()
            out.append((torch.nn.functional.normalize(features, dim=-1) if normalize else features).cpu())
    return torch.cat(out)
