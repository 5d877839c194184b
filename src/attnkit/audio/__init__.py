"""attnkit.audio: the log-mel front end of speech models (Whisper's, Radford et al. 2022 §2.2)."""

from attnkit.audio.features import (
    WhisperFeatureExtractor,
    hertz_to_mel,
    log_mel_spectrogram,
    mel_filter_bank,
    mel_to_hertz,
    pad_or_trim,
)

__all__ = ["WhisperFeatureExtractor", "hertz_to_mel", "log_mel_spectrogram", "mel_filter_bank", "mel_to_hertz",
           "pad_or_trim"]
