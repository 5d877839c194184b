"""read_image_folder on the class-per-folder layout, and the built-in digits against scikit-learn's."""

import numpy as np
import pytest

from attnkit import DataError
from attnkit.data.images import digits, read_image_folder


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_classes_are_folder_names_in_sorted_order_with_nested_files(tmp_path):
    for name in ("zebra/b.png", "zebra/a.JPG", "ant/deep/er/c.jpeg", "ant/notes.txt", "ant/.hidden.png",
                 ".git/x.png", "ant/.cache/d.png"):
        touch(tmp_path / name)
    touch(tmp_path / "README.png")  # a file at the root is no class
    got = [(p.relative_to(tmp_path).as_posix(), label) for p, label in read_image_folder(tmp_path)]
    assert got == [("ant/deep/er/c.jpeg", "ant"), ("zebra/a.JPG", "zebra"), ("zebra/b.png", "zebra")]


def test_missing_or_empty_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="has no class folders"):
        read_image_folder(tmp_path)
    touch(tmp_path / "cat" / "1.png")
    touch(tmp_path / "dog" / "notes.txt")
    with pytest.raises(DataError, match=r"class folders \['dog'\] hold no images"):
        read_image_folder(tmp_path)


def test_builtin_digits_are_sklearns_spread_over_0_to_255():
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_digits()
    got = digits()
    assert len(got) == len(reference.target) == 1797
    pixels = np.stack([p for p, _ in got])
    assert pixels.dtype == np.uint8 and pixels.shape == (1797, 8, 8) and pixels.max() == 255
    np.testing.assert_allclose(pixels / 255, reference.images / 16, atol=0.5 / 255)
    assert [label for _, label in got] == [str(t) for t in reference.target]
