"""One tokenizer class over the Hugging Face `tokenizers` library.

Character-level, byte-level BPE (GPT-2 style) and amino-acid vocabularies are built here;
WordPiece (BERT), BPE (GPT-2) and anything else `tokenizers` reads load from a
``tokenizer.json``. Saving writes the same file format, so a saved tokenizer loads in
Hugging Face ``transformers`` too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as _Backend

from attnkit.data.corpus import find_text_files, read_text_chunks
from attnkit.errors import ConfigError, DataError, InputError
from attnkit.interop.files import write_text_atomic
from attnkit.tokenizers.chat import read_chat_template, render_chat

# Token strings recognised as each role when a tokenizer.json comes without a
# tokenizer_config.json saying so (GPT-2, BERT, T5, ESM and Llama spellings).
_ROLE_NAMES = {
    "pad": ("<pad>", "[PAD]", "<|pad|>", "<|padding|>"),
    "eos": ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "<|end_of_text|>"),
    "bos": ("<s>", "<bos>", "<|startoftext|>", "<|begin_of_text|>", "<|endoftext|>"),
    "unk": ("<unk>", "[UNK]", "<|unk|>"),
    "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}
ROLES = tuple(_ROLE_NAMES)
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"  # the Hugging Face name; holds the special-token roles

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids, one-letter codes
# ESM-2's vocabulary in id order (Hugging Face's EsmTokenizer vocab.txt, facebook/esm2_*): specials,
# the residues by frequency, the ambiguous and rare codes X B U Z O, gap tokens, a spare, <mask>.
ESM_VOCAB = ("<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>", "<mask>")
_ESM_ROLES = {"cls": "<cls>", "pad": "<pad>", "eos": "<eos>", "unk": "<unk>", "mask": "<mask>"}


class Tokenizer:
    """Text <-> token ids, with batch encoding to padded tensors.

    Wraps a ``tokenizers.Tokenizer`` (``.backend``). ``roles`` maps special-token roles
    (pad, eos, bos, unk, cls, sep, mask) to token strings (guessed from the usual spellings
    when not given); ``special_tokens_map`` holds them and ``pad_token_id`` etc. their ids
    (``None`` when the tokenizer has no such token).
    """

    def __init__(self, backend: _Backend, roles: dict[str, str | None] | None = None,
                 model_max_length: int | None = None, chat_template: str | None = None):
        # Padding and truncation are per call (never silently from the file), as in transformers.
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        roles = _guess_roles(backend) if roles is None else dict(roles)
        for role, token in roles.items():
            if role not in ROLES:
                raise ConfigError(f"unknown special-token role {role!r}; valid roles: {', '.join(ROLES)}")
            if token is not None and backend.token_to_id(token) is None:
                raise ConfigError(f"special token {role}={token!r} is not in the vocabulary")
        self.special_tokens_map = {role: roles.get(role) for role in ROLES}
        self.model_max_length = model_max_length
        self.chat_template = chat_template  # Jinja (tokenizer_config.json's chat_template): apply_chat_template

    # ------------------------------------------------------------------ construction

    @classmethod
    def train_bpe(cls, files_or_texts, vocab_size: int = 4096,
                  special_tokens: Iterable[str] = ("<|endoftext|>", "<pad>"),
                  min_frequency: int = 2, show_progress: bool = False) -> Tokenizer:
        """Train a byte-level BPE tokenizer (GPT-2 style, Radford et al. 2019 §2.2).

        ``files_or_texts``: a file or directory path (all its files), or an iterable of file
        paths and/or texts (a string is a path only if it names an existing file). Every
        string is encodable and ``decode(encode(s)) == s``, except that text spelling a special
        token (``"<pad>"``) is that token, as in Hugging Face's tokenizers, which ``decode`` drops
        unless ``skip_special_tokens=False`` (``LMDataset.build`` encodes such text as text).
        """
        special_tokens = list(special_tokens)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + len(special_tokens):
            raise ConfigError(f"vocab_size={vocab_size} is too small for byte-level BPE: it needs at least "
                              f"{len(alphabet)} byte tokens + {len(special_tokens)} special tokens")
        backend = _Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        # trim_offsets=False: offsets cover the token's bytes exactly, leading space included.
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=special_tokens, initial_alphabet=alphabet,
                                      show_progress=show_progress)
        try:
            backend.train_from_iterator(_texts(files_or_texts), trainer=trainer)
        except UnicodeEncodeError as e:
            raise InputError(f"a training text is not valid Unicode: a lone surrogate at character {e.start}") from None
        return cls(backend)

    @classmethod
    def train_char(cls, files_or_texts,
                   special_tokens: Iterable[str] = ("<|endoftext|>", "<pad>", "<unk>")) -> Tokenizer:
        """Character-level tokenizer: one id per Unicode character seen in the corpus.

        Ids are the special tokens first, then the characters in code-point order, so the same
        corpus always gives the same vocabulary. Unseen characters map to ``<unk>`` if listed.
        ``files_or_texts`` as for :meth:`train_bpe`.
        """
        chars = set()
        for text in _texts(files_or_texts):
            chars.update(text)
        special_tokens = list(special_tokens)
        return cls(_char_backend(special_tokens, sorted(chars - set(special_tokens))))

    @classmethod
    def amino_acids(cls) -> Tokenizer:
        """Protein tokenizer: the 20 standard amino acids plus ``X`` (any/unknown residue).

        Specials ``<pad> <cls> <eos> <unk> <mask>`` (ids 0-4, ESM's names); ``encode``
        wraps a sequence as ``<cls> ... <eos>``. Anything else, lower-case letters included,
        encodes as ``<unk>``: upper-case sequences first.
        """
        special_tokens = ["<pad>", "<cls>", "<eos>", "<unk>", "<mask>"]
        backend = _char_backend(special_tokens, list(AMINO_ACIDS + "X"))
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A <eos>", special_tokens=[("<cls>", 1), ("<eos>", 2)])
        roles = {"pad": "<pad>", "cls": "<cls>", "bos": "<cls>", "eos": "<eos>", "unk": "<unk>", "mask": "<mask>"}
        return cls(backend, roles)

    @classmethod
    def esm(cls, vocab: Iterable[str] = ESM_VOCAB) -> Tokenizer:
        """ESM's protein tokenizer, as Hugging Face's ``EsmTokenizer`` over the same ``vocab``
        (the lines of its ``vocab.txt``; ESM-2's 33 tokens by default).

        Every vocabulary entry splits off wherever it occurs (``"MK<mask>A"`` is four tokens),
        whitespace only separates, and any other run of characters is one ``<unk>`` (lower-case
        letters included: upper-case sequences first). ``encode`` wraps a sequence as
        ``<cls> ... <eos>`` (a pair as ``<cls> a <eos> b <eos>``); ``decode`` joins tokens with
        spaces, as ``EsmTokenizer`` does. Special tokens: ``<cls> <pad> <eos> <unk> <mask>``.
        """
        vocab = list(vocab)
        missing = [t for t in _ESM_ROLES.values() if t not in vocab]
        if missing or len(set(vocab)) != len(vocab):
            raise ConfigError(f"an ESM vocabulary needs distinct tokens including {list(_ESM_ROLES.values())}; "
                              f"missing {missing}" if missing else "an ESM vocabulary has a repeated token")
        backend = _Backend(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
        entries = "|".join(re.escape(t) for t in sorted(vocab, key=len, reverse=True))  # longest match first
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(entries), behavior="isolated")])
        backend.add_special_tokens(list(_ESM_ROLES.values()))
        ids = [("<cls>", vocab.index("<cls>")), ("<eos>", vocab.index("<eos>"))]
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A <eos>", pair="<cls> $A <eos> $B:0 <eos>:0", special_tokens=ids)
        return cls(backend, _ESM_ROLES)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a Hugging Face ``tokenizer.json`` (WordPiece, BPE, Unigram, WordLevel).

        Special-token roles come from a ``tokenizer_config.json`` / ``special_tokens_map.json``
        next to the file when present (as in transformers), else from the usual spellings
        (``<pad>``, ``[PAD]``, ``<|endoftext|>``, ``[CLS]``, ...).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"tokenizer file {path} does not exist")
        try:
            backend = _Backend.from_file(str(path))
        except Exception as e:  # the Rust side raises a plain Exception
            raise DataError(f"tokenizer file {path} is not a valid tokenizer.json: {e}") from None
        _check_loaded(backend, path)
        roles, max_len, chat_template = _read_side_files(path.parent, backend)
        return cls(backend, roles, max_len, chat_template)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Tokenizer:
        """Load from a directory holding ``tokenizer.json`` (or from the file itself), or the
        ``vocab.txt`` of an ``EsmTokenizer`` (as the facebook/esm2_* checkpoints ship it)."""
        path = Path(path)
        if path.is_dir() and not (path / TOKENIZER_FILE).is_file() and _is_esm_vocab_dir(path):
            return cls.esm(line.strip() for line in (path / "vocab.txt").read_text(encoding="utf-8").splitlines())
        if path.is_dir():
            path = path / TOKENIZER_FILE
            if not path.is_file():
                raise DataError(f"directory {path.parent} has no {TOKENIZER_FILE}")
        return cls.from_file(path)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/tokenizer.json`` and ``tokenizer_config.json`` (roles), atomically.

        ``transformers.AutoTokenizer.from_pretrained(directory)`` reads the result as well.
        Returns the path of ``tokenizer.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {f"{role}_token": tok for role, tok in self.special_tokens_map.items() if tok is not None}
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        write_text_atomic(directory / TOKENIZER_FILE, self.backend.to_str(pretty=True))
        return directory / TOKENIZER_FILE

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (ids are ``0 .. vocab_size - 1``)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    def _role_id(self, role: str) -> int | None:
        token = self.special_tokens_map[role]
        return None if token is None else self.backend.token_to_id(token)

    pad_token_id = property(lambda self: self._role_id("pad"), doc="Id of the padding token, or None.")
    eos_token_id = property(lambda self: self._role_id("eos"), doc="Id of the end-of-text token, or None.")
    bos_token_id = property(lambda self: self._role_id("bos"), doc="Id of the start token, or None.")
    unk_token_id = property(lambda self: self._role_id("unk"), doc="Id of the unknown token, or None.")
    cls_token_id = property(lambda self: self._role_id("cls"), doc="Id of BERT's [CLS], or None.")
    sep_token_id = property(lambda self: self._role_id("sep"), doc="Id of BERT's [SEP], or None.")
    mask_token_id = property(lambda self: self._role_id("mask"), doc="Id of the mask token, or None.")

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False, tokenize: bool = False,
                            tools: list | None = None, documents: list | None = None, **kwargs) -> str | list[int]:
        """A conversation as the prompt the model was tuned on, with the tokenizer's
        ``chat_template`` (Hugging Face's ``apply_chat_template``: same template variables, the
        special tokens by role, ``kwargs`` such as Qwen3's ``enable_thinking``).

        ``messages``: ``[{"role": "system" | "user" | "assistant" | ..., "content": str}, ...]``.
        ``add_generation_prompt`` ends the text with the start of the assistant's turn.
        ``tokenize=True`` returns the ids (encoded without adding special tokens: the template
        writes them). A tokenizer without a template is an :class:`InputError`.
        """
        if self.chat_template is None:
            raise InputError("this tokenizer has no chat template (tokenizer_config.json's chat_template or "
                             "chat_template.jinja); set tokenizer.chat_template to a Jinja template")
        special = {f"{role}_token": token for role, token in self.special_tokens_map.items() if token is not None}
        text = render_chat(self.chat_template, messages, add_generation_prompt, special, tools, documents, **kwargs)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def fingerprint(self) -> str:
        """SHA-256 of the serialised tokenizer and its roles: equal fingerprints encode alike."""
        blob = self.backend.to_str() + json.dumps(self.special_tokens_map, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __repr__(self) -> str:
        kind = json.loads(self.backend.model.__getstate__())["type"]
        return f"Tokenizer({kind}, vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one text (with the tokenizer's special tokens, e.g. BERT's [CLS]/[SEP])."""
        return self._encode([text], add_special_tokens)[0].ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel; no padding."""
        return [e.ids for e in self._encode(texts, add_special_tokens)]

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list:
        """The backend's encodings; what it refuses is an :class:`InputError` saying why."""
        try:
            return self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        except TypeError:  # not a str, or a str with lone surrogates
            raise _text_error(list(texts)) from None
        except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exceptions
            if "Missing [UNK]" in str(e):
                raise InputError("the text has a character outside the vocabulary, and this tokenizer has no "
                                 "unknown token to map it to (train it with '<unk>' in special_tokens)") from None
            raise InputError(f"the tokenizer cannot encode the text: {e}") from None

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of a sequence of ids (list, or 1-d tensor); special tokens are kept unless
        ``skip_special_tokens`` (Hugging Face's default)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        """:meth:`decode` of each sequence (a list of id lists, or a 2-d tensor)."""
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens) for ids in sequences]

    def __call__(self, texts: str | list[str], text_pair: str | list[str] | None = None, padding: bool | str = True,
                 truncation: bool = False, max_length: int | None = None, return_offsets: bool = False,
                 padding_side: str = "right", add_special_tokens: bool = True) -> dict[str, torch.Tensor]:
        """Encode a batch (of texts, or of sentence pairs) into tensors.

        Returns ``input_ids`` (B, T), ``attention_mask`` (B, T) (1 = real token, 0 = padding) and
        ``token_type_ids`` (B, T) (0 = first text, 1 = second text of a pair; BERT's segment
        ids), all int64, and with ``return_offsets`` ``offsets`` (B, T, 2): the ``[start, end)``
        character span of each token in its own text ((0, 0) for special and padding tokens).

        ``text_pair``: second texts, one per text (``[CLS] a [SEP] b [SEP]`` for BERT).
        ``padding``: True pads to the longest text, ``"max_length"`` to ``max_length``, False
        requires equal lengths. A text longer than ``max_length`` is an ``InputError`` unless
        ``truncation=True``: then it is cut to ``max_length``, special tokens kept; a pair is cut
        from the ends of its texts as Hugging Face's ``longest_first`` does (see ``_truncate``).
        """
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(text_pair, str):
            text_pair = [text_pair]
        if text_pair is not None and len(text_pair) != len(texts):
            raise InputError(f"text_pair has {len(text_pair)} texts for {len(texts)} texts; give one per text")
        if padding not in (True, False, "longest", "max_length"):
            raise InputError(f"padding={padding!r}; expected True, False, 'longest' or 'max_length'")
        if padding_side not in ("right", "left"):
            raise InputError(f"padding_side={padding_side!r}; expected 'right' or 'left'")
        if truncation and max_length is None:
            max_length = self.model_max_length
            if max_length is None:
                raise InputError("truncation=True needs max_length (this tokenizer has no model_max_length)")
        if padding == "max_length" and max_length is None:
            raise InputError("padding='max_length' needs max_length")
        if max_length is not None and max_length < 1:
            raise InputError(f"max_length={max_length} must be >= 1")

        encodings = self._encode(texts, add_special_tokens=False)
        seconds = self._encode(text_pair, add_special_tokens=False) if text_pair is not None else None
        n_special = self.backend.num_special_tokens_to_add(seconds is not None) if add_special_tokens else 0
        for i, enc in enumerate(encodings):
            second = seconds[i] if seconds is not None else None
            length = len(enc.ids) + (len(second.ids) if second is not None else 0) + n_special
            if max_length is not None and length > max_length:
                if not truncation:
                    raise InputError(f"text {i} is {length} tokens long, more than max_length={max_length}; "
                                     "pass truncation=True to cut it or raise max_length")
                if max_length < n_special:
                    raise InputError(f"max_length={max_length} leaves no room for the {n_special} special tokens")
                _truncate(enc, second, max_length - n_special)
            encodings[i] = self.backend.post_process(enc, second, add_special_tokens)

        lengths = [len(e.ids) for e in encodings]
        if padding is False and len(set(lengths)) > 1:
            raise InputError(f"texts have different lengths {sorted(set(lengths))} and padding=False; "
                             "pass padding=True to pad them")
        T = max_length if padding == "max_length" else max(lengths, default=0)
        if min(lengths, default=T) < T and self.pad_token_id is None:
            raise InputError("this tokenizer has no pad token, so it cannot pad; "
                             "give it one with Tokenizer(tok.backend, roles={**tok.special_tokens_map, 'pad': ...})")

        B = len(texts)
        input_ids = torch.full((B, T), self.pad_token_id if self.pad_token_id is not None else 0, dtype=torch.long)
        attention_mask = torch.zeros(B, T, dtype=torch.long)
        token_type_ids = torch.zeros(B, T, dtype=torch.long)
        offsets = torch.zeros(B, T, 2, dtype=torch.long)
        for i, enc in enumerate(encodings):
            n = len(enc.ids)
            rows = slice(0, n) if padding_side == "right" else slice(T - n, T)
            input_ids[i, rows] = torch.tensor(enc.ids, dtype=torch.long)
            attention_mask[i, rows] = 1
            token_type_ids[i, rows] = torch.tensor(enc.type_ids, dtype=torch.long)
            if return_offsets and n:
                special = torch.tensor(enc.special_tokens_mask, dtype=torch.bool)
                offsets[i, rows] = torch.tensor(enc.offsets, dtype=torch.long).masked_fill(special[:, None], 0)
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if return_offsets:
            out["offsets"] = offsets
        return out


# ---------------------------------------------------------------------- helpers


def _truncate(first, second, budget: int) -> None:
    """Cut ``first`` (and ``second`` of a pair) to ``budget`` tokens in all, as Hugging Face's
    ``longest_first`` does: a text of at most half the budget is kept whole and the other gets the
    rest; otherwise the longer text (the second on a tie) gets the larger half."""
    if second is None:
        first.truncate(budget)
        return
    a, b = len(first.ids), len(second.ids)
    if a + b > budget:
        low, high = budget // 2, budget - budget // 2
        if a > b:
            a, b = (budget - b, b) if b <= low else (high, low)
        else:
            a, b = (a, budget - a) if a <= low else (low, high)
    first.truncate(a)
    second.truncate(b)


def _char_backend(special_tokens: list[str], chars: list[str]) -> _Backend:
    vocab = {tok: i for i, tok in enumerate([*special_tokens, *chars])}
    unk = next((t for t in special_tokens if t in _ROLE_NAMES["unk"]), None)
    backend = _Backend(models.WordLevel(vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    backend.decoder = decoders.Fuse()  # join characters without spaces
    backend.add_special_tokens(special_tokens)
    return backend


def _texts(files_or_texts) -> Iterator[str]:
    """Strings from a path (file or directory), or an iterable of paths and texts.

    A lone string, and any ``os.PathLike``, is a path (a missing one is a ``DataError``);
    a string inside an iterable is a path only if it names an existing file, else a text.
    """
    if isinstance(files_or_texts, (str, os.PathLike)):
        files_or_texts = [Path(files_or_texts)]
    for item in files_or_texts:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and "\n" not in item and os.path.isfile(item)):
            for path in find_text_files(item):
                yield from read_text_chunks(path)
        elif isinstance(item, str):
            yield item
        else:
            raise InputError(f"expected a text, a file or a directory, got {type(item).__name__}")


def _check_loaded(backend: _Backend, path: Path) -> None:
    """Encode an empty text (the special tokens alone): a file whose parts disagree (a
    post-processor naming a token the vocabulary lacks) panics in Rust on first use, or yields
    ids outside the vocabulary."""
    try:
        ids = backend.encode("").ids
    except BaseException as e:  # pyo3's PanicException derives from BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise DataError(f"tokenizer file {path} cannot encode text: {e}") from None
    vocab = backend.get_vocab_size(with_added_tokens=True)
    if any(not 0 <= i < vocab for i in ids):
        raise DataError(f"tokenizer file {path} produces ids {ids} outside its {vocab}-token vocabulary")


def _text_error(texts: list) -> InputError:
    """What is wrong with texts the backend refused: not strings, or lone surrogates."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            return InputError(f"text {i} is a {type(t).__name__}, not a str")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            return InputError(f"text {i} is not valid Unicode: a lone surrogate {t[e.start]!r} at character {e.start}")
    return InputError("the tokenizer cannot encode these texts")


def _guess_roles(backend: _Backend) -> dict[str, str | None]:
    specials = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]
    roles = {role: next((n for n in names if n in specials), None) for role, names in _ROLE_NAMES.items()}
    return roles


def _read_side_files(directory: Path, backend: _Backend) -> tuple[dict[str, str | None], int | None, str | None]:
    """``(roles, model_max_length, chat_template)`` from Hugging Face's side files: the
    special-token roles exactly as transformers reads them (or from the usual spellings when
    there are none), the length limit, the chat template (:func:`~attnkit.tokenizers.chat.read_chat_template`)."""
    files = [directory / name for name in ("special_tokens_map.json", CONFIG_FILE) if (directory / name).is_file()]
    roles = {} if files else _guess_roles(backend)
    max_len, tokenizer_config = None, {}
    for file in files:
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{file} is not valid JSON: {e}") from None
        if not isinstance(config, dict):
            raise DataError(f"{file} must hold a JSON object, got {type(config).__name__}")
        for role in ROLES:
            token = config.get(f"{role}_token")
            if isinstance(token, dict):  # {"content": "<pad>", "lstrip": false, ...}
                token = token.get("content")
            if isinstance(token, str) and backend.token_to_id(token) is not None:
                roles[role] = token
        length = config.get("model_max_length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, (int, float)) or length < 1):
            raise DataError(f"{file}: model_max_length must be a positive number, got {length!r}")
        if isinstance(length, int) and length < 10**9:
            max_len = config["model_max_length"]  # transformers writes 1e30 for "no limit"
        if file.name == CONFIG_FILE:
            tokenizer_config = config
    return roles, max_len, read_chat_template(directory, tokenizer_config)


def _is_esm_vocab_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a ``vocab.txt`` that ``tokenizer_config.json`` says is an ``EsmTokenizer``'s."""
    config = directory / CONFIG_FILE
    if not (directory / "vocab.txt").is_file() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") == "EsmTokenizer"
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False
