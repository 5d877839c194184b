"""Tokenizers on the Hugging Face `tokenizers` library: character-level, byte-level BPE,
amino acids (ESM's vocabulary too), and any ``tokenizer.json`` (WordPiece, BPE, ...)."""

from attnkit.tokenizers.tokenizer import AMINO_ACIDS, ESM_VOCAB, Tokenizer

__all__ = ["AMINO_ACIDS", "ESM_VOCAB", "Tokenizer"]
