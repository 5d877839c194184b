"""Package-level contracts: version, a light ``import attnkit``, and the error hierarchy."""

import subprocess
import sys

import pytest

import attnkit
import attnkit.errors


def test_version_is_0_1_0():
    assert attnkit.__version__ == "0.1.0"


def test_import_attnkit_does_not_import_transformers_or_submodules():
    code = (
        "import sys, attnkit\n"
        "heavy = [m for m in ('transformers', 'attnkit.models', 'attnkit.generation') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_lazy_public_names_resolve():
    for name in attnkit._LAZY:
        assert getattr(attnkit, name) is not None
    assert attnkit.GPT.__name__ == "GPT" and attnkit.nn.scaled_dot_product_attention is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        attnkit.Nope  # noqa: B018


def test_every_error_class_derives_from_attnkit_error():
    classes = [v for v in vars(attnkit.errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert attnkit.errors.AttnkitError in classes and len(classes) >= 5
    for cls in classes:
        assert issubclass(cls, attnkit.AttnkitError), cls
        assert getattr(attnkit, cls.__name__) is cls  # re-exported at the top level
    for name in ("ConfigError", "CheckpointError", "DataError", "InputError"):
        assert issubclass(getattr(attnkit, name), ValueError)
