"""Synthetic speech: English read aloud by eSpeak NG (Debian's ``espeak-ng``), for training and
checking speech recognisers with no recordings at hand.

:func:`speak` turns a text into 16 kHz samples with a chosen voice, speed and pitch. The
built-in task, :func:`spoken_numbers`, reads numbers aloud in voices, speeds and pitches drawn at
random ("forty-seven", in a Scottish voice at 190 words per minute) with their digits ("47") as
the transcript: a recogniser has to hear the words, and to put the tens before the units even
where English says them the other way round ("seventeen").

eSpeak NG is a formant synthesiser, so its speech is clean and robotic: a model trained on it
learns the task, not real speech.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attnkit.audio.wav import read_wav, resample
from attnkit.errors import DataError

# English voices of espeak-ng 1.51 and voice variants (speakers: male, female, croaky, ...).
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak")


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("speech synthesis needs eSpeak NG, which is not installed: "
                        "`apt-get install espeak-ng` (Debian, Ubuntu) or `brew install espeak-ng` (macOS)")
    return exe


def speak(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50,
          sampling_rate: int = 16000) -> torch.Tensor:
    """``text`` read aloud by espeak-ng: float32 samples ``(N,)`` at ``sampling_rate`` Hz.

    ``voice``: an espeak-ng voice, optionally with a variant (``"en-gb+f3"``); ``speed`` in words
    per minute (80-450); ``pitch`` 0-99. The text goes to espeak-ng on its standard input, never
    on its command line."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"speak needs a non-empty text, got {text!r}")
    if not 80 <= speed <= 450 or not 0 <= pitch <= 99:
        raise DataError(f"speed must be 80-450 words per minute and pitch 0-99, got {speed} and {pitch}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        done = subprocess.run([_espeak(), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                               "--stdin"], input=text.encode(), capture_output=True, check=False)
        if done.returncode != 0 or not path.is_file():
            message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            raise DataError(f"espeak-ng could not speak with voice {voice!r}: {message}")
        audio, rate = read_wav(path)
    return resample(audio, rate, sampling_rate)


def spoken_numbers(numbers: Sequence[int], seed: int = 0, sampling_rate: int = 16000,
                   voices: Sequence[str] = VOICES, variants: Sequence[str] = VARIANTS,
                   speeds: tuple[int, int] = (130, 220), pitches: tuple[int, int] = (25, 75),
                   show_progress: bool = False) -> list[tuple[torch.Tensor, str]]:
    """The built-in speech task: ``[(audio (N,), "47"), ...]``, each number read aloud as English
    words ("forty-seven") by espeak-ng in a voice, variant, speed and pitch drawn from ``seed``.
    Pass a number more than once for several readings of it; the same arguments always give the
    same audio. Works offline; ``show_progress`` draws a progress bar (on stderr)."""
    from attnkit.data.translation import english_number

    g = torch.Generator().manual_seed(seed)

    def draw(options: Sequence) -> object:
        return options[int(torch.randint(len(options), (), generator=g))]

    out = []
    for n in tqdm(numbers, desc="speak", unit="utterance", disable=not show_progress):
        voice = f"{draw(voices)}+{draw(variants)}"
        speed = int(torch.randint(speeds[0], speeds[1] + 1, (), generator=g))
        pitch = int(torch.randint(pitches[0], pitches[1] + 1, (), generator=g))
        out.append((speak(english_number(n), voice, speed, pitch, sampling_rate), str(n)))
    return out


def read_transcribed_audio(path: str | Path) -> list[tuple[torch.Tensor, str]]:
    """``[(16 kHz audio, transcript), ...]`` from a TSV of ``audio.wav<TAB>transcript`` lines, the
    paths relative to the TSV's folder (any sampling rate: resampled)."""
    from attnkit.data.translation import read_tsv

    path = Path(path)
    out = []
    for audio_path, transcript in read_tsv(path):
        audio, rate = read_wav(path.parent / audio_path)
        out.append((resample(audio, rate, 16000), transcript))
    return out
