"""Synthetic speech from eSpeak NG: the audio's rate, length and determinism, voices and speeds
that change it, the text kept off the command line, and clear errors. Skipped where espeak-ng
is not installed (``make test`` installs it with apt-get when it can)."""

import shutil

import pytest
import torch

from attnkit import DataError
from attnkit.data import speech
from attnkit.data.speech import speak, spoken_numbers

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@needs_espeak
def test_speak_gives_16khz_float_audio_of_speech_length():
    audio = speak("three hundred twenty one")
    assert audio.dtype == torch.float32 and audio.dim() == 1
    seconds = audio.numel() / 16000
    assert 1.0 < seconds < 3.0  # five syllables-ish words at 175 words per minute
    assert 0.05 < audio.abs().max() <= 1.0
    assert torch.equal(speak("three hundred twenty one"), audio)  # deterministic
    assert speak("three hundred twenty one", sampling_rate=8000).numel() == pytest.approx(audio.numel() / 2, abs=1)


@needs_espeak
def test_voice_speed_and_pitch_change_the_audio():
    base = speak("forty seven", speed=150)
    assert speak("forty seven", speed=300).numel() < 0.7 * base.numel()
    other_voice = speak("forty seven", voice="en-gb+f3", speed=150)
    higher = speak("forty seven", speed=150, pitch=90)
    for other in (other_voice, higher):
        n = min(other.numel(), base.numel())
        assert not torch.allclose(other[:n], base[:n], atol=1e-3)


@needs_espeak
def test_text_is_never_read_as_options():
    """A text that looks like an espeak-ng option is spoken, not obeyed (it goes through stdin)."""
    audio = speak("-w /tmp/attnkit-should-not-exist.wav")
    assert audio.numel() > 16000
    assert not __import__("os").path.exists("/tmp/attnkit-should-not-exist.wav")


@needs_espeak
def test_spoken_numbers_are_reproducible_readings_with_digit_transcripts():
    first = spoken_numbers([7, 47, 47], seed=3)
    assert [text for _, text in first] == ["7", "47", "47"]
    assert not torch.equal(first[1][0][:8000], first[2][0][:8000])  # two readings of 47: two voices
    again = spoken_numbers([7, 47, 47], seed=3)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, again))


@needs_espeak
def test_espeak_failures_are_data_errors():
    with pytest.raises(DataError, match="could not speak with voice 'zz'.*does not exist"):
        speak("one", voice="zz")


def test_bad_arguments_and_a_missing_espeak_are_data_errors(monkeypatch):
    with pytest.raises(DataError, match="non-empty text"):
        speak("   ")
    with pytest.raises(DataError, match="speed must be 80-450"):
        speak("one", speed=20)
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        speak("one")
