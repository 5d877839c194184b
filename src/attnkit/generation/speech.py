"""Transcribe audio with a Whisper model: waveforms of any length and sampling rate in, text
out. Each waveform is resampled to the model's 16 kHz, cut into windows of the model's length
(30 s for the released checkpoints; the last one padded with silence), turned into log-mel
features, and decoded from Whisper's prompt (Radford et al. 2022 §2.3):
``<|startoftranscript|>``, the language (given, or detected per window as Whisper does), the
task, ``<|notimestamps|>``, for checkpoints whose generation config has those tokens, else the
start token alone. The windows' texts are joined with spaces.

This is the simple form of long-form transcription: windows are cut at fixed times, so a word
that straddles a boundary may be lost or doubled; Whisper's own sequential algorithm (which
moves the window by the predicted timestamps) is not reimplemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from attnkit.audio import log_mel_spectrogram, pad_or_trim, resample
from attnkit.errors import InputError

SAMPLING_RATE = 16000


def whisper_prompt(model, language: str | None = None, task: str | None = None, batch_size: int = 1) -> torch.Tensor:
    """``(batch_size, P)``: the decoder prompt ``transcribe`` decodes from (and that the speech
    task's labels start with): for a checkpoint whose generation config has language tables,
    ``<|startoftranscript|>``, the language if given, the task (``"transcribe"`` by default),
    ``<|notimestamps|>``; for one without (English-only or custom), the start token and
    ``<|notimestamps|>`` where it has one."""
    gen = model.generation_config.other
    if not isinstance(gen.get("lang_to_id"), dict):  # English-only or custom: no language and task tokens
        if language is not None or task is not None:
            raise InputError("this checkpoint has no language and task tokens (no lang_to_id in its generation "
                             "config): use it without a language and task")
        timestamps = not isinstance(gen.get("no_timestamps_token_id"), int)
        return model.decoder_prompt(batch_size=batch_size, timestamps=timestamps)
    return model.decoder_prompt(language, task or "transcribe", batch_size=batch_size)


def _prompts(model, features: torch.Tensor, language: str | None, task: str | None) -> torch.Tensor:
    """``(B, P)`` decoder prompts for ``features`` (one per window): :func:`whisper_prompt`, with
    the language detected window by window when a multilingual checkpoint is given none."""
    prompt = whisper_prompt(model, language, task, batch_size=features.shape[0])
    if language is None and isinstance(model.generation_config.other.get("lang_to_id"), dict):
        prompt = torch.cat([prompt[:, :1], model.detect_language(features)[:, None], prompt[:, 1:]], dim=1)
    return prompt


@torch.no_grad()
def transcribe(model, tokenizer, audio: torch.Tensor | Sequence[torch.Tensor], sampling_rate: int = SAMPLING_RATE,
               language: str | None = None, task: str | None = None, num_beams: int = 1,
               max_new_tokens: int | None = None, batch_size: int = 8, show_progress: bool = False) -> list[str]:
    """The text of each waveform in ``audio``: one ``(N,)`` float tensor, a ``(B, N)`` batch, or a list.

    Args:
        model: a :class:`attnkit.Whisper`.
        tokenizer: its tokenizer (``Tokenizer.from_pretrained`` of the checkpoint's ``tokenizer.json``).
        sampling_rate: of ``audio``; resampled to 16 kHz when different.
        language: ``"en"``, ``"de"``, ... (detected per window when None, on multilingual checkpoints).
        task: ``"transcribe"`` (default) or ``"translate"`` (into English).
        num_beams: beam search width (1: greedy).
        max_new_tokens: per window; default: as many as the decoder has positions left.
        batch_size: windows decoded together.
        show_progress: a progress bar over the windows (on stderr).
    Returns one string per waveform.
    """
    if getattr(model, "main_input_name", None) != "input_features":
        raise InputError(f"transcribe needs a speech model (attnkit.Whisper), got a {type(model).__name__}")
    waves = [audio] if isinstance(audio, torch.Tensor) and audio.dim() == 1 else list(audio)
    if not waves or any(not isinstance(w, torch.Tensor) or w.dim() != 1 or not w.is_floating_point()
                        or w.numel() == 0 for w in waves):
        raise InputError("audio must be a non-empty 1-D float tensor of samples, a (batch, samples) tensor, "
                         "or a list of 1-D tensors")
    c = model.config
    window = c.n_samples
    chunks, owner = [], []
    for i, wave in enumerate(waves):
        wave = resample(wave.float(), sampling_rate, SAMPLING_RATE)
        for start in range(0, max(wave.numel(), 1), window):
            chunks.append(pad_or_trim(wave[start:start + window], window))
            owner.append(i)
    texts: list[list[str]] = [[] for _ in waves]
    bar = tqdm(total=len(chunks), desc="transcribe", unit="window", disable=not show_progress)
    for b in range(0, len(chunks), batch_size):
        features = log_mel_spectrogram(torch.stack(chunks[b:b + batch_size]), n_mels=c.num_mel_bins)
        features = features.to(device=model.device)
        prompt = _prompts(model, features, language, task)
        room = c.max_target_positions - prompt.shape[1] + 1
        out = model.generate(features, decoder_input_ids=prompt, num_beams=num_beams, do_sample=False,
                             max_new_tokens=min(max_new_tokens or room, room))
        for row, i in zip(out, owner[b:b + batch_size]):
            texts[i].append(tokenizer.decode(row[prompt.shape[1]:], skip_special_tokens=True).strip())
        bar.update(len(out))
    bar.close()
    return [" ".join(t for t in parts if t) for parts in texts]
