"""read_wav against the WAV format's definition (files written with the standard library's
``wave``) and resample against ``scipy.signal.resample`` and sampled sines."""

import math
import wave

import numpy as np
import pytest
import torch

from attnkit import DataError, InputError
from attnkit.audio import read_wav, resample


def write_wav(path, frames: bytes, width: int, channels: int = 1, rate: int = 8000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(frames)


def test_read_wav_scales_each_pcm_width(tmp_path):
    cases = {  # width: (raw samples, their value in [-1, 1))
        1: (np.array([128, 192, 0, 255], dtype=np.uint8), [0.0, 0.5, -1.0, 127 / 128]),
        2: (np.array([0, 16384, -32768, 32767], dtype="<i2"), [0.0, 0.5, -1.0, 32767 / 32768]),
        4: (np.array([0, 2**30, -(2**31), 2**31 - 1], dtype="<i4"), [0.0, 0.5, -1.0, (2**31 - 1) / 2**31]),
    }
    for width, (raw, expected) in cases.items():
        path = tmp_path / f"{width}.wav"
        write_wav(path, raw.tobytes(), width, rate=22050)
        audio, rate = read_wav(path)
        assert rate == 22050 and audio.dtype == torch.float32
        assert torch.allclose(audio, torch.tensor(expected), atol=1e-7), width


def test_read_wav_averages_channels_to_mono(tmp_path):
    stereo = np.array([16384, -16384, 32767, 32767, -32768, 0], dtype="<i2")  # (L, R) frames
    write_wav(tmp_path / "s.wav", stereo.tobytes(), 2, channels=2)
    audio, _ = read_wav(tmp_path / "s.wav")
    assert torch.allclose(audio, torch.tensor([0.0, 32767 / 32768, -0.5]))


def test_read_wav_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(DataError, match="text.wav is not a PCM WAV file"):
        read_wav(tmp_path / "text.wav")
    write_wav(tmp_path / "24.wav", b"\0" * 12, 3)
    with pytest.raises(DataError, match="24-bit samples are not supported"):
        read_wav(tmp_path / "24.wav")


@pytest.mark.parametrize("n,orig,target", [(36181, 22050, 16000), (1000, 16000, 22050), (1001, 8000, 16000),
                                           (999, 48000, 16000), (10, 2, 3), (11, 3, 2)])
def test_resample_equals_scipy_signal_resample(n, orig, target):
    signal = pytest.importorskip("scipy.signal")
    x = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    expected = signal.resample(x.numpy(), round(n * target / orig), axis=-1)
    out = resample(x, orig, target)
    assert out.shape == expected.shape and out.dtype == torch.float64
    assert np.abs(out.numpy() - expected).max() < 1e-12


def test_resampled_sine_is_the_sine_sampled_at_the_new_rate():
    """One second of a 440 Hz tone (a whole number of cycles, so the periodic assumption holds)
    at 22,050 Hz becomes the same tone sampled at 16 kHz; a 9 kHz tone, above the new Nyquist
    frequency, is removed rather than aliased."""
    t = torch.arange(22050, dtype=torch.float64) / 22050
    t16 = torch.arange(16000, dtype=torch.float64) / 16000
    tone = resample(torch.sin(2 * math.pi * 440 * t).float(), 22050, 16000)
    assert tone.dtype == torch.float32 and tone.shape == (16000,)
    assert torch.allclose(tone.double(), torch.sin(2 * math.pi * 440 * t16), atol=1e-5)
    assert resample(torch.sin(2 * math.pi * 9000 * t), 22050, 16000).abs().max() < 1e-9


def test_resample_refuses_bad_input():
    with pytest.raises(InputError, match="float tensor"):
        resample(torch.zeros(10, dtype=torch.int16), 22050, 16000)
    with pytest.raises(InputError, match="target_rate must be a positive int"):
        resample(torch.zeros(10), 22050, 0)
    same = torch.zeros(10)
    assert resample(same, 16000, 16000) is same
