"""Speech-recognition training from a recipe (``task = "speech"``): audio with transcripts, a
character tokenizer trained on the transcripts, a :class:`~attnkit.Whisper`, and the Trainer;
or, with ``model.pretrained``, a Whisper checkpoint fine-tuned with its own tokenizer, each
label starting with the prompt ``transcribe`` will give it (``data.language``, ``data.task``).

Data: ``"numbers"`` is the built-in task (:func:`attnkit.data.speech.spoken_numbers`: numbers
read aloud by espeak-ng in random voices, their digits as transcripts; validation numbers are
never heard in training); otherwise a TSV file of ``audio.wav<TAB>transcript`` lines, the paths
relative to the file's folder (any sampling rate: resampled to 16 kHz). Audio is cut or padded
to the model's window and turned into log-mel features once, before training.

``OUT/checkpoints/step-N/`` are model directories with ``tokenizer.json``, for ``attnkit
transcribe``.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.errors import ConfigError, DataError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.lm import TokenizerSection, prepare_tokenizer
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.sources import TensorDataSource
from attnkit.training.trainer import TrainConfig, Trainer

START, END = "<|startoftranscript|>", "<|endoftext|>"


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` are ``"numbers"`` (built-in) or TSV files of
    ``audio.wav<TAB>transcript``. The built-in task reads ``0 .. max_number``, holds out
    ``valid_numbers`` of them for validation (``valid_readings`` readings each) and reads each
    training number ``readings`` times; ``seed`` draws the split and the voices. ``language``
    (``"en"``, ``"de"``, ...) and ``task`` (``"transcribe"`` by default, or ``"translate"``) put
    a multilingual checkpoint's prompt tokens before each transcript (fine-tuning ``openai/whisper-*``
    with ``model.pretrained``)."""

    train: str = "numbers"
    valid: str = "numbers"
    max_number: int = 99
    valid_numbers: int = 10
    readings: int = 6
    valid_readings: int = 3
    seed: int = 0
    language: str | None = None
    task: str | None = None

    def validate(self) -> None:
        self.require_positive("max_number", "valid_numbers", "readings", "valid_readings")
        self.require(self.valid_numbers <= self.max_number, "valid_numbers", "must leave numbers to train on")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A speech recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ModelSection = ModelSection(family="Whisper", preset="whisper-numbers")
    tokenizer: TokenizerSection = TokenizerSection(kind="char", special_tokens=(END, START))
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig(lr=2e-3, schedule="cosine", warmup_steps=80, weight_decay=0.01, batch_size=32,
                                     max_steps=800, eval_every=100)


def load_split(section: DataSection, split: str, show_progress: bool = False) -> list[tuple[torch.Tensor, str]]:
    """The audio and transcripts of ``"train"`` or ``"valid"``."""
    from attnkit.data.speech import read_transcribed_audio, spoken_numbers

    spec = section.train if split == "train" else section.valid
    if spec != "numbers":
        return read_transcribed_audio(spec)
    order = torch.randperm(section.max_number + 1, generator=torch.Generator().manual_seed(section.seed)).tolist()
    held_out, known = order[:section.valid_numbers], order[section.valid_numbers:]
    if split == "train":
        return spoken_numbers(known * section.readings, seed=section.seed, show_progress=show_progress)
    return spoken_numbers(held_out * section.valid_readings, seed=section.seed + 1, show_progress=show_progress)


def label_prefix(model, language: str | None, task: str | None) -> list[int]:
    """The tokens the labels start with, after the ``<|startoftranscript|>`` the model puts in
    front: the rest of :func:`~attnkit.generation.speech.whisper_prompt` (language, task,
    ``<|notimestamps|>`` where the checkpoint has them), so the model learns to continue the
    prompt ``transcribe`` gives it. A multilingual checkpoint needs ``data.language``."""
    from attnkit.errors import InputError
    from attnkit.generation.speech import whisper_prompt

    if language is None and isinstance(model.generation_config.other.get("lang_to_id"), dict):
        raise ConfigError("data.language is required to fine-tune a multilingual Whisper: the language of the "
                          "transcripts ('en', 'de', ...), whose token starts every label")
    try:
        return whisper_prompt(model, language, task)[0, 1:].tolist()
    except InputError as e:
        raise ConfigError(f"data.language / data.task: {e}") from None


class SpeechDataSource(TensorDataSource):
    """Random batches of precomputed log-mel features with their transcripts' token ids (after
    ``prefix``, then EOS, -100 padding): ``{"input_features", "labels"}``; validation batches in order."""

    input_name = "input_features"

    def __init__(self, train, valid, tokenizer, config, batch_size: int, prefix: list[int] = ()):
        super().__init__(self._prepare(train, tokenizer, config, "train", list(prefix)),
                         self._prepare(valid, tokenizer, config, "valid", list(prefix)), batch_size)

    @staticmethod
    def _prepare(data, tokenizer, config, name: str, prefix: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from attnkit.audio import log_mel_spectrogram, pad_or_trim

        if not data:
            raise DataError(f"the {name} split holds no audio")
        window = config.n_samples
        features = torch.cat([log_mel_spectrogram(torch.stack([pad_or_trim(a, window) for a, _ in data[i:i + 256]]),
                                                  n_mels=config.num_mel_bins) for i in range(0, len(data), 256)])
        rows = [prefix + tokenizer.encode(text, add_special_tokens=False) + [config.eos_token_id] for _, text in data]
        longest = max(map(len, rows))
        if longest > config.max_target_positions:
            raise DataError(f"a {name} transcript is {longest} tokens with EOS, more than the model's "
                            f"{config.max_target_positions} decoder positions (max_target_positions)")
        labels = torch.full((len(rows), longest), -100)
        for i, row in enumerate(rows):
            labels[i, : len(row)] = torch.tensor(row)
        return features, labels


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Train the recipe's speech recogniser into ``out_dir``; returns the finished Trainer."""
    out = Path(out_dir)
    if recipe.model.family != "Whisper":
        raise ConfigError(f"model.family must be 'Whisper' for task 'speech', got {recipe.model.family!r}")
    if recipe.model.pretrained is None:
        recipe.model.model_config()  # check the model config before anything is written
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    progress = recipe.train.progress and info.is_main
    train, valid = load_split(recipe.data, "train", progress), load_split(recipe.data, "valid", progress)
    barrier(info)
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        tokenizer = prepare_tokenizer(recipe, out, info, last, ["\n".join(text for _, text in train)])
        torch.manual_seed(recipe.train.seed)  # the same initial weights on every rank
        if recipe.model.pretrained is None:
            end, start = tokenizer.token_to_id(END), tokenizer.token_to_id(START)
            if end is None or start is None:
                raise ConfigError(f"tokenizer.special_tokens must include {END!r} and {START!r}")
            model = recipe.model.build(tokenizer, vocab_size=tokenizer.vocab_size, pad_token_id=end, bos_token_id=end,
                                       eos_token_id=end, decoder_start_token_id=start)
        else:
            model = recipe.model.build(tokenizer)
        source = SpeechDataSource(train, valid, tokenizer, model.config, recipe.train.batch_size,
                                  label_prefix(model, recipe.data.language, recipe.data.task))
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": "speech", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
