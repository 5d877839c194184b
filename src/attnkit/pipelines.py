"""Task-level inference in one call, with the outputs of Hugging Face's pipelines of the same
name: :func:`classify` (``"text-classification"``), :func:`classify_tokens`
(``"token-classification"``, named entities), :func:`fill_mask` (``"fill-mask"``) and
:func:`answer_question` (extractive question answering, as ``transformers`` 4's
``"question-answering"`` pipeline) and :func:`classify_image` (``"image-classification"``).
Sentence embeddings are :func:`attnkit.embed`; generation is ``model.generate`` and
:class:`attnkit.generation.text.TextStream`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attnkit.errors import InputError
from attnkit.models.base import eval_mode


def _texts(texts) -> tuple[list[str], bool]:
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise InputError("texts must be a non-empty string or a non-empty list of non-empty strings")
    return texts, single


def _per_text(model, tokenizer, texts: list[str], batch_size: int, max_length: int | None, results_of) -> list:
    """``results_of(texts, batch, model output)`` (one result per text of the batch) for every
    text, in the order given. The texts run ``batch_size`` at a time, without dropout, longest
    first (:func:`attnkit.embeddings.by_length`: batches of similar lengths, little padding)."""
    from attnkit.embeddings import by_length

    def run(chunk: list[str]) -> list:
        batch = tokenizer(chunk, truncation=max_length is not None, max_length=max_length)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.no_grad():
            return results_of(chunk, batch, model(**batch))

    with eval_mode(model):
        return by_length(texts, batch_size, run)


def classify(model, tokenizer, texts: str | list[str], top_k: int | None = 1, function_to_apply: str | None = None,
             batch_size: int = 32, max_length: int | None = None):
    """Label texts with a sequence classifier (``BertForSequenceClassification``,
    ``EsmForSequenceClassification``): ``{"label", "score"}`` per text (the best label), or
    with ``top_k`` (``None``: all) a list of them, best first.

    Scores as Hugging Face's pipeline computes them: softmax over the labels for single-label
    classifiers, sigmoid for multi-label ones (and ``num_labels == 1``), the raw logit for
    regression; ``function_to_apply`` (``"softmax"``, ``"sigmoid"``, ``"none"``) overrides.
    A single text gives a single result."""
    rank = _label_ranker(model, "classify", top_k, function_to_apply)
    texts, single = _texts(texts)
    results = _per_text(model, tokenizer, texts, batch_size, max_length, lambda _, __, out: rank(out.logits))
    results = [ranked[0] if top_k == 1 else ranked for ranked in results]
    return results[0] if single else results


def _label_ranker(model, caller: str, top_k: int | None, function_to_apply: str | None):
    """For a classifier (sequence or image), ``rank(logits (B, num_labels))``: per row the labels'
    ``{"label", "score"}``, best first, the first ``top_k`` (None: all). Scores as Hugging Face's
    classification pipelines: softmax for single-label classifiers, sigmoid for multi-label ones
    (and ``num_labels == 1``), the raw logit for regression, unless ``function_to_apply`` says."""
    if not hasattr(model.config, "num_labels") or not hasattr(model, "classification_loss"):
        raise InputError(f"{caller} needs a classifier with one output per label, got a {type(model).__name__}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1 or None (every label), got {top_k}")
    c = model.config
    if function_to_apply is None:
        function_to_apply = ("none" if c.problem_type == "regression" else "sigmoid"
                             if c.problem_type == "multi_label_classification" or c.num_labels == 1 else "softmax")
    if function_to_apply not in ("softmax", "sigmoid", "none"):
        raise InputError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function_to_apply!r}")
    names = c.label_names or tuple(f"LABEL_{i}" for i in range(c.num_labels))

    def rank(logits: torch.Tensor) -> list[list[dict]]:
        logits = logits.float()
        scores = logits.softmax(-1) if function_to_apply == "softmax" else \
            logits.sigmoid() if function_to_apply == "sigmoid" else logits
        return [sorted(({"label": names[i], "score": s} for i, s in enumerate(row)), key=lambda d: -d["score"])[:top_k]
                for row in scores.tolist()]

    return rank


def classify_image(model, images, processor=None, top_k: int | None = 5, function_to_apply: str | None = None,
                   batch_size: int = 32):
    """Label images with an image classifier (``ViTForImageClassification``), as Hugging Face's
    ``"image-classification"`` pipeline does: per image a list of ``{"label", "score"}``, best
    first, the first ``top_k`` (None: all labels; scores as :func:`classify`'s).

    ``images``: one image or a list (paths, PIL images, uint8 pixel arrays). ``processor``: an
    :class:`attnkit.vision.ImageProcessor`, by default the model's own (its checkpoint's
    ``preprocessor_config.json`` when the model was loaded from one, else the default for its
    config). A single image gives a single result."""
    rank = _label_ranker(model, "classify_image", top_k, function_to_apply)
    processor = processor or _image_processor(model)
    images, single = _images(images)
    results = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            pixels = processor(images[i:i + batch_size]).to(model.device)
            with torch.no_grad():
                results += rank(model(pixels, interpolate_pos_encoding=True).logits)
    return results[0] if single else results


def _image_processor(model):
    """The model's own image processor: its checkpoint's ``preprocessor_config.json`` when it was
    loaded from one, else the default for its config."""
    from attnkit.vision.images import PROCESSOR_FILE, ImageProcessor

    source = getattr(model, "name_or_path", None)
    has_file = source is not None and (Path(source) / PROCESSOR_FILE).is_file()
    return ImageProcessor.from_pretrained(source) if has_file else ImageProcessor.for_model(model.config)


def _images(images) -> tuple[list, bool]:
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    if not images:
        raise InputError("no images given")
    return images, single


def zero_shot_classify_image(model, tokenizer, images, candidate_labels: list[str],
                             hypothesis_template: str = "This is a photo of {}.", processor=None, batch_size: int = 32):
    """Label images with any labels, untrained (Radford et al. 2021 §3.1.2), as Hugging Face's
    ``"zero-shot-image-classification"`` pipeline does: each label is written into
    ``hypothesis_template`` and an image-text dual encoder (:class:`~attnkit.Clip`,
    :class:`~attnkit.Siglip`) scores every image against every text; per image a list of
    ``{"score", "label"}``, best first: the softmax over the labels of CLIP's logits, the sigmoid
    of each of SigLIP's (its texts padded to its full length without a mask, as it was trained).
    ``images``: one or a list (paths, PIL images, uint8 pixel arrays); ``processor``: by default
    the model's own (see :func:`classify_image`). A single image gives a single result."""
    from attnkit.embeddings import dual_encoder_text_inputs

    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise InputError(f"zero_shot_classify_image needs an image-text dual encoder (Clip, Siglip), got a "
                         f"{type(model).__name__}")
    labels, _ = _texts(candidate_labels)
    if "{}" not in hypothesis_template:
        raise InputError(f"hypothesis_template must hold '{{}}' where the label goes, got {hypothesis_template!r}")
    processor = processor or _image_processor(model)
    images, single = _images(images)
    sigmoid = model.config.model_type == "siglip"
    results = []
    with eval_mode(model), torch.no_grad():
        ids, mask = dual_encoder_text_inputs(model, tokenizer, [hypothesis_template.format(label) for label in labels],
                                             truncation=False)  # a CLIP text too long for the model is an error
        ids, mask = ids.to(model.device), None if mask is None else mask.to(model.device)
        for i in range(0, len(images), batch_size):
            pixels = processor(images[i:i + batch_size]).to(model.device)
            scores = model(ids, pixels, attention_mask=mask).logits_per_image.float()
            for row in (scores.sigmoid() if sigmoid else scores.softmax(-1)).tolist():
                results.append(sorted(({"score": p, "label": label} for p, label in zip(row, labels)),
                                      key=lambda d: -d["score"]))
    return results[0] if single else results


