"""Transcribe audio with a Whisper model: waveforms of any length and sampling rate in, text
out. Each waveform is resampled to the model's 16 kHz, cut into windows of the model's length
(30 s for the released checkpoints; the last one padded with silence), turned into log-mel
features, and decoded from Whisper's prompt (Radford et al. 2022 §2.3):
``<|startoftranscript|>``, the language (given, or detected), the task, ``<|notimestamps|>``,
for checkpoints whose generation config has those tokens, else the start token alone. The
windows' texts are joined with spaces.

Without timestamps this is the simple form of long-form transcription: windows are cut at fixed
times (each detecting its own language), so a word that straddles a boundary may be lost or
doubled. With ``return_timestamps`` it is Whisper's own sequential algorithm
(:func:`long_form_segments`): one language for the recording, windows decoded under the
timestamp rules (:class:`WhisperTimestamps`, a logits processor), each starting where the last
closed segment ended, and the text comes in timed chunks; with §4.5's heuristics (a prompt,
conditioning on the previous text, temperature fallback, silence detection) when asked, and word
timestamps from the cross-attention (:mod:`attnkit.generation.alignment`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import NamedTuple

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


class Segment(NamedTuple):
    """One timed segment of :func:`long_form_segments` (``openai/whisper``'s segment fields):
    ``start`` / ``end`` in seconds from the recording's start; ``tokens``, its timestamps
    included; ``seek``, the frame (10 ms) its window started at; the window's ``temperature``,
    ``avg_logprob``, ``compression_ratio`` and ``no_speech_prob`` (None unless
    ``no_speech_threshold`` asked for it: it costs a pass of the encoder); and with
    ``word_timestamps``, ``token_times``: each token's time in seconds from the recording's start
    (:func:`attnkit.generation.alignment.token_timestamps`), else None."""

    start: float
    end: float
    tokens: list[int]
    seek: int
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float | None
    token_times: list[float] | None = None


def compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """How well a window's tokens compress: the length of their bytes (each id in the fewest whole
    bytes that hold ``vocab_size`` ids, little-endian) over the length of those bytes
    zlib-compressed, as Hugging Face's long-form ``generate`` measures it (``openai/whisper``
    compresses the decoded text instead, so its thresholds are higher: 2.4 there, about 1.35
    here). A decoder caught in a loop repeats itself and compresses well."""
    width = int(math.log2(vocab_size) / 8) + 1
    data = b"".join(t.to_bytes(width, "little") for t in tokens)
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _average_logprob(out, new: list[int], temperature: float, beams: int) -> float:
    """The mean log-probability of a window's new tokens (EOS included) under the scores they were
    chosen from, the temperature undone (Hugging Face's ``_retrieve_avg_logprobs``); beam search's
    own length-normalised score for beams."""
    if not new:
        return 0.0
    if beams > 1:
        return float(out.sequences_scores[0])
    scores = torch.stack(out.scores)[:len(new), 0].float() * (temperature if temperature > 0 else 1.0)
    chosen = torch.log_softmax(scores, dim=-1).gather(-1, torch.tensor(new, device=scores.device)[:, None])
    return float(chosen.sum()) / len(new)


@torch.no_grad()
def no_speech_probability(model, features: torch.Tensor, decoder_input_ids: torch.Tensor, start_index: int) -> torch.Tensor:
    """``(B,)``: the probability of ``<|nospeech|>`` (the id before ``<|notimestamps|>``) right
    after ``<|startoftranscript|>`` at ``start_index`` of ``decoder_input_ids``: Whisper's voice
    activity signal (Radford et al. 2022 §4.5), as Hugging Face's ``WhisperNoSpeechDetection``."""
    no_timestamps = model.generation_config.other.get("no_timestamps_token_id")
    if not isinstance(no_timestamps, int):
        raise InputError("this checkpoint has no <|nospeech|> token (no no_timestamps_token_id in its generation "
                         "config): transcribe it without no_speech_threshold")
    logits = model(features, decoder_input_ids=decoder_input_ids[:, :start_index + 1]).logits[:, start_index]
    return logits.float().softmax(dim=-1)[:, no_timestamps - 1]


def whisper_defaults(model) -> dict:
    """:func:`transcribe`'s keyword arguments for Whisper's own defaults (``openai/whisper``'s
    ``transcribe``, which OpenAI's API follows at temperature 0): temperature fallback from 0 in
    steps of 0.2, a compression ratio of 1.35 (of the token ids' bytes, as in ``transformers``;
    ``openai/whisper``'s 2.4 is of the text's), a mean log-probability of -1, silence above a
    ``<|nospeech|>`` probability of 0.6 and conditioning on the previous text (each for the
    checkpoints that have the token it needs: ``<|nospeech|>``, ``<|startofprev|>``)."""
    has = lambda key: isinstance(model.generation_config.other.get(key), int)  # noqa: E731
    return dict(temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=1.35, logprob_threshold=-1.0,
                no_speech_threshold=0.6 if has("no_timestamps_token_id") else None,
                condition_on_prev_tokens=has("prev_sot_token_id"))


def _temperatures(temperature: float | Sequence[float]) -> tuple[float, ...]:
    values = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
    if not values or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf
                         for t in values):
        raise InputError(f"temperature must be a number >= 0 or a non-empty list of them, got {temperature!r}")
    return tuple(float(t) for t in values)


