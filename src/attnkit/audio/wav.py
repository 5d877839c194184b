"""WAV files and sampling rates: :func:`read_wav` (PCM WAV with the standard library's ``wave``)
and :func:`resample` (the band-limited Fourier method), so audio from any source reaches a
speech model at the rate its features expect (16 kHz for Whisper)."""

from __future__ import annotations

import os
import wave
from typing import BinaryIO

import torch

from attnkit.errors import DataError, InputError

_PCM_DTYPES = {1: torch.uint8, 2: torch.int16, 4: torch.int32}  # sample width in bytes -> dtype


def read_wav(path: str | os.PathLike | BinaryIO) -> tuple[torch.Tensor, int]:
    """Samples of a PCM WAV file (a path, or a binary file object such as ``io.BytesIO``) as
    float32 in ``[-1, 1)``, channels averaged to mono, and the file's sampling rate:
    ``(audio (N,), sampling_rate)``. 8-bit files are unsigned, 16- and 32-bit signed, as the
    format defines; other encodings (float, compressed) are a :class:`DataError`."""
    if hasattr(path, "read"):
        source, path = path, getattr(path, "name", "the audio")
    else:
        source = os.fspath(path)
    try:
        with wave.open(source, "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            frames = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise DataError(f"audio file {path} does not exist") from None
    except (wave.Error, EOFError) as e:
        raise DataError(f"{path} is not a PCM WAV file ({e})") from None
    if width not in _PCM_DTYPES:
        raise DataError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    usable = len(frames) - len(frames) % (width * channels)  # a truncated last frame is dropped
    samples = torch.frombuffer(bytearray(frames[:usable]), dtype=_PCM_DTYPES[width]).float()
    if width == 1:
        samples = (samples - 128.0) / 128.0
    else:
        samples = samples / float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels).mean(dim=1), rate


def resample(audio: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """``audio`` ``(..., N)`` sampled at ``orig_rate`` Hz, resampled to ``target_rate`` Hz along the
    last dimension: ``(..., round(N · target_rate / orig_rate))``, in ``audio``'s float dtype.

    The Fourier method (as ``scipy.signal.resample``): keep the spectrum below the lower of the
    two Nyquist frequencies and transform back, so nothing aliases. It treats the signal as
    periodic, which is harmless for speech that starts and ends in silence."""
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point() or audio.dim() == 0:
        what = f"{audio.dtype} {tuple(audio.shape)}" if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise InputError(f"audio must be a float tensor of samples (..., N), got {what}")
    for name, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise InputError(f"{name} must be a positive int (Hz), got {rate!r}")
    if orig_rate == target_rate:
        return audio
    n = audio.shape[-1]
    m = max(1, round(n * target_rate / orig_rate))
    spectrum = torch.fft.rfft(audio.double())
    out = spectrum.new_zeros(*spectrum.shape[:-1], m // 2 + 1)
    k = min(n, m)
    out[..., : k // 2 + 1] = spectrum[..., : k // 2 + 1]
    if k % 2 == 0:  # the bin at k/2 is the Nyquist bin of the shorter signal: split or join its two halves
        out[..., k // 2] *= 2.0 if m < n else 0.5
    return (torch.fft.irfft(out, n=m) * (m / n)).to(audio.dtype)