def fill_mask(model, tokenizer, texts: str | list[str], top_k: int = 5, batch_size: int = 32):
    """The likeliest tokens for the mask token in each text (``"Paris is the [MASK] of
    France."``) with a masked LM (``BertForMaskedLM``, ``EsmForMaskedLM``): per text a list of
    ``{"score", "token", "token_str", "sequence"}`` (the softmax probability, the id, the token
    decoded alone, the text with it filled in), best first; for a text with several masks, one
    such list per mask. A single text gives a single result."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise InputError("fill_mask needs a tokenizer with a mask token")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    texts, single = _texts(texts)

    def fills(chunk: list[str], batch: dict, out) -> list:
        if out.logits is None or out.logits.dim() != 3:
            raise InputError(f"fill_mask needs a masked language model, got a {type(model).__name__}")
        results = []
        for ids, mask, logits, text in zip(batch["input_ids"], batch["attention_mask"], out.logits, chunk):
            ids = ids[mask.bool()]
            positions = (ids == mask_id).nonzero().flatten().tolist()
            if not positions:
                raise InputError(f"text {text!r} has no mask token ({tokenizer.id_to_token(mask_id)})")
            per_mask = []
            for pos in positions:
                values, tokens = logits[pos].float().softmax(-1).topk(min(top_k, logits.shape[-1]))
                row = []
                for v, t in zip(values.tolist(), tokens.tolist()):
                    filled = ids.clone()
                    filled[pos] = t
                    sequence = tokenizer.decode(filled.tolist(), skip_special_tokens=len(positions) == 1)
                    row.append({"score": v, "token": t, "token_str": tokenizer.decode([t]), "sequence": sequence})
                per_mask.append(row)
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return results

    results = _per_text(model, tokenizer, texts, batch_size, None, fills)
    return results[0] if single else results


AGGREGATIONS = ("none", "simple", "first", "average", "max")


def classify_tokens(model, tokenizer, texts: str | list[str], aggregation_strategy: str = "none",
                    ignore_labels: tuple[str, ...] = ("O",)):
    """Label each token (named entities, per-residue classes) with a token classifier
    (``BertForTokenClassification``, ``EsmForTokenClassification``), as Hugging Face's
    ``"token-classification"`` pipeline does: per text a list of entities with their
    ``score``, ``word`` and character ``start``/``end``, leaving out ``ignore_labels``.

    ``aggregation_strategy``: ``"none"`` gives every token (``entity``, ``index``);
    ``"simple"`` groups adjacent tokens of the same type (``B-``/``I-`` tags) into
    ``entity_group``\ s with the mean score; ``"first"``, ``"average"`` and ``"max"`` first make
    the sub-word tokens of a word agree (the first token's label, the mean scores, the most
    confident token's label), then group. A single text gives a single result."""
    if aggregation_strategy not in AGGREGATIONS:
        raise InputError(f"aggregation_strategy must be one of {AGGREGATIONS}, got {aggregation_strategy!r}")
    if not hasattr(model.config, "num_labels") or hasattr(model, "classification_loss"):
        raise InputError(f"classify_tokens needs a token classifier, got a {type(model).__name__}")
    texts, single = _texts(texts)
    c = model.config
    names = c.label_names or tuple(f"LABEL_{i}" for i in range(c.num_labels))
    backend = tokenizer.backend
    word_aware = getattr(backend.model, "continuing_subword_prefix", None) is not None
    results = []
    with eval_mode(model):
        for text in texts:
            enc = backend.encode(text)
            ids = torch.tensor([enc.ids], device=model.device)
            with torch.no_grad():
                scores = model(ids).logits[0].float().softmax(-1).cpu()  # (T, num_labels)
            tokens = []
            for i, (token, (start, end), special) in enumerate(zip(enc.tokens, enc.offsets, enc.special_tokens_mask)):
                if special:
                    continue
                piece = text[start:end]
                subword = len(token) != len(piece) if word_aware else start > 0 and " " not in text[start - 1:start + 1]
                if enc.ids[i] == tokenizer.unk_token_id:
                    token, subword = piece, False
                tokens.append(dict(word=token, scores=scores[i], start=start, end=end, index=i, is_subword=subword))
            entities = _aggregate(tokens, aggregation_strategy, names, backend)
            results.append([e for e in entities if e.get("entity", e.get("entity_group")) not in ignore_labels])
    return results[0] if single else results


def _aggregate(tokens: list[dict], strategy: str, names, backend) -> list[dict]:
    if strategy in ("none", "simple"):
        entities = []
        for t in tokens:
            best = int(t["scores"].argmax())
            entities.append(dict(entity=names[best], score=float(t["scores"][best]), index=t["index"], word=t["word"],
                                 start=t["start"], end=t["end"]))
        if strategy == "none":
            return entities
    else:  # make the tokens of a word agree first
        words, group = [], []
        for t in tokens:
            if group and not t["is_subword"]:
                words.append(_word(group, strategy, names, backend))
                group = []
            group.append(t)
        if group:
            words.append(_word(group, strategy, names, backend))
        entities = words
    groups, current = [], []
    for e in entities:  # adjacent entities of one type, a B- tag starting a new one
        bi, tag = _tag(e["entity"])
        if current and not (tag == _tag(current[-1]["entity"])[1] and bi != "B"):
            groups.append(_group(current, backend))
            current = []
        current.append(e)
    if current:
        groups.append(_group(current, backend))
    return groups


def _word(tokens: list[dict], strategy: str, names, backend) -> dict:
    if strategy == "first":
        scores = tokens[0]["scores"]
    elif strategy == "max":
        scores = max(tokens, key=lambda t: float(t["scores"].max()))["scores"]
    else:  # average
        scores = torch.stack([t["scores"] for t in tokens]).mean(0)
    best = int(scores.argmax())
    return dict(entity=names[best], score=float(scores[best]), word=backend.decoder.decode([t["word"] for t in tokens]),
                start=tokens[0]["start"], end=tokens[-1]["end"])


def _tag(label: str) -> tuple[str, str]:
    """``("B", "PER")`` of ``"B-PER"``; a label without a B-/I- prefix continues (``"I"``)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(entities: list[dict], backend) -> dict:
    return dict(entity_group=entities[0]["entity"].split("-", 1)[-1],
                score=sum(e["score"] for e in entities) / len(entities),
                word=backend.decoder.decode([e["word"] for e in entities]),
                start=entities[0]["start"], end=entities[-1]["end"])


def question_windows(tokenizer, question: str, context: str, max_seq_len: int = 384, doc_stride: int = 128):
    """The encodings of ``question`` paired with windows of ``context`` (``[CLS] question [SEP]
    window [SEP]`` for BERT), each at most ``max_seq_len`` tokens, consecutive windows sharing
    ``doc_stride`` context tokens, as Hugging Face's fast tokenizers cut them. Offsets of the
    context tokens index into ``context``; ``sequence_ids`` tell question (0) from context (1)."""
    backend = tokenizer.backend
    q = backend.encode(question, add_special_tokens=False)
    c = backend.encode(context, add_special_tokens=False)
    room = max_seq_len - len(q.ids) - backend.num_special_tokens_to_add(True)
    if room < 1 or doc_stride >= room:
        raise InputError(f"the question takes {len(q.ids)} tokens: max_seq_len={max_seq_len} leaves {room} for the "
                         f"context, which must exceed doc_stride={doc_stride}")
    c.truncate(room, stride=doc_stride)
    return [backend.post_process(q, window, True) for window in [c, *c.overflowing]]


def answer_question(model, tokenizer, question: str, context: str, top_k: int = 1, max_answer_len: int = 15,
                    max_seq_len: int = 384, doc_stride: int = 128):
    """The likeliest answer spans of ``context`` for ``question`` with an extractive QA model
    (``BertForQuestionAnswering``): ``{"score", "start", "end", "answer"}`` (character offsets
    into ``context``), or a list of ``top_k`` of them, best first.

    As ``transformers`` 4's question-answering pipeline: per window (:func:`question_windows`),
    the start and end logits of everything but context tokens are masked, each is turned into
    probabilities, and a span ``start <= end < start + max_answer_len`` scores
    ``p_start · p_end``; the best spans of all windows compete."""
    if not hasattr(model, "qa_outputs"):
        raise InputError(f"answer_question needs an extractive QA model (BertForQuestionAnswering), "
                         f"got a {type(model).__name__}")
    if not (isinstance(question, str) and question.strip() and isinstance(context, str) and context.strip()):
        raise InputError("question and context must be non-empty strings")
    if top_k < 1 or max_answer_len < 1:
        raise InputError(f"top_k and max_answer_len must be >= 1, got {top_k} and {max_answer_len}")
    spans = []
    with eval_mode(model):
        for enc in question_windows(tokenizer, question, context, max_seq_len, doc_stride):
            ids = torch.tensor([enc.ids], device=model.device)
            types = torch.tensor([enc.type_ids], device=model.device)
            with torch.no_grad():
                out = model(ids, token_type_ids=types)
            in_context = torch.tensor([s == 1 for s in enc.sequence_ids])
            probs = []
            for logits in (out.start_logits[0], out.end_logits[0]):
                logits = logits.float().cpu().masked_fill(~in_context, -10000.0)
                probs.append(logits.softmax(-1))
            scores = probs[0][:, None] * probs[1][None, :]  # (T, T): start x end
            scores = scores.triu().tril(max_answer_len - 1)
            scores = scores.masked_fill(~(in_context[:, None] & in_context[None, :]), 0.0)
            best = scores.flatten().topk(min(top_k, scores.numel()))
            for score, flat in zip(best.values.tolist(), best.indices.tolist()):
                s, e = divmod(flat, scores.shape[1])
                start, end = enc.offsets[s][0], enc.offsets[e][1]
                spans.append({"score": score, "start": start, "end": end, "answer": context[start:end]})
    spans.sort(key=lambda a: -a["score"])
    return spans[0] if top_k == 1 else spans[:top_k]
