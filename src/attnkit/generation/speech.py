"""Transcribe audio with a Whisper model: waveforms of any length and sampling rate in, text
out. Each waveform is resampled to the model's 16 kHz, cut into windows of the model's length
(30 s for the released checkpoints; the last one padded with silence), turned into log-mel
features, and decoded from Whisper's prompt (Radford et al. 2022 §2.3):
``<|startoftranscript|>``, the language (given, or detected per window as Whisper does), the
task, ``<|notimestamps|>``, for checkpoints whose generation config has those tokens, else the
start token alone. The windows' texts are joined with spaces.

With ``return_timestamps`` each window is decoded under Whisper's timestamp rules
(:class:`WhisperTimestamps`, a logits processor) and the text comes in timed chunks.

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


TIME_PRECISION = 0.02  # seconds per timestamp step: the encoder's stride-2 frames of 10 ms


def whisper_prompt(model, language: str | None = None, task: str | None = None, batch_size: int = 1,
                   timestamps: bool = False) -> torch.Tensor:
    """``(batch_size, P)``: the decoder prompt ``transcribe`` decodes from (and that the speech
    task's labels start with): for a checkpoint whose generation config has language tables,
    ``<|startoftranscript|>``, the language if given, the task (``"transcribe"`` by default),
    ``<|notimestamps|>`` unless ``timestamps``; for one without (English-only or custom), the
    start token and ``<|notimestamps|>`` where it has one."""
    gen = model.generation_config.other
    has_no_timestamps = isinstance(gen.get("no_timestamps_token_id"), int)
    if timestamps and not has_no_timestamps:
        raise InputError("this checkpoint has no timestamp tokens (no no_timestamps_token_id in its generation "
                         "config): transcribe it without timestamps")
    if not isinstance(gen.get("lang_to_id"), dict):  # English-only or custom: no language and task tokens
        if language is not None or task is not None:
            raise InputError("this checkpoint has no language and task tokens (no lang_to_id in its generation "
                             "config): use it without a language and task")
        return model.decoder_prompt(batch_size=batch_size, timestamps=timestamps or not has_no_timestamps)
    return model.decoder_prompt(language, task or "transcribe", batch_size=batch_size, timestamps=timestamps)


class WhisperTimestamps:
    """Whisper's rules for timestamp tokens (Radford et al. 2022 §2.3 and the ``openai/whisper``
    decoder; Hugging Face's ``WhisperTimeStampLogitsProcessor``), a logits processor for
    ``generate(..., logits_processor=[...])``. Timestamp tokens are the ids from
    ``no_timestamps_token_id + 1`` up, one per 0.02 s; from ``begin_index`` (the prompt's length):

    - ``<|notimestamps|>`` is never generated;
    - timestamps come in pairs (a segment's end, the next one's start): after a lone timestamp no
      text follows (only another timestamp or EOS), after a pair no third timestamp;
    - they never go back in time, and a new segment does not start where the last one started;
    - the first token is a timestamp, at most ``max_initial_timestamp_index`` steps in;
    - when the timestamps together are likelier than the likeliest text token, a timestamp is next.

    Text tokens are the ids below ``eos_token_id``, as in Whisper's vocabulary."""

    def __init__(self, no_timestamps_token_id: int, eos_token_id: int, begin_index: int,
                 max_initial_timestamp_index: int | None = None):
        self.no_timestamps = no_timestamps_token_id
        self.timestamp_begin = no_timestamps_token_id + 1
        self.eos, self.begin_index, self.max_initial = eos_token_id, begin_index, max_initial_timestamp_index

    @classmethod
    def for_model(cls, model, begin_index: int) -> WhisperTimestamps:
        """The rules for ``model``'s generation config (``no_timestamps_token_id``,
        ``max_initial_timestamp_index``) and EOS."""
        gen = model.generation_config
        no_timestamps = gen.other.get("no_timestamps_token_id")
        if not isinstance(no_timestamps, int):
            raise InputError("the generation config has no no_timestamps_token_id: this checkpoint has no timestamps")
        eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        return cls(no_timestamps, eos, begin_index, gen.other.get("max_initial_timestamp_index"))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        tb = self.timestamp_begin
        scores[:, self.no_timestamps] = float("-inf")
        floors = []  # per row: the smallest timestamp allowed next
        for row, seq in enumerate(input_ids[:, self.begin_index:].tolist()):
            last_was_timestamp = len(seq) >= 1 and seq[-1] >= tb
            penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= tb
            if last_was_timestamp:
                if penultimate_was_timestamp:  # a pair just closed: text next
                    scores[row, tb:] = float("-inf")
                else:  # a segment's end: its pair's start, or EOS
                    scores[row, :self.eos] = float("-inf")
            times = [t for t in seq if t >= tb]
            floor = tb
            if times:  # never back in time; after a pair, not the same start again
                floor = times[-1] if last_was_timestamp and not penultimate_was_timestamp else times[-1] + 1
            floors.append(floor)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        floors = torch.tensor(floors, device=scores.device)[:, None]
        scores.masked_fill_((vocab >= tb) & (vocab < floors), float("-inf"))
        if input_ids.shape[1] == self.begin_index:  # the first token: a timestamp, early in the window
            scores[:, :tb] = float("-inf")
            if self.max_initial is not None:
                scores[:, tb + self.max_initial + 1:] = float("-inf")
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        timestamp_likelier = logprobs[:, tb:].logsumexp(dim=-1) > logprobs[:, :tb].max(dim=-1).values
        scores[:, :tb].masked_fill_(timestamp_likelier[:, None], float("-inf"))
        return scores


def timestamped_chunks(tokens: Sequence[int], tokenizer, timestamp_begin: int, eos_token_id: int,
                       offset: float = 0.0) -> list[dict]:
    """``[{"timestamp": (start, end), "text"}, ...]`` of a window's new tokens: the text between
    each pair of timestamp tokens, times in seconds from ``offset`` (the window's start); text
    after a last lone timestamp ends at None (the window ran out)."""
    chunks, start, text = [], None, []

    def close(end):
        piece = tokenizer.decode(text, skip_special_tokens=True).strip()
        if piece:
            chunks.append({"timestamp": (start, end), "text": piece})

    for token in tokens:
        if token == eos_token_id:
            break
        if token < timestamp_begin:
            text.append(token)
            continue
        time = round(offset + (token - timestamp_begin) * TIME_PRECISION, 2)
        if start is None:
            start = time
        else:
            close(time)
            start, text = None, []
    if text:
        close(None)
    return chunks


def _prompts(model, features: torch.Tensor, language: str | None, task: str | None,
             timestamps: bool = False) -> torch.Tensor:
    """``(B, P)`` decoder prompts for ``features`` (one per window): :func:`whisper_prompt`, with
    the language detected window by window when a multilingual checkpoint is given none."""
    prompt = whisper_prompt(model, language, task, batch_size=features.shape[0], timestamps=timestamps)
    if language is None and isinstance(model.generation_config.other.get("lang_to_id"), dict):
        prompt = torch.cat([prompt[:, :1], model.detect_language(features)[:, None], prompt[:, 1:]], dim=1)
    return prompt


@torch.no_grad()
def transcribe(model, tokenizer, audio: torch.Tensor | Sequence[torch.Tensor], sampling_rate: int = SAMPLING_RATE,
               language: str | None = None, task: str | None = None, num_beams: int = 1,
               max_new_tokens: int | None = None, batch_size: int = 8, show_progress: bool = False,
               return_timestamps: bool = False) -> list[str] | list[dict]:
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
        return_timestamps: decode with Whisper's timestamp tokens (:class:`WhisperTimestamps`)
            and return, per waveform, ``{"text", "chunks": [{"timestamp": (start, end), "text"}]}``
            (Hugging Face's speech-recognition pipeline's form), times in seconds from the
            waveform's start.
    Returns one string per waveform (a dict with ``return_timestamps``).
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
    timed: list[list[dict]] = [[] for _ in waves]
    seen = [0] * len(waves)  # windows of each waveform decoded so far
    bar = tqdm(total=len(chunks), desc="transcribe", unit="window", disable=not show_progress)
    for b in range(0, len(chunks), batch_size):
        features = log_mel_spectrogram(torch.stack(chunks[b:b + batch_size]), n_mels=c.num_mel_bins)
        features = features.to(device=model.device)
        prompt = _prompts(model, features, language, task, timestamps=return_timestamps)
        P = prompt.shape[1]
        room = c.max_target_positions - P + 1
        rules = [WhisperTimestamps.for_model(model, P)] if return_timestamps else None
        out = model.generate(features, decoder_input_ids=prompt, num_beams=num_beams, do_sample=False,
                             max_new_tokens=min(max_new_tokens or room, room), logits_processor=rules)
        for row, i in zip(out, owner[b:b + batch_size]):
            texts[i].append(tokenizer.decode(row[P:], skip_special_tokens=True).strip())
            if return_timestamps:
                timed[i] += timestamped_chunks(row[P:].tolist(), tokenizer, rules[0].timestamp_begin, rules[0].eos,
                                               offset=seen[i] * window / SAMPLING_RATE)
            seen[i] += 1
        bar.update(len(out))
    bar.close()
    joined = [" ".join(t for t in parts if t) for parts in texts]
    if return_timestamps:
        return [{"text": " ".join(chunk["text"] for chunk in chunks), "chunks": chunks} for chunks in timed]
    return joined