def _room(model, prompt_length: int) -> int:
    """New tokens the decoder has positions for after a ``prompt_length``-token prompt."""
    room = model.config.max_target_positions - prompt_length + 1
    if room < 1:
        raise InputError(f"the decoder prompt is {prompt_length} tokens: no room left in the model's "
                         f"{model.config.max_target_positions} positions (shorten the prompt)")
    return room


def _check_previous(model, ids: Sequence[int]) -> int:
    """The most previous-text tokens ``model`` reads (``openai/whisper``'s ``n_ctx // 2 - 1``);
    an ``InputError`` when ``ids`` (a prompt) has more."""
    most = model.config.max_target_positions // 2 - 1
    if len(ids) > most:
        raise InputError(f"the prompt is {len(ids)} tokens; this model reads at most {most}")
    return most


def _previous_text_token(model) -> int:
    prev = model.generation_config.other.get("prev_sot_token_id")
    if not isinstance(prev, int):
        raise InputError("this checkpoint has no <|startofprev|> token (no prev_sot_token_id in its generation "
                         "config): transcribe it without prompt_ids and condition_on_prev_tokens")
    return prev


def long_form_segments(model, features: torch.Tensor, language: str | None = None, task: str | None = None,
                       num_beams: int = 1, max_new_tokens: int | None = None, *,
                       prompt_ids: Sequence[int] | None = None, condition_on_prev_tokens: bool = False,
                       temperature: float | Sequence[float] = 0.0, compression_ratio_threshold: float | None = None,
                       logprob_threshold: float | None = None, no_speech_threshold: float | None = None,
                       generator: torch.Generator | None = None, word_timestamps: bool = False) -> list[Segment]:
    """Whisper's long-form algorithm (Radford et al. 2022 §4.5; Hugging Face's long-form
    ``generate(return_timestamps=True)``) over the log-mel ``features`` ``(1, n_mels, frames)``
    of a whole waveform: a window of ``2 × max_source_positions`` frames at ``seek`` (zero-padded
    at the end) is decoded with timestamps, its closed segments are kept, and ``seek`` moves to
    the last one's end (:func:`split_segments`). Returns the :class:`Segment` s, in order. A
    multilingual checkpoint given no ``language`` detects it once, from the first window
    (:func:`recording_language`).

    The rest is §4.5's heuristics, with Hugging Face's argument names and semantics:

    - ``prompt_ids``: text tokens (no special tokens) the decoder reads after
      ``<|startofprev|>`` before each window: spellings, names, a style to follow. With
      ``condition_on_prev_tokens`` it is the first "previous text" and drops out as the text grows.
    - ``condition_on_prev_tokens``: each window reads the tokens of the segments before it (the
      last ``max_target_positions // 2 - 1``), except after a window decoded at a temperature of
      0.5 or more, where they may have led the decoder astray.
    - ``temperature``: one value, or the fallback list (Whisper's is ``(0.0, 0.2, 0.4, 0.6, 0.8,
      1.0)``): a window whose tokens compress better than ``compression_ratio_threshold``
      (:func:`compression_ratio`: a loop) or whose mean log-probability is below
      ``logprob_threshold`` is decoded again at the next temperature, by sampling (top-k 50
      unless the generation config says otherwise; beam search only at 0); the last try stands.
    - ``no_speech_threshold`` (needs ``logprob_threshold``): a window whose ``<|nospeech|>``
      probability (:func:`no_speech_probability`) is above it and whose tokens are below
      ``logprob_threshold`` is silence: skipped whole, no segment.

    ``generator``: a ``torch.Generator`` for reproducible sampling. ``word_timestamps``: time
    every token from the alignment heads' cross-attention (``Segment.token_times``; Hugging Face's
    ``return_token_timestamps``), one more decoder pass per window.
    """
    import torch.nn.functional as F

    from attnkit.generation.alignment import alignment_heads, token_timestamps

    c = model.config
    temperatures = _temperatures(temperature)
    if no_speech_threshold is not None and logprob_threshold is None:
        raise InputError("no_speech_threshold needs logprob_threshold: a window is silence when its <|nospeech|> "
                         "probability is above the one and its tokens' mean log-probability below the other")
    prompt_ids = list(prompt_ids or [])
    cut = _check_previous(model, prompt_ids)
    prev = _previous_text_token(model) if prompt_ids or condition_on_prev_tokens else None
    if word_timestamps:
        alignment_heads(model)  # before any work: the checkpoint must name them
    frames_per_window = 2 * c.max_source_positions
    total = features.shape[-1]
    segments, seek = [], 0
    timestamp_begin = WhisperTimestamps.for_model(model, 0).timestamp_begin
    language = language or recording_language(model, features)  # one language for the recording
    previous = list(prompt_ids)  # the last `cut` tokens the next window may read
    condition = True  # False after a window decoded at a high temperature
    while seek < total:
        frames = min(frames_per_window, total - seek)
        window = F.pad(features[:, :, seek:seek + frames], (0, frames_per_window - frames))
        text = previous if condition_on_prev_tokens and condition else prompt_ids
        prefix = [prev] + text if text else []
        prompt = _prompts(model, window, language, task, timestamps=True)
        prompt = torch.cat([prompt.new_tensor(prefix).expand(1, -1), prompt], dim=1)
        P = prompt.shape[1]
        rules, room = WhisperTimestamps.for_model(model, P), _room(model, P)
        speechless = None if no_speech_threshold is None else float(no_speech_probability(model, window, prompt,
                                                                                             len(prefix))[0])
        for t in temperatures:
            beams = num_beams if t == 0 else 1
            out = model.generate(window, decoder_input_ids=prompt, num_beams=beams, do_sample=t > 0,
                                 temperature=t if t > 0 else None, max_new_tokens=min(max_new_tokens or room, room),
                                 logits_processor=[rules], generator=generator, return_dict_in_generate=True,
                                 output_scores=True)
            new = out.sequences[0, P:].tolist()
            if rules.eos in new:  # up to and with the first EOS (beam search pads after it)
                new = new[:new.index(rules.eos) + 1]
            ratio, logprob = compression_ratio(new, c.vocab_size), _average_logprob(out, new, t, beams)
            retry = compression_ratio_threshold is not None and ratio > compression_ratio_threshold
            unlikely = logprob_threshold is not None and logprob < logprob_threshold
            skip = unlikely and speechless is not None and speechless > no_speech_threshold
            if skip or not (retry or unlikely):
                break
        condition = t < 0.5
        if skip:
            seek += frames
            continue
        tokens = new[:-1] if new and new[-1] == rules.eos else new
        found, moved = split_segments(tokens, rules.timestamp_begin, frames) if tokens else ([], frames)
        offset = seek * FRAME_SECONDS
        times = None
        if word_timestamps:
            times = token_timestamps(model, window, out.sequences[:, :P + len(new)], P, [total - seek])[0, P:]
            times = (times.double() + offset).tolist()
        first = 0  # the pieces are consecutive slices of the window's tokens
        for start, end, piece in found:
            segments.append(Segment(offset + start * TIME_PRECISION, offset + end * TIME_PRECISION, piece, seek, t,
                                    logprob, ratio, speechless, times and times[first:first + len(piece)]))
            first += len(piece)
        for piece in (piece for _, _, piece in found):  # a closed segment's second timestamp starts the next: once
            previous += piece[:-1] if len(piece) > 2 and piece[-2] >= timestamp_begin else piece
        del previous[:-cut]
        seek += max(moved, 1)  # a window that closes a segment at 0.00 still moves on
    return segments


