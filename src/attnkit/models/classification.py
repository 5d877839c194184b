"""What classifier heads share: class names (Hugging Face's ``id2label``), label checks, and the
loss over one vector of logits per example, whose kind follows ``problem_type`` as in Hugging
Face's sequence and image classifiers.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from attnkit.errors import InputError
from attnkit.nn.loss import check_class_ids

ProblemType = Literal["regression", "single_label_classification", "multi_label_classification"]


class ClassLabels:
    """Mixin of configs with ``num_labels``, ``label_names`` (the classes' names in id order, or
    None for ``LABEL_0, LABEL_1, ...``) and ``problem_type`` fields."""

    def validate_labels(self) -> None:
        """The label fields' checks, for the config's ``validate``."""
        self.require_positive("num_labels")
        self.require(self.label_names is None or len(self.label_names) == self.num_labels, "label_names",
                     f"must be None or {self.num_labels} names (num_labels)")

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> name, as Hugging Face's ``config.id2label``."""
        return dict(enumerate(self.label_names or [f"LABEL_{i}" for i in range(self.num_labels)]))

    @property
    def label2id(self) -> dict[str, int]:
        """Class name -> id, as Hugging Face's ``config.label2id``."""
        return {name: i for i, name in self.id2label.items()}


def check_labels(labels: torch.Tensor, shape, name: str = "labels") -> None:
    """Raise :class:`~attnkit.InputError` unless ``labels`` has ``shape``."""
    if tuple(labels.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)}, got {tuple(labels.shape)}")


def class_ids(labels: torch.Tensor, shape, n_classes: int | None, name: str = "labels") -> torch.Tensor:
    """``labels`` checked as integer class ids of ``shape`` in ``[0, n_classes)`` or -100 (any
    value when ``n_classes`` is None); returned as int64, as the losses take them."""
    check_labels(labels, shape, name)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"{name} must be integer class ids, got {labels.dtype}")
    if n_classes is not None:
        check_class_ids(labels, n_classes, name=name)
    return labels.long()


def token_loss(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean cross-entropy of per-token ``logits`` ``(B, T, N)`` against class ids ``labels``
    ``(B, T)``, -100 ignored (masked LM, token classification); fp32 whatever the logits' dtype."""
    labels = class_ids(labels, logits.shape[:2], n_classes)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


class ClassifierLoss:
    """Mixin of models whose ``logits`` are ``(B, num_labels)``, one row per example (BERT's
    sequence classifier, ViT's image classifier). The loss follows ``config.problem_type``, or
    when it is None (as in Hugging Face): ``num_labels == 1`` is regression (mean squared error),
    integer ``(B,)`` labels are single-label classification (cross-entropy, -100 ignored), float
    ``(B, num_labels)`` labels are multi-label (binary cross-entropy)."""

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` ``(B, num_labels)`` against ``labels``; fp32 whatever the logits' dtype."""
        n, problem = self.config.num_labels, self.problem_type_of(labels)
        if problem == "regression" and n == 1:
            check_labels(labels.reshape(-1), logits.shape[:1])  # (B,) or (B, 1)
            return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
        if problem == "regression":
            check_labels(labels, logits.shape)
            return F.mse_loss(logits.float(), labels.float())
        if problem == "multi_label_classification":
            if self.config.problem_type is None and labels.shape == logits.shape[:1]:
                raise InputError(f"float labels {tuple(labels.shape)} are read as multi-label targets, which are "
                                 f"{tuple(logits.shape)}; single-label class ids must be an integer tensor")
            check_labels(labels, logits.shape)
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return F.cross_entropy(logits.float(), class_ids(labels, logits.shape[:1], n))

    def problem_type_of(self, labels: torch.Tensor) -> str:
        """``config.problem_type``, or, when None, what Hugging Face infers from num_labels and the labels' dtype."""
        n, problem = self.config.num_labels, self.config.problem_type
        if problem is not None:
            return problem
        return ("regression" if n == 1 else "multi_label_classification" if labels.dtype.is_floating_point
                else "single_label_classification")

    def count_targets(self, batch: dict) -> int:
        """Every label of a regression or multi-label loss (they ignore none); class ids but -100."""
        labels = batch.get("labels")
        if torch.is_tensor(labels) and self.problem_type_of(labels) != "single_label_classification":
            return labels.numel()
        return super().count_targets(batch)
