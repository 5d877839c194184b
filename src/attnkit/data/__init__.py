"""Datasets: text corpora on disk and language-model token files."""

from attnkit.data.corpus import find_text_files, read_text_chunks, stdlib_corpus_files
from attnkit.data.lm import LMDataset, token_dtype

__all__ = ["LMDataset", "find_text_files", "read_text_chunks", "stdlib_corpus_files", "token_dtype"]
