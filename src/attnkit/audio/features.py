"""Log-mel spectrograms as Whisper reads them (Radford et al. 2022 §2.2): 16 kHz audio, padded or
trimmed to 30 seconds, 25 ms Hann windows every 10 ms (n_fft 400, hop 160), power spectrum, 80
Slaney-normalised mel filters, log10, the dynamic range clipped to 8 (80 dB) below the loudest
bin, and scaled by (x + 4) / 4 to about [-1, 1].

Torch only (no librosa); computed in float64 by default, so it matches Hugging Face's
``WhisperFeatureExtractor`` (numpy float64 or torch float32 path) to about 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnkit.errors import ConfigError, InputError

# Slaney's mel scale (Auditory Toolbox; librosa's htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15
_LOGSTEP = math.log(6.4) / 27.0  # 27 mels per factor 6.4 of frequency


def hertz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: ``3f/200`` below 1 kHz, ``15 + ln(f/1000) / (ln 6.4 / 27)`` above."""
    log = _MIN_LOG_MEL + torch.log(freq.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freq >= _MIN_LOG_HZ, log, freq / _F_SP)


def mel_to_hertz(mels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hertz_to_mel`."""
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels.clamp(min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log, mels * _F_SP)


def mel_filter_bank(n_freqs: int, n_mels: int, sampling_rate: int, f_min: float = 0.0, f_max: float | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n_freqs, n_mels)`` triangular filters on the Slaney mel scale, each divided by its width
    in Hz (``norm="slaney"``: about equal energy per filter), for the ``n_freqs`` rfft bins
    spanning 0 to ``sampling_rate / 2``: librosa's ``filters.mel(htk=False, norm="slaney")``
    transposed, and Hugging Face's ``mel_filter_bank(..., norm="slaney", mel_scale="slaney")``."""
    f_max = sampling_rate / 2 if f_max is None else f_max
    if n_freqs < 2 or n_mels < 1 or not 0 <= f_min < f_max:
        raise InputError(f"mel_filter_bank needs n_freqs >= 2, n_mels >= 1 and 0 <= f_min < f_max, got "
                         f"n_freqs={n_freqs}, n_mels={n_mels}, f_min={f_min}, f_max={f_max}")
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    mel_lo, mel_hi = hertz_to_mel(edges).tolist()
    centres = mel_to_hertz(torch.linspace(mel_lo, mel_hi, n_mels + 2, dtype=torch.float64))  # (n_mels + 2,) Hz
    fft_freqs = torch.linspace(0, sampling_rate // 2, n_freqs, dtype=torch.float64)  # (n_freqs,)
    slopes = centres[None, :] - fft_freqs[:, None]  # (n_freqs, n_mels + 2)
    widths = centres.diff()  # (n_mels + 1,)
    down = -slopes[:, :-2] / widths[:-1]  # rising edge of filter m, from centre m to m + 1
    up = slopes[:, 2:] / widths[1:]  # falling edge, from centre m + 1 to m + 2
    filters = torch.minimum(down, up).clamp(min=0.0)
    return (filters * (2.0 / (centres[2:] - centres[:-2]))).to(dtype)


def pad_or_trim(audio: torch.Tensor, length: int = 480000) -> torch.Tensor:
    """Zero-pad or cut the last dimension of ``audio`` to ``length`` samples (30 s at 16 kHz)."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - n))


def log_mel_spectrogram(audio: torch.Tensor, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160,
                        sampling_rate: int = 16000, filters: torch.Tensor | None = None,
                        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Whisper's log-mel features of ``audio`` ``(N,)`` or ``(B, N)`` (16 kHz samples, already
    padded or trimmed: :func:`pad_or_trim`). Returns float32 ``(B, n_mels, N // hop_length)``
    (a 1-D input gives ``B = 1``). The dynamic range is clipped per example, as Whisper does
    for each 30-second window. ``filters``: a precomputed :func:`mel_filter_bank`; ``dtype``:
    the precision of the computation."""
    if not isinstance(audio, torch.Tensor):
        audio = torch.as_tensor(audio)
    if audio.dim() not in (1, 2) or not (audio.is_floating_point() or audio.dtype in (torch.int16, torch.int32)):
        raise InputError(f"audio must be samples (N,) or (batch, N) of floats, got {audio.dtype} {tuple(audio.shape)}")
    if audio.shape[-1] <= n_fft // 2:
        raise InputError(f"audio needs more than n_fft // 2 = {n_fft // 2} samples (the reflection padding of "
                         f"the first window), got {audio.shape[-1]}")
    audio = audio.reshape(-1, audio.shape[-1]).to(dtype)
    window = torch.hann_window(n_fft, periodic=True, dtype=dtype, device=audio.device)
    stft = torch.stft(audio, n_fft, hop_length, window=window, center=True, pad_mode="reflect",
                      return_complex=True)  # (B, n_fft // 2 + 1, N // hop + 1)
    power = stft[..., :-1].abs() ** 2  # Whisper drops the last frame: N // hop frames
    if filters is None:
        filters = mel_filter_bank(n_fft // 2 + 1, n_mels, sampling_rate)
    mel = filters.to(dtype=dtype, device=audio.device).T @ power  # (B, n_mels, frames)
    log_spec = mel.clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)  # 80 dB below the peak
    return ((log_spec + 4.0) / 4.0).float()


@dataclass(frozen=True)
class WhisperFeatureExtractor:
    """Audio to Whisper's ``input_features``, as Hugging Face's ``WhisperFeatureExtractor``:
    each waveform padded with silence (or cut) to ``chunk_length`` seconds, then
    :func:`log_mel_spectrogram`. ``extractor(audio) -> (B, feature_size, chunk_length · sampling_rate / hop_length)``.

    ``from_pretrained(dir)`` reads a checkpoint's ``preprocessor_config.json``.
    """

    feature_size: int = 80  # mel bins
    sampling_rate: int = 16000
    hop_length: int = 160
    n_fft: int = 400
    chunk_length: int = 30  # seconds per window
    padding_value: float = 0.0

    def __post_init__(self):
        for name in ("feature_size", "sampling_rate", "hop_length", "n_fft", "chunk_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"WhisperFeatureExtractor.{name} must be a positive int, got {value!r}")

    @property
    def n_samples(self) -> int:
        return self.chunk_length * self.sampling_rate

    @classmethod
    def from_pretrained(cls, path: str | Path) -> WhisperFeatureExtractor:
        """The settings of ``path/preprocessor_config.json`` (Hugging Face's file)."""
        from attnkit.interop.files import read_json

        d = read_json(Path(path) / "preprocessor_config.json")
        if not isinstance(d, dict):
            raise ConfigError(f"{path}/preprocessor_config.json must hold a JSON object")
        if d.get("dither", 0.0) != 0.0:
            raise ConfigError(f"{path}/preprocessor_config.json: dither={d['dither']} is not supported (needs 0.0)")
        return cls(**{k: d[k] for k in ("feature_size", "sampling_rate", "hop_length", "n_fft", "chunk_length",
                                        "padding_value") if k in d})

    def __call__(self, audio: torch.Tensor | Sequence, sampling_rate: int | None = None) -> torch.Tensor:
        """``audio``: one waveform ``(N,)``, a batch ``(B, N)``, or a list of waveforms of any
        lengths (floats at ``sampling_rate``, which must be the extractor's: resample first)."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise InputError(f"audio sampled at {sampling_rate} Hz; the model needs {self.sampling_rate} Hz: "
                             "resample it")
        if isinstance(audio, torch.Tensor) and audio.dim() in (1, 2):
            waves = list(audio.reshape(-1, audio.shape[-1]))
        elif isinstance(audio, (list, tuple)) and audio and not isinstance(audio[0], (int, float)):
            waves = [torch.as_tensor(w) for w in audio]
        else:
            waves = [torch.as_tensor(audio)]
        if any(w.dim() != 1 or w.numel() == 0 for w in waves):
            shapes = [tuple(w.shape) for w in waves]
            raise InputError(f"each waveform must be non-empty and 1-D (samples), got shapes {shapes}")
        n = self.n_samples
        batch = torch.full((len(waves), n), self.padding_value, dtype=torch.float64)
        for row, w in zip(batch, waves):
            w = w[:n]
            row[: w.numel()] = w.to(torch.float64)
        filters = mel_filter_bank(self.n_fft // 2 + 1, self.feature_size, self.sampling_rate)
        return log_mel_spectrogram(batch, self.feature_size, self.n_fft, self.hop_length, self.sampling_rate, filters)
