"""Every error attnkit raises on purpose derives from :class:`AttnkitError`.

The subclasses also derive from ``ValueError`` so that callers who catch the builtin keep
working. Messages say what was wrong, where, and what was expected.
"""


class AttnkitError(Exception):
    """Base class of all errors attnkit raises on purpose."""


class ConfigError(AttnkitError, ValueError):
    """A configuration field is missing, unknown, of the wrong type or out of range."""


class CheckpointError(AttnkitError, ValueError):
    """A checkpoint directory or file is missing, corrupt, or does not match the model."""


class DataError(AttnkitError, ValueError):
    """A data path or data file is missing, empty or malformed."""


class InputError(AttnkitError, ValueError):
    """A tensor passed to a model has the wrong shape, dtype or length."""


class TrainingError(AttnkitError, RuntimeError):
    """A training run cannot go on (for example the loss became NaN or infinite)."""
