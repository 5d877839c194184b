"""Transcribe audio with a Whisper model: waveforms of any length and sampling rate in, text
out. Each waveform is resampled to the model's 16 kHz, cut into windows of the model's length
(30 s for the released checkpoints; the last one padded with silence), turned into log-mel
features, and decoded from Whisper's prompt (Radford et al. 2022 §2.3):
``<|startoftranscript|>``, the language (given, or detected per window as Whisper does), the
task, ``<|notimestamps|>``, for checkpoints whose generation config has those tokens, else the
start token alone. The windows' texts are joined with spaces.

Without timestamps this is the simple form of long-form transcription: windows are cut at fixed
times, so a word that straddles a boundary may be lost or doubled. With ``return_timestamps``
it is Whisper's own sequential algorithm (:func:`long_form_segments`): windows decoded under
the timestamp rules (:class:`WhisperTimestamps`, a logits processor), each starting where the
last closed segment ended, and the text comes in timed chunks.
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
            raise InputError("this checkpoint has no timestamp tokens (no no_timestamps_token_id in its generation "
                             "config): transcribe it without timestamps")
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


FRAME_SECONDS = 0.01  # one log-mel frame: hop 160 at 16 kHz
FRAMES_PER_TIMESTAMP = round(TIME_PRECISION / FRAME_SECONDS)


def split_segments(tokens: list[int], timestamp_begin: int, frames: int) -> tuple[list[tuple[int, int, list[int]]], int]:
    """Whisper's reading of one window's new tokens (EOS cut off) in the sequential algorithm
    (the ``openai/whisper`` transcribe loop; Hugging Face's ``_retrieve_segment``): the segments
    ``(start, end, tokens)`` closed by consecutive timestamps (start and end in timestamp steps
    from the window's start) and how many frames the window moves on. A window ending in a
    lone timestamp (nothing said after it) or without closed segments moves on by all its
    ``frames``; otherwise it moves to the last closed segment's end, so the unfinished speech
    after it is decoded again at the start of the next window."""
    is_time = [t >= timestamp_begin for t in tokens]
    single_ending = is_time[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_time[i] and is_time[i + 1]]
    if not cuts:  # one segment: to the last timestamp, or to the end of the window
        times = [t for t, timed in zip(tokens, is_time) if timed]
        end = times[-1] - timestamp_begin if times and times[-1] != timestamp_begin else frames // FRAMES_PER_TIMESTAMP
        return [(0, end, tokens)], frames
    if single_ending:
        cuts.append(len(tokens))
    else:
        cuts[-1] += 1  # the last closed segment keeps both its timestamps
    segments, last = [], 0
    for k, cut in enumerate(cuts):
        piece = tokens[last:cut]
        end = piece[-1] if k < len(cuts) - 1 or single_ending else piece[-2]
        segments.append((piece[0] - timestamp_begin, end - timestamp_begin, piece))
        last = cut
    if single_ending:
        return segments, frames
    return segments, (tokens[last - 2] - timestamp_begin) * FRAMES_PER_TIMESTAMP


def long_form_segments(model, features: torch.Tensor, language: str | None = None, task: str | None = None,
                       num_beams: int = 1, max_new_tokens: int | None = None) -> list[tuple[float, float, list[int]]]:
    """Whisper's long-form algorithm (Radford et al. 2022 §4.5; Hugging Face's long-form
    ``generate(return_timestamps=True)``) over the log-mel ``features`` ``(1, n_mels, frames)``
    of a whole waveform: a window of ``2 × max_source_positions`` frames at ``seek`` (zero-padded
    at the end) is decoded with timestamps, its closed segments are kept, and ``seek`` moves to
    the last one's end (:func:`split_segments`). Returns ``[(start s, end s, tokens), ...]``,
    each segment's tokens with its timestamps."""
    import torch.nn.functional as F

    c = model.config
    frames_per_window = 2 * c.max_source_positions
    total = features.shape[-1]
    segments, seek = [], 0
    while seek < total:
        frames = min(frames_per_window, total - seek)
        window = F.pad(features[:, :, seek:seek + frames], (0, frames_per_window - frames))
        prompt = _prompts(model, window, language, task, timestamps=True)
        P = prompt.shape[1]
        rules = WhisperTimestamps.for_model(model, P)
        room = c.max_target_positions - P + 1
        out = model.generate(window, decoder_input_ids=prompt, num_beams=num_beams, do_sample=False,
                             max_new_tokens=min(max_new_tokens or room, room), logits_processor=[rules])[0, P:].tolist()
        tokens = out[:out.index(rules.eos)] if rules.eos in out else out
        found, moved = split_segments(tokens, rules.timestamp_begin, frames) if tokens else ([], frames)
        offset = seek * FRAME_SECONDS
        segments += [(offset + start * TIME_PRECISION, offset + end * TIME_PRECISION, piece) for start, end, piece in found]
        seek += max(moved, 1)  # a window that closes a segment at 0.00 still moves on
    return segments


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
        return_timestamps: transcribe with Whisper's sequential long-form algorithm
            (:func:`long_form_segments`: timestamp tokens, each window starting where the last
            closed segment ended; ``batch_size`` is not used) and return, per waveform,
            ``{"text", "chunks": [{"timestamp": (start, end), "text"}]}`` (Hugging Face's
            speech-recognition pipeline's form), times in seconds from the waveform's start.
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
    if return_timestamps:  # Whisper's sequential algorithm, one waveform at a time
        results = []
        for wave in tqdm(waves, desc="transcribe", unit="waveform", disable=not show_progress):
            wave = resample(wave.float(), sampling_rate, SAMPLING_RATE)
            if wave.numel() < c.n_samples:  # at least one window, as the fixed-window path
                wave = pad_or_trim(wave, c.n_samples)
            features = log_mel_spectrogram(wave, n_mels=c.num_mel_bins).to(model.device)  # the whole waveform
            timed, first_time = [], WhisperTimestamps.for_model(model, 0).timestamp_begin
            for start, end, tokens in long_form_segments(model, features, language, task, num_beams, max_new_tokens):
                text = tokenizer.decode([t for t in tokens if t < first_time], skip_special_tokens=True).strip()
                if text:
                    timed.append({"timestamp": (round(start, 2), round(end, 2)), "text": text})
            results.append({"text": " ".join(chunk["text"] for chunk in timed), "chunks": timed})
        return results
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
