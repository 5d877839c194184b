"""Tokenizers on the Hugging Face `tokenizers` library: character-level, byte-level BPE,
amino acids, and any ``tokenizer.json`` (WordPiece, BPE, ...)."""

from attnkit.tokenizers.tokenizer import AMINO_ACIDS, Tokenizer

__all__ = ["AMINO_ACIDS", "Tokenizer"]