def recording_language(model, features: torch.Tensor) -> str | None:
    """The language token (``"<|de|>"``) of a whole recording's log-mel ``features`` ``(1,
    n_mels, frames)``, detected from its first window as ``openai/whisper``'s ``transcribe`` and
    Hugging Face's long-form ``generate`` do; None for a checkpoint without language tokens."""
    import torch.nn.functional as F

    table = model.generation_config.other.get("lang_to_id")
    if not isinstance(table, dict):
        return None
    frames = model.config.n_frames
    first = F.pad(features[:, :, :frames], (0, max(0, frames - features.shape[-1])))
    detected = int(model.detect_language(first)[0])
    return next(token for token, i in table.items() if i == detected)


def _prompts(model, features: torch.Tensor, language: str | None, task: str | None,
             timestamps: bool = False) -> torch.Tensor:
    """``(B, P)`` decoder prompts for ``features`` (one per window): :func:`whisper_prompt`, with
    the language detected window by window when a multilingual checkpoint is given none."""
    prompt = whisper_prompt(model, language, task, batch_size=features.shape[0], timestamps=timestamps)
    if language is None and isinstance(model.generation_config.other.get("lang_to_id"), dict):
        prompt = torch.cat([prompt[:, :1], model.detect_language(features)[:, None], prompt[:, 1:]], dim=1)
    return prompt


