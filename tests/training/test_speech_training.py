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
from attnkit.training.speech import read_transcribed_audio

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
