"""The log-mel front end against transformers' ``WhisperFeatureExtractor`` (both its numpy
float64 and its torch float32 paths) and ``mel_filter_bank`` on the same waveforms."""

import json

import numpy as np
import pytest
import torch

from attnkit import ConfigError, InputError
from attnkit.audio import (
    WhisperFeatureExtractor,
    hertz_to_mel,
    log_mel_spectrogram,
    mel_filter_bank,
    mel_to_hertz,
    pad_or_trim,
)

transformers = pytest.importorskip("transformers")
from transformers.audio_utils import mel_filter_bank as hf_mel_filter_bank  # noqa: E402


@pytest.mark.parametrize("n_fft,n_mels", [(400, 80), (400, 128), (512, 40)])
def test_mel_filter_bank_equals_transformers_slaney(n_fft, n_mels):
    ours = mel_filter_bank(n_fft // 2 + 1, n_mels, 16000)
    theirs = hf_mel_filter_bank(n_fft // 2 + 1, n_mels, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    assert np.abs(ours.numpy() - theirs).max() < 1e-12


def test_mel_scale_round_trips_and_is_linear_below_1khz():
    hz = torch.tensor([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hertz(hertz_to_mel(hz)), hz)
    assert hertz_to_mel(torch.tensor([600.0], dtype=torch.float64)).item() == pytest.approx(9.0)  # 3f / 200
    assert hertz_to_mel(torch.tensor([1000.0 * 6.4], dtype=torch.float64)).item() == pytest.approx(15.0 + 27.0)


def waveforms():
    """A tone in noise (3 s, padded with silence) and noise longer than 30 s (trimmed)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return [tone, (0.1 * rng.standard_normal(16000 * 31)).astype(np.float32)]


def test_features_equal_transformers_feature_extractor():
    waves = waveforms()
    hf = transformers.WhisperFeatureExtractor()
    ours = WhisperFeatureExtractor()([torch.from_numpy(w) for w in waves], sampling_rate=16000)
    assert ours.shape == (2, 80, 3000) and ours.dtype == torch.float32
    default = hf(waves, sampling_rate=16000, return_tensors="np").input_features  # its torch float32 path
    assert np.abs(ours.numpy() - default).max() < 1e-4
    padded = np.stack([pad_or_trim(torch.from_numpy(w)).numpy() for w in waves]).astype(np.float64)
    exact = hf._np_extract_fbank_features(padded, "cpu")  # its numpy float64 path
    assert np.abs(ours.numpy() - exact).max() < 1e-5
    # the dynamic range is clipped per example, to 8 (log10) = 2 after the scaling
    assert ours[0].max() - ours[0].min() == pytest.approx(2.0, abs=1e-5)


def test_log_mel_spectrogram_of_one_waveform_and_padding():
    wave = torch.from_numpy(waveforms()[0]).double()
    batch = WhisperFeatureExtractor()(wave)
    assert batch.shape == (1, 80, 3000)
    assert torch.equal(log_mel_spectrogram(pad_or_trim(wave)), batch)
    assert pad_or_trim(torch.ones(10), 4).tolist() == [1.0] * 4
    assert pad_or_trim(torch.ones(2), 4).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert log_mel_spectrogram(torch.zeros(1600), n_mels=8).shape == (1, 8, 10)  # N // hop frames


def test_extractor_reads_a_checkpoints_preprocessor_config(tmp_path):
    transformers.WhisperFeatureExtractor(feature_size=128, chunk_length=10).save_pretrained(tmp_path)
    extractor = WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert (extractor.feature_size, extractor.chunk_length) == (128, 10)
    assert extractor(torch.zeros(100)).shape == (1, 128, 1000)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**config, "dither": 0.1}))
    with pytest.raises(ConfigError, match="dither"):
        WhisperFeatureExtractor.from_pretrained(tmp_path)


def test_bad_audio_is_refused():
    with pytest.raises(InputError, match="resample"):
        WhisperFeatureExtractor()(torch.zeros(100), sampling_rate=8000)
    with pytest.raises(InputError, match="1-D"):
        WhisperFeatureExtractor()([torch.zeros(2, 100)])
    with pytest.raises(InputError, match="samples"):
        log_mel_spectrogram(torch.zeros(2, 3, 1000))
    with pytest.raises(InputError, match="more than"):
        log_mel_spectrogram(torch.zeros(100))
    with pytest.raises(ConfigError, match="hop_length"):
        WhisperFeatureExtractor(hop_length=0)