def _text_token(tokenizer, eos: int | None):
    """A predicate: is an id a text token (below Whisper's EOS, not one of the tokenizer's specials)."""
    special = {i for i, token in tokenizer.backend.get_added_tokens_decoder().items() if token.special}
    return lambda i: i not in special and (eos is None or i < eos)


def _segment_words(tokenizer, segment: Segment, is_text) -> list[dict]:
    """The words of a segment's text tokens (``is_text``: :func:`_text_token`), the last ending at
    the time of the token after it (the segment's closing timestamp)."""
    from attnkit.generation.alignment import words

    text = [k for k, token in enumerate(segment.tokens) if is_text(token)]
    if not text:
        return []
    times = segment.token_times
    end = times[text[-1] + 1] if text[-1] + 1 < len(times) else times[-1]
    return words(tokenizer, [segment.tokens[k] for k in text], [times[k] for k in text], end)


def encode_prompt(model, tokenizer, text: str) -> list[int]:
    """The tokens of ``text`` as a Whisper prompt (``transcribe(..., prompt=text)``): ``" " +
    text.strip()`` without special tokens, as Hugging Face's ``WhisperProcessor.get_prompt_ids``
    (which also puts ``<|startofprev|>`` first; attnkit adds that when it decodes)."""
    _previous_text_token(model)  # the prompt follows <|startofprev|>
    ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False)
    is_text = _text_token(tokenizer, model.config.eos_token_id)  # Whisper's special and timestamp tokens come after EOS
    if not all(is_text(i) for i in ids):
        raise InputError(f"the prompt {text!r} contains special tokens; give it plain text")
    _check_previous(model, ids)
    return ids


