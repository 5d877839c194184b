"""The speech task: a Whisper trained from a recipe on the built-in spoken numbers (espeak-ng)
or a TSV of WAV files, checkpoints that ``attnkit transcribe`` reads, and clear errors."""

import json
import shutil
import wave

import numpy as np
import pytest
import torch

import attnkit
from attnkit import ConfigError, DataError
from attnkit.training import run_recipe
from attnkit.data.speech import read_transcribed_audio

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
RECIPE = "recipes/speech-numbers.toml"


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((samples * 32767).astype("<i2").tobytes())


@needs_espeak
def test_recipe_trains_and_transcribe_reads_its_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from attnkit.cli import app
    from attnkit.data.speech import speak
    from attnkit.generation.speech import transcribe
    from attnkit.tokenizers import Tokenizer

    out = tmp_path / "out"
    run_recipe(RECIPE, out, ["data.readings=2", "data.valid_readings=1", "train.max_steps=150", "train.eval_every=50",
                             "train.warmup_steps=20", "train.save_every=150", "train.progress=false"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert len(evals) == 3 and all(np.isfinite(evals))  # on numbers never heard: too few steps to learn them here
    assert sum(losses[-20:]) < 0.75 * sum(losses[:20]), (losses[:20], losses[-20:])  # it learns the training audio
    checkpoint = out / "checkpoints" / "step-150"
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    assert model.config.eos_token_id == tok.token_to_id("<|endoftext|>")
    assert model.config.decoder_start_token_id == tok.token_to_id("<|startoftranscript|>")
    audio = speak("forty seven", voice="en-gb+f2", sampling_rate=22050)
    write_wav(tmp_path / "47.wav", audio.numpy(), 22050)
    result = CliRunner().invoke(app, ["transcribe", str(out), str(tmp_path / "47.wav")])
    assert result.exit_code == 0, result.output
    expected = transcribe(model, tok, attnkit.audio.read_wav(tmp_path / "47.wav")[0], 22050)[0]
    assert result.output == expected + "\n" and expected.isdigit()


def test_tsv_of_wav_files_is_read_and_resampled(tmp_path):
    t = np.arange(8000) / 8000
    write_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    (tmp_path / "sub").mkdir()
    write_wav(tmp_path / "sub" / "b.wav", 0.5 * np.sin(2 * np.pi * 220 * t[:4000]), 8000)
    (tmp_path / "data.tsv").write_text("a.wav\thello\nsub/b.wav\tgood bye\n")
    data = read_transcribed_audio(tmp_path / "data.tsv")
    assert [text for _, text in data] == ["hello", "good bye"]
    assert [a.numel() for a, _ in data] == [16000, 8000]  # 1 s and 0.5 s at 16 kHz
    expected = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000) * 0.5
    assert torch.allclose(data[0][0], expected.float(), atol=2e-3)
    (tmp_path / "bad.tsv").write_text("missing.wav\thello\n")
    with pytest.raises(DataError, match="missing.wav does not exist"):
        read_transcribed_audio(tmp_path / "bad.tsv")


def test_speech_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.family must be 'Whisper'"):
        run_recipe(RECIPE, tmp_path / "a", ["model.family=GPT", "model.preset=gpt-tiny"])
    with pytest.raises(ConfigError, match="valid_numbers"):
        run_recipe(RECIPE, tmp_path / "b", ["data.valid_numbers=200"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def tones(tmp_path, name: str, pairs) -> str:
    """A TSV of 1-second tones (frequency in Hz) with their transcripts."""
    lines = []
    for i, (hz, text) in enumerate(pairs):
        write_wav(tmp_path / f"{name}{i}.wav", 0.5 * np.sin(2 * np.pi * hz * np.arange(16000) / 16000), 16000)
        lines.append(f"{name}{i}.wav\t{text}\n")
    (tmp_path / f"{name}.tsv").write_text("".join(lines))
    return str(tmp_path / f"{name}.tsv")


def test_fine_tuning_a_whisper_checkpoint_starts_from_its_weights_and_tokenizer(tmp_path):
    """A Whisper trained to name tones, then fine-tuned from its checkpoint (model.pretrained):
    the first loss is where the first run ended, far below a new model's, and the tokenizer is
    the checkpoint's."""
    data = tones(tmp_path, "tones", [(220, "low"), (440, "mid"), (880, "high"), (1760, "top")])
    common = [f"data.train={data}", f"data.valid={data}", "train.progress=false", "train.eval_every=0",
              "train.warmup_steps=5", "train.batch_size=4"]
    run_recipe(RECIPE, tmp_path / "base", [*common, "train.max_steps=60", "train.save_every=60"])
    checkpoint = tmp_path / "base" / "checkpoints" / "step-60"
    base = [r["loss"] for r in map(json.loads, (tmp_path / "base" / "metrics.jsonl").read_text().splitlines())
            if "loss" in r]
    run_recipe(RECIPE, tmp_path / "tuned", [*common, "train.max_steps=1", "train.save_every=1", "train.lr=1e-5",
                                            f"model.pretrained={checkpoint}", "model.config={}"])
    tuned = [r["loss"] for r in map(json.loads, (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert tuned[0] < base[0] / 3 and tuned[0] < 2 * max(base[-5:]) + 0.05, (base[:3], base[-5:], tuned)
    assert (tmp_path / "tuned" / "tokenizer" / "tokenizer.json").read_text() == \
        (checkpoint / "tokenizer.json").read_text()


def test_labels_start_with_the_prompt_transcribe_gives_a_multilingual_checkpoint():
    from attnkit.generation.speech import whisper_prompt
    from attnkit.tokenizers import Tokenizer
    from attnkit.training.speech import SpeechDataSource, label_prefix

    tok = Tokenizer.train_char(["abc "], special_tokens=[f"<|special{i}|>" for i in range(6)])
    model = attnkit.Whisper(attnkit.WhisperConfig.from_preset("whisper-test"))
    model.generation_config = attnkit.GenerationConfig(other=dict(
        lang_to_id={"<|en|>": 80, "<|de|>": 81}, task_to_id={"transcribe": 85, "translate": 84}, no_timestamps_token_id=89))
    assert label_prefix(model, "de", None) == [81, 85, 89] == whisper_prompt(model, "de")[0, 1:].tolist()
    assert label_prefix(model, "en", "translate") == [80, 84, 89]
    with pytest.raises(ConfigError, match="data.language is required to fine-tune a multilingual Whisper"):
        label_prefix(model, None, None)
    with pytest.raises(ConfigError, match=r"data.language / data.task: '<\|fr\|>' is not in"):
        label_prefix(model, "fr", None)
    audio = [(torch.zeros(4000), "abc"), (torch.zeros(4000), "a b")]
    source = SpeechDataSource(audio, audio, tok, model.config, 2, label_prefix(model, "de", None))
    eos = model.config.eos_token_id
    assert source.train[1][0].tolist() == [81, 85, 89, *tok.encode("abc", add_special_tokens=False), eos]
    model.generation_config = attnkit.GenerationConfig(other=dict(no_timestamps_token_id=89))  # English-only
    assert label_prefix(model, None, None) == [89]
    with pytest.raises(ConfigError, match="no language and task tokens"):
        label_prefix(model, "en", None)
    model.generation_config = attnkit.GenerationConfig()  # trained by the speech task: the start token alone
    assert label_prefix(model, None, None) == []
