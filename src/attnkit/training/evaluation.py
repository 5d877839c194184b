"""A trained model's scores on a labelled test set: the metrics its training task logs at each
evaluation, computed the same way (``attnkit evaluate`` for classifiers, question answering
and image classifiers; text-to-text models are scored by ``attnkit evaluate --metric``).

- sequence classifiers: ``accuracy`` and macro ``f1`` on a JSONL/CSV/TSV file;
- token classifiers: ``accuracy`` over the labelled words, and entity ``precision`` / ``recall``
  / ``f1`` for B-/I- tags (else macro ``f1``), on a CoNLL or JSONL file;
- extractive QA: SQuAD ``exact_match`` and ``f1`` on a SQuAD JSON file;
- image classifiers: ``accuracy`` and macro ``f1`` on an image folder.
"""

from __future__ import annotations

from attnkit.errors import DataError, InputError


def _label_ids(model, found: set[str], path: str) -> dict[str, int]:
    c = model.config
    names = c.label_names or tuple(f"LABEL_{i}" for i in range(c.num_labels))
    unknown = sorted(found - set(names))
    if unknown:
        raise DataError(f"{path}: labels {unknown[:5]} are not the model's (labels: {list(names)})")
    return {name: i for i, name in enumerate(names)}


def evaluate_model(model, tokenizer, data: str, text_field: str = "text", label_field: str = "label",
                   pair_field: str | None = None, tokens_field: str = "tokens", tags_field: str = "tags",
                   max_length: int = 512, max_seq_len: int = 384, doc_stride: int = 128,
                   batch_size: int = 32) -> dict[str, float]:
    """The scores of ``model`` on the labelled examples at ``data`` (see the module docstring);
    a label the model does not have is a :class:`DataError`, a model of another kind an
    :class:`InputError`."""
    from attnkit.training.classification import ClassificationDataSource

    c = model.config
    if getattr(c, "model_type", None) == "vit" and hasattr(model, "classification_loss"):
        from attnkit import metrics
        from attnkit.data.images import read_image_folder
        from attnkit.pipelines import classify_image

        files = read_image_folder(data)
        labels = _label_ids(model, {label for _, label in files}, data)
        predicted = [row[0]["label"] for row in classify_image(model, [str(f) for f, _ in files], top_k=1,
                                                               batch_size=batch_size)]
        gold = [label for _, label in files]
        ids = [labels[p] for p in predicted], [labels[g] for g in gold]
        return {"accuracy": metrics.accuracy(*ids), "f1": metrics.f1(*ids, average="macro")}
    if hasattr(model, "qa_outputs"):
        from attnkit.data.question_answering import read_squad
        from attnkit.training.question_answering import QuestionAnsweringDataSource

        source = QuestionAnsweringDataSource([], [], read_squad(data), tokenizer, batch_size,
                                             min(max_seq_len, c.n_positions), doc_stride)
        return source.task_metrics(model)
    if not hasattr(c, "num_labels"):
        raise InputError(f"attnkit evaluate scores classifiers, question answering and text-to-text models; "
                         f"got a {type(model).__name__}")
    max_length = min(max_length, getattr(c, "n_positions", max_length))
    pad = tokenizer.pad_token_id or 0
    if hasattr(model, "classification_loss"):  # one label per text
        from attnkit.data.classification import read_examples
        from attnkit.training.classification import encode_examples

        examples = read_examples(data, text_field, label_field, pair_field)
        labels = _label_ids(model, {label for _, _, label in examples}, data)
        rows = encode_examples(examples, tokenizer, labels, max_length)
        source = ClassificationDataSource(rows, rows, pad, batch_size, pairs=pair_field is not None,
                                          f1_average="macro")
        return source.scores(model)
    from attnkit.data.classification import read_sentences
    from attnkit.training.token_classification import encode_sentences

    sentences = read_sentences(data, tokens_field, tags_field)
    labels = _label_ids(model, {tag for _, tags in sentences for tag in tags}, data)
    names = tuple(labels)
    tagged = any(name[:2] in ("B-", "I-") for name in names)
    rows = encode_sentences(sentences, tokenizer, labels, max_length)
    source = ClassificationDataSource(rows, rows, pad, batch_size, pairs=False, label_names=names,
                                      f1_average=None if tagged else "macro", entity_scores=tagged)
    return source.scores(model)
