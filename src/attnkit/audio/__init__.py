"""attnkit.audio: the log-mel front end of speech models (Whisper's, Radford et al. 2022 §2.2), WAV
files and resampling."""

from attnkit.audio.features import (
    WhisperFeatureExtractor,
    hertz_to_mel,
    log_mel_spectrogram,
    mel_filter_bank,
    mel_to_hertz,
    pad_or_trim,
)
from attnkit.audio.wav import read_wav, resample

__all__ = ["WhisperFeatureExtractor", "hertz_to_mel", "log_mel_spectrogram", "mel_filter_bank", "mel_to_hertz",
           "pad_or_trim", "read_wav", "resample"]