@torch.no_grad()
def transcribe(model, tokenizer, audio: torch.Tensor | Sequence[torch.Tensor], sampling_rate: int = SAMPLING_RATE,
               language: str | None = None, task: str | None = None, num_beams: int = 1,
               max_new_tokens: int | None = None, batch_size: int = 8, show_progress: bool = False,
               return_timestamps: bool | str = False, prompt: str | None = None, temperature: float | Sequence[float] = 0.0,
               generator: torch.Generator | None = None, condition_on_prev_tokens: bool = False,
               compression_ratio_threshold: float | None = None, logprob_threshold: float | None = None,
               no_speech_threshold: float | None = None) -> list[str] | list[dict]:
    """The text of each waveform in ``audio``: one ``(N,)`` float tensor, a ``(B, N)`` batch, or a list.

    Args:
        model: a :class:`attnkit.Whisper`.
        tokenizer: its tokenizer (``Tokenizer.from_pretrained`` of the checkpoint's ``tokenizer.json``).
        sampling_rate: of ``audio``; resampled to 16 kHz when different.
        language: ``"en"``, ``"de"``, ... (detected when None, on multilingual checkpoints: per
            window in fixed windows, from the first window for the whole recording in the
            sequential algorithm).
        task: ``"transcribe"`` (default) or ``"translate"`` (into English).
        num_beams: beam search width (1: greedy).
        max_new_tokens: per window; default: as many as the decoder has positions left.
        batch_size: windows decoded together.
        show_progress: a progress bar over the windows (on stderr).
        return_timestamps: transcribe with Whisper's sequential long-form algorithm
            (:func:`long_form_segments`: timestamp tokens, each window starting where the last
            closed segment ended; ``batch_size`` is not used) and return, per waveform,
            ``{"text", "chunks": [{"timestamp": (start, end), "text"}], "segments"}``: the chunks
            are Hugging Face's speech-recognition pipeline's form, times in seconds from the
            waveform's start; the segments ``openai/whisper``'s (``id``, ``text`` and the
            :class:`Segment` fields), for the segments with text; ``"language"``, the code given
            or detected from the first window (None for checkpoints without languages). ``"word"``: the chunks are
            words (the pipeline's ``return_timestamps="word"``, without the leading space) and
            each segment has ``"words"`` (``{"word", "start", "end", "tokens"}``,
            :func:`attnkit.generation.alignment.words`), timed from the checkpoint's
            ``alignment_heads``.
        prompt: text the decoder reads before each window (:func:`encode_prompt`): names, spellings,
            a style of punctuation.
        temperature: sampling temperature (0: greedy or beam search); a list is Whisper's
            temperature fallback (with ``compression_ratio_threshold`` / ``logprob_threshold``).
        generator: a ``torch.Generator`` for reproducible sampling.
        condition_on_prev_tokens, compression_ratio_threshold, logprob_threshold, no_speech_threshold:
            Whisper's long-form heuristics (:func:`long_form_segments`); setting any of them, or a
            list of temperatures, decodes with the sequential algorithm, as ``return_timestamps`` does.
    Returns one string per waveform (a dict with ``return_timestamps``).
    """
    if getattr(model, "main_input_name", None) != "input_features":
        raise InputError(f"transcribe needs a speech model (attnkit.Whisper), got a {type(model).__name__}")
    waves = [audio] if isinstance(audio, torch.Tensor) and audio.dim() == 1 else list(audio)
    if not waves or any(not isinstance(w, torch.Tensor) or w.dim() != 1 or not w.is_floating_point()
                        or w.numel() == 0 for w in waves):
        raise InputError("audio must be a non-empty 1-D float tensor of samples, a (batch, samples) tensor, "
                         "or a list of 1-D tensors")
    if return_timestamps not in (False, True, "segment", "word"):
        raise InputError(f"return_timestamps must be False, True (or 'segment') or 'word', got {return_timestamps!r}")
    by_word = return_timestamps == "word"
    is_text = _text_token(tokenizer, model.config.eos_token_id) if by_word else None  # once, not per segment
    c = model.config
    temperatures = _temperatures(temperature)
    text_prompt = encode_prompt(model, tokenizer, prompt) if prompt else []
    long_form = dict(condition_on_prev_tokens=condition_on_prev_tokens, logprob_threshold=logprob_threshold,
                     compression_ratio_threshold=compression_ratio_threshold, no_speech_threshold=no_speech_threshold)
    heuristics = [name for name, value in long_form.items() if value not in (None, False)]
    if return_timestamps or heuristics or len(temperatures) > 1:  # Whisper's sequential algorithm, one waveform at a time
        if not isinstance(model.generation_config.other.get("no_timestamps_token_id"), int):
            raise InputError("this checkpoint has no timestamp tokens (no no_timestamps_token_id in its generation "
                             f"config): transcribe it without timestamps{', ' + ', '.join(heuristics) if heuristics else ''}"
                             f"{' and a list of temperatures' if len(temperatures) > 1 else ''}")
        results = []
        for wave in tqdm(waves, desc="transcribe", unit="waveform", disable=not show_progress):
            wave = resample(wave.float(), sampling_rate, SAMPLING_RATE)
            if wave.numel() < c.n_samples:  # at least one window, as the fixed-window path
                wave = pad_or_trim(wave, c.n_samples)
            features = log_mel_spectrogram(wave, n_mels=c.num_mel_bins).to(model.device)  # the whole waveform
            spoken = language or recording_language(model, features)
            timed, first_time = [], WhisperTimestamps.for_model(model, 0).timestamp_begin  # segments with text
            for segment in long_form_segments(model, features, spoken, task, num_beams, max_new_tokens,
                                              prompt_ids=text_prompt, temperature=temperatures, generator=generator,
                                              word_timestamps=by_word, **long_form):
                text = tokenizer.decode([t for t in segment.tokens if t < first_time], skip_special_tokens=True).strip()
                if text:
                    timed.append(dict(id=len(timed), **segment._asdict(), text=text))
                    if by_word:
                        timed[-1]["words"] = _segment_words(tokenizer, segment, is_text)
            text = " ".join(segment["text"] for segment in timed)
            if by_word:
                chunks = [{"timestamp": (w["start"], w["end"]), "text": w["word"]} for s in timed for w in s["words"]]
            else:
                chunks = [{"timestamp": (round(s["start"], 2), round(s["end"], 2)), "text": s["text"]} for s in timed]
            code = None if spoken is None else spoken.removeprefix("<|").removesuffix("|>")
            results.append(dict(text=text, chunks=chunks, segments=timed, language=code) if return_timestamps else text)
        return results
    window = c.n_samples
    chunks, owner = [], []
    for i, wave in enumerate(waves):
        wave = resample(wave.float(), sampling_rate, SAMPLING_RATE)
        for start in range(0, max(wave.numel(), 1), window):
            chunks.append(pad_or_trim(wave[start:start + window], window))
            owner.append(i)
    prefix = [_previous_text_token(model)] + text_prompt if text_prompt else []
    texts: list[list[str]] = [[] for _ in waves]
    bar = tqdm(total=len(chunks), desc="transcribe", unit="window", disable=not show_progress)
    t = temperatures[0]
    for b in range(0, len(chunks), batch_size):
        features = log_mel_spectrogram(torch.stack(chunks[b:b + batch_size]), n_mels=c.num_mel_bins)
        features = features.to(device=model.device)
        prompt_tokens = _prompts(model, features, language, task)
        prompt_tokens = torch.cat([prompt_tokens.new_tensor(prefix).expand(len(features), -1), prompt_tokens], dim=1)
        room = _room(model, prompt_tokens.shape[1])
        out = model.generate(features, decoder_input_ids=prompt_tokens, num_beams=num_beams if t == 0 else 1,
                             do_sample=t > 0, temperature=t if t > 0 else None, generator=generator,
                             max_new_tokens=min(max_new_tokens or room, room))
        for row, i in zip(out, owner[b:b + batch_size]):
            texts[i].append(tokenizer.decode(row[prompt_tokens.shape[1]:], skip_special_tokens=True).strip())
        bar.update(len(out))
    bar.close()
    return [" ".join(part for part in parts if part) for parts in texts]
