"""The ``attnkit`` command. Each subcommand is a thin wrapper over the Python API."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="attnkit: train, load, decode, evaluate and embed with Transformers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """attnkit command line."""
    from attnkit.allocator import keep_freed_memory

    # The command owns its process: glibc keeps freed blocks for reuse instead of faulting them
    # in again (a decoding call's packed weights, a training step's logits); ATTNKIT_MALLOC_TUNING=0: off.
    keep_freed_memory()



# -- training: train / generate / info ----------------------------------------------------------
def _fail_cleanly(fn):
    """Report attnkit's own errors, the file system's (a path that is not a directory, no
    permission, a full disk) and a missing optional package (the message names what to pip
    install) as one line on stderr with exit status 1 (no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from attnkit.errors import AttnkitError

        try:
            return fn(*args, **kwargs)
        except (AttnkitError, OSError, ImportError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICE = typer.Option("auto", "--device", help="cpu, cuda, or auto (CUDA when present)")
DTYPE = typer.Option("fp32", "--dtype", help="weights and compute: fp32, bf16, fp16, auto (the checkpoint's), or "
                                               "int8 / int4 (int8 / int4 linear weights, bf16 elsewhere: faster CPU "
                                               "decoding, approximate)")
QUANTIZED = ("int8", "int4")
MODEL_DIR_ONLY = ("auto", *QUANTIZED)  # --dtype values for the commands that load a model directory


def model_placement(device: str, dtype: str):
    """``(torch.device, torch.dtype)`` of the ``--device`` and ``--dtype`` options."""
    import torch

    from attnkit.errors import InputError
    from attnkit.training.distributed import resolve_device

    if dtype not in DTYPES:
        also = f"; {dtype} is for the commands that load a model directory" if dtype in MODEL_DIR_ONLY else ""
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}{also}")
    return resolve_device(device, option="--device"), getattr(torch, DTYPES[dtype])


def load_model_dir(path: Path, device: str = "cpu", dtype: str = "fp32", tokenizer: bool = True):
    """``(model, tokenizer, directory)`` from a model directory or a training output directory
    (its newest complete checkpoint), on ``device`` in ``dtype`` (the CLI's option values; ``auto``:
    the checkpoint's; ``int8``, ``int4``: bf16 with such linear weights, quantized as they load),
    LoRA adapters folded into the weights (these commands only run the model: the same outputs, no
    adapter cost per token); the tokenizer is None with ``tokenizer=False`` (image models have none)."""
    from attnkit.interop import from_pretrained
    from attnkit.nn.lora import merge_lora
    from attnkit.tokenizers import Tokenizer
    from attnkit.training.checkpoint import resolve_model_dir

    dev, dt = model_placement(device, "bf16" if dtype in MODEL_DIR_ONLY else dtype)
    if dtype == "auto":
        dt = "auto"  # from_pretrained reads it from the checkpoint
    directory = resolve_model_dir(path)
    model = merge_lora(from_pretrained(directory, dtype=dt, device=dev, quantize=dtype if dtype in QUANTIZED else None))
    return model, Tokenizer.from_pretrained(directory) if tokenizer else None, directory


@app.command()
@_fail_cleanly
def train(
    recipe: Path = typer.Argument(..., help="recipe TOML file (see recipes/)"),
    out: Path = typer.Option(..., "--out", help="output directory: metrics.jsonl, checkpoints/step-N/"),
    set_: list[str] = typer.Option([], "--set", help="override a recipe field: section.field=value (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest complete checkpoint in --out"),
) -> None:
    """Train a model from a recipe. Under torchrun every process runs this command."""
    from attnkit.training import run_recipe

    trainer = run_recipe(recipe, out, set_, resume=resume)
    if trainer.info.is_main:
        from attnkit.training.checkpoint import latest_checkpoint

        typer.echo(f"checkpoint: {latest_checkpoint(out)}")


def _constraint(model, tokenizer, json_mode: bool, json_schema: Path | None, regex: str | None):
    """``attnkit generate``'s ``--json`` / ``--json-schema`` / ``--regex``: a
    :class:`~attnkit.generation.constraints.GrammarLogitsProcessor` (for prompt length 0; see its
    ``for_prompt``), or None."""
    import json

    from attnkit.errors import InputError
    from attnkit.generation.constraints import GrammarLogitsProcessor

    given = [name for name, v in (("--json", json_mode), ("--json-schema", json_schema), ("--regex", regex)) if v]
    if not given:
        return None
    if len(given) > 1:
        raise InputError(f"give one of --json, --json-schema and --regex, not {' and '.join(given)}")
    if tokenizer.eos_token_id is None:
        raise InputError(f"{given[0]} needs a tokenizer with an end-of-text token to end the text")
    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(Path(json_schema).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"--json-schema {json_schema}: cannot read a JSON schema from it ({e})") from None
    return GrammarLogitsProcessor(tokenizer, 0, tokenizer.eos_token_id, vocab_size=model.config.vocab_size,
                                  schema=schema, regex=regex)


@app.command()
@_fail_cleanly
def generate(
    path: Path = typer.Argument(..., help="model directory, or a training output directory"),
    prompt: str = typer.Option(..., "--prompt", help="text to continue"),
    max_new_tokens: int = typer.Option(100, "--max-new-tokens"),
    temperature: float = typer.Option(None, "--temperature", help="0 = greedy decoding [default: as the model's "
                                      "generation config says, else (none saved) 0.8]"),
    top_k: int = typer.Option(None, "--top-k", help="sample from the k likeliest tokens [default: the model's "
                              "generation config, else 50 as in Hugging Face; 0 = all]"),
    top_p: float = typer.Option(None, "--top-p", help="sample from the smallest set of tokens with this probability"),
    min_p: float = typer.Option(None, "--min-p", help="sample only tokens at least this fraction as likely as the "
                                "likeliest one"),
    num_beams: int = typer.Option(None, "--num-beams", help="beam search (prints the result at the end) "
                                  "[default: the model's generation config, else 1]"),
    repetition_penalty: float = typer.Option(
        None, "--repetition-penalty", help="> 1 makes tokens already in the text less likely (1.2 is common)"),
    no_repeat_ngram_size: int = typer.Option(None, "--no-repeat-ngram-size", help="no n-gram of this size twice"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    prompt_lookup: int = typer.Option(
        None, "--prompt-lookup", help="check up to this many guessed tokens per step (the tokens that followed the "
        "text's last two tokens before): the same text, faster where it repeats its input"),
    assistant: Path = typer.Option(
        None, "--assistant", help="a smaller model directory with the same vocabulary whose guesses are checked "
        "per step (speculative decoding): greedy, the same text; sampled, the same distribution; faster when it "
        "guesses well"),
    pack_weights: bool = typer.Option(
        None, "--pack-weights/--no-pack-weights", show_default="auto",
        help="decode from oneDNN-packed weights: faster on CPU, one more copy in memory (default: when it pays)"),
    json_mode: bool = typer.Option(False, "--json", help="JSON mode: the text is constrained to a JSON object"),
    json_schema: Path = typer.Option(None, "--json-schema", help="a JSON schema file: the text is constrained to a "
                                     "JSON document it accepts"),
    regex: str = typer.Option(None, "--regex", help="a regular expression (Python's syntax, a subset): the text is "
                              "constrained to a whole match of it"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Continue a prompt, streaming the text as it is generated."""
    import torch

    from attnkit.errors import InputError
    from attnkit.generation.text import TextStream

    if temperature is not None and temperature < 0:
        raise InputError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if num_beams is not None and num_beams < 1:
        raise InputError(f"--num-beams must be >= 1, got {num_beams}")
    model, tokenizer, directory = load_model_dir(path, device, dtype)
    if not hasattr(model, "generation_step") or hasattr(model, "decoder_start_ids"):
        hint = "; use attnkit translate" if hasattr(model, "decoder_start_ids") else ""
        raise InputError(f"attnkit generate continues text with a decoder-only model (GPT); {directory} holds a "
                         f"{type(model).__name__}{hint}")
    gen = model.generation_config
    num_beams = num_beams or gen.num_beams or 1
    if temperature is None and gen != type(gen)():  # decode as the checkpoint's generation config says
        do_sample = None
    else:
        temperature = 0.8 if temperature is None else temperature
        do_sample, temperature = temperature > 0, temperature if temperature > 0 else 1.0
    sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    eos_token_id=tokenizer.eos_token_id, repetition_penalty=repetition_penalty,
                    no_repeat_ngram_size=no_repeat_ngram_size,
                    generator=torch.Generator(model.device).manual_seed(seed),
                    pack_weights="auto" if pack_weights is None else pack_weights,
                    prompt_lookup_num_tokens=prompt_lookup,
                    assistant_model=None if assistant is None else load_model_dir(assistant, device, dtype)[0])
    constraint = _constraint(model, tokenizer, json_mode, json_schema, regex)
    if num_beams > 1:
        ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=model.device)
        if constraint is not None:
            sampling["logits_processor"] = [constraint.for_prompt(ids.shape[1])]
        out = model.generate(ids, max_new_tokens=max_new_tokens, num_beams=num_beams, num_return_sequences=1, **sampling)
        typer.echo(prompt + tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        return
    stream = TextStream(model, tokenizer, prompt, max_new_tokens=max_new_tokens, **sampling)
    if constraint is not None:
        stream.generate_kwargs["logits_processor"] = [constraint.for_prompt(stream.prompt_tokens)]
    pieces = iter(stream)
    typer.echo(prompt + next(pieces, ""), nl=False)  # bad arguments fail here, before anything is printed
    for piece in pieces:
        typer.echo(piece, nl=False)
    typer.echo()


@app.command()
@_fail_cleanly
def chat(
    path: Path = typer.Argument(..., help="an instruction-tuned model directory whose tokenizer has a chat template"),
    system: str = typer.Option(None, "--system", help="a system message that opens the conversation"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="the longest reply, in tokens"),
    temperature: float = typer.Option(0.7, "--temperature", help="sampling temperature; 0 = greedy"),
    top_k: int = typer.Option(None, "--top-k", help="sample from the k likeliest tokens"),
    top_p: float = typer.Option(None, "--top-p", help="sample from the smallest set of tokens with this probability"),
    min_p: float = typer.Option(None, "--min-p", help="sample only tokens at least this fraction as likely as the "
                                "likeliest one"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    prompt_lookup: int = typer.Option(
        None, "--prompt-lookup", help="check up to this many guessed tokens per step (those that followed the text's "
        "last two tokens before): the same text, faster where it repeats its input"),
    pack_weights: bool = typer.Option(
        True, "--pack-weights/--no-pack-weights",
        help="decode from weights packed once for oneDNN for the whole session (bf16 on CPU; when it fits)"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Chat with an instruction-tuned model in the terminal, with its tokenizer's chat template:
    type a message, read the reply as it is generated. /reset forgets the conversation, /exit
    (or the end of the input) quits. The conversation's keys and values stay cached between
    turns (a PromptCache): each turn reads only its new tokens (after /reset, those after the
    system message)."""
    import contextlib

    import torch

    from attnkit.errors import AttnkitError, InputError
    from attnkit.generation import PromptCache, packed_for_decoding
    from attnkit.generation.text import TextStream, end_of_turn_ids

    if temperature < 0:
        raise InputError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    model, tokenizer, directory = load_model_dir(path, device, dtype)
    if not hasattr(model, "generation_step") or hasattr(model, "decoder_start_ids"):
        raise InputError(f"attnkit chat needs a decoder-only model; {directory} holds a {type(model).__name__}")
    if tokenizer.chat_template is None:
        raise InputError(f"{directory}'s tokenizer has no chat template (tokenizer_config.json's chat_template): "
                         "use attnkit generate")
    opening = [{"role": "system", "content": system}] if system else []
    messages = list(opening)
    sampling = dict(do_sample=temperature > 0, temperature=temperature if temperature > 0 else 1.0, top_k=top_k,
                    top_p=top_p, min_p=min_p, generator=torch.Generator(model.device).manual_seed(seed),
                    eos_token_id=end_of_turn_ids(model, tokenizer), max_new_tokens=max_new_tokens,
                    prompt_lookup_num_tokens=prompt_lookup, prompt_cache=PromptCache())
    with contextlib.ExitStack() as session:
        if pack_weights:
            session.enter_context(packed_for_decoding(model))
        while True:
            try:
                text = input("> ").strip()
            except EOFError:
                break
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                messages = list(opening)
                typer.echo("(the conversation is forgotten)")
                continue
            if not text:
                continue
            messages.append({"role": "user", "content": text})
            try:
                ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
                reply = ""
                for piece in TextStream(model, tokenizer, ids, **sampling):
                    typer.echo(piece, nl=False)
                    reply += piece
            except AttnkitError as e:  # the template refused, or the conversation outgrew the model
                messages.pop()
                typer.echo(f"error: {e}", err=True)
                continue
            typer.echo()
            messages.append({"role": "assistant", "content": reply})


@app.command()
@_fail_cleanly
def info(path: Path = typer.Argument(..., help="model directory, or a training output directory")) -> None:
    """Print a model's config, parameter count and training state."""
    import json

    from attnkit.interop import from_pretrained
    from attnkit.training.checkpoint import TRAINER_STATE, read_trainer_state, resolve_model_dir

    directory = resolve_model_dir(path)
    model = from_pretrained(directory)
    typer.echo(f"model: {type(model).__name__} from {directory}")
    typer.echo(f"parameters: {model.num_parameters():,}")
    typer.echo("config: " + json.dumps(model.config.to_dict(), indent=1))
    if (directory / TRAINER_STATE).is_file():
        state = read_trainer_state(directory)
        typer.echo(f"training state: step {state['step']} of {state.get('max_steps')}, "
                   f"world size {state.get('world_size')}")
        typer.echo("last metrics: " + json.dumps(state.get("metrics", {})))
        best = state.get("best")
        if best:
            typer.echo(f"best so far: {best['metric']} {best['value']:.4f} at step {best['step']} "
                       f"(train.best_metric; the model is in OUT/best)")
    else:
        typer.echo("training state: none (not a training checkpoint)")


@app.command()
@_fail_cleanly
def embed(
    model_dir: str = typer.Argument(..., help="model directory with tokenizer.json (or a hub id)"),
    texts: list[str] = typer.Argument(..., help="sentences to embed"),
    normalize: bool = typer.Option(None, "--normalize/--no-normalize",
                                   help="L2-normalise each embedding [default: as a sentence-transformers "
                                        "directory's modules.json says, else normalise]"),
    pooling: str = typer.Option(None, "--pooling", help="mean, cls, max, mean_sqrt_len or lasttoken [default: the "
                                                        "directory's sentence-transformers Pooling, else mean]"),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Print one sentence embedding per line, as a JSON array (mean pooling and L2 normalisation
    unless the directory's sentence-transformers modules say otherwise)."""
    import json

    from attnkit.embeddings import embed as embed_sentences

    dev, dt = model_placement(device, dtype)
    for row in embed_sentences(model_dir, texts, batch_size=batch_size, normalize=normalize, device=dev,
                               dtype=dt, pooling=pooling).tolist():
        typer.echo(json.dumps([round(v, 7) for v in row]))



@app.command()
@_fail_cleanly
def serve(
    path: Path = typer.Argument(..., help="model directory (with tokenizer.json), or a training output directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port"),
    name: str = typer.Option(None, "--name", help="the model's name in responses [default: the directory's name]"),
    max_tokens_limit: int = typer.Option(1024, "--max-tokens-limit", help="the most tokens one completion may ask for"),
    pack_weights: bool = typer.Option(
        True, "--pack-weights/--no-pack-weights",
        help="decode from weights packed once for oneDNN while serving: faster bf16 decoding on CPU, one more "
             "copy of those weights in memory (skipped when it would not fit)"),
    assistant: Path = typer.Option(
        None, "--assistant", help="a smaller model directory with the same vocabulary whose guesses every request "
        "checks (speculative decoding): greedy, the same text; sampled, the same distribution"),
    tool_format: str = typer.Option(
        "auto", "--tool-format", help="how the model writes tool calls for chat requests with 'tools': hermes "
        "(<tool_call>{json}</tool_call>: Qwen2.5, Qwen3), llama3_json, none, or auto (read from the chat template)"),
    embeddings: bool = typer.Option(
        None, "--embeddings/--no-embeddings", show_default="auto",
        help="serve /v1/embeddings with a decoder-only model (an embedding model: its last token's state); default: "
             "when the directory is a sentence-transformers one (modules.json)"),
    max_batch_size: int = typer.Option(
        8, "--max-batch-size", min=1, help="the most sequences decoded together across concurrent requests "
        "(continuous batching, decoder-only models); 1: one request at a time"),
    prefix_cache_mb: int = typer.Option(
        1024, "--prefix-cache-mb", min=0, help="memory for the keys and values of finished requests, reused by later "
        "prompts that start the same way (a chat's next turn reads only its new tokens); 0: none"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Serve a model over HTTP with OpenAI's API: POST /v1/completions, /v1/embeddings or
    /v1/audio/transcriptions and /v1/audio/translations (WAV uploads), by what the model does."""
    import logging

    from attnkit.serve import make_server

    model, tokenizer, directory = load_model_dir(path, device, dtype)
    helper = None if assistant is None else load_model_dir(assistant, device, dtype)[0]
    server = make_server(model, tokenizer, host, port, name or directory.name, max_tokens_limit,
                         pack_weights=pack_weights, assistant=helper,
                         tool_format=None if tool_format == "none" else tool_format,
                         embeddings=(directory / "modules.json").is_file() if embeddings is None else embeddings,
                         max_batch_size=max_batch_size, prefix_cache_bytes=prefix_cache_mb * 2**20)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    endpoints = ", ".join(server.app.health()["endpoints"])
    batching = server.app.batching
    batches = "" if batching is None else (f"; batching up to {batching.max_batch_size} sequences, prefix cache "
                                           f"{batching.prefixes.budget // 2**20} MiB")
    typer.echo(f"serving {type(model).__name__} from {directory} on http://{host}:{server.server_address[1]} "
               f"({endpoints}{batches}); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
@_fail_cleanly
def attention(
    path: Path = typer.Argument(..., help="model directory (with tokenizer.json), or a training output directory"),
    text: str = typer.Argument(..., help="the text the model reads (an encoder-decoder model's source)"),
    out: Path = typer.Option(Path("attention.html"), "--out",
                             help=".html: the interactive viewer (every layer and head); .png/.svg/.pdf: one heat map"),
    target: str = typer.Option(None, "--target", help="encoder-decoder models: the output to look at [default: "
                               "what the model generates]"),
    kind: str = typer.Option(None, "--kind", help="heat maps: self, encoder, decoder or cross [default: self, or cross]"),
    layer: int = typer.Option(-1, "--layer", help="heat maps: the layer (negative counts from the end)"),
    head: int = typer.Option(None, "--head", help="heat maps: the head [default: the mean of the heads]"),
    device: str = DEVICE,
) -> None:
    """Write a model's attention weights for a text as an HTML viewer or a heat-map image."""
    from attnkit.errors import InputError
    from attnkit.viz import attention_html, attention_maps, plot_attention

    model, tokenizer, directory = load_model_dir(path, device)
    maps = attention_maps(model, tokenizer, text, target=target)
    if out.suffix.lower() in (".html", ".htm"):
        attention_html(maps, out, title=f"attention of {directory.name}")
    else:
        kind = kind or ("self" if "self" in maps else "cross")
        if kind not in maps:
            raise InputError(f"--kind must be one of {', '.join(maps)} for {type(model).__name__}, got {kind!r}")
        plot_attention(maps[kind], layer, head, out)
    typer.echo(f"wrote {out}")


@app.command()
@_fail_cleanly
def transcribe(
    path: Path = typer.Argument(..., help="Whisper model directory (with tokenizer.json), or a training output directory"),
    files: list[Path] = typer.Argument(..., help="WAV files (PCM, any sampling rate, mono or stereo)"),
    language: str = typer.Option(None, "--language", help="en, de, ... [default: detected per 30-second window]"),
    task: str = typer.Option(None, "--task", help="transcribe (default) or translate (into English)"),
    num_beams: int = typer.Option(1, "--num-beams", help="beam search width (1: greedy)"),
    timestamps: bool = typer.Option(False, "--timestamps", help="decode with timestamps: one '[start --> end] text' "
                                                                "line per segment, in seconds"),
    word_timestamps: bool = typer.Option(False, "--word-timestamps", help="one '[start --> end] word' line per word "
                                         "(timed from the checkpoint's alignment_heads)"),
    prompt: str = typer.Option(None, "--prompt", help="text the decoder reads before each window: names, spellings, style"),
    condition: bool = typer.Option(False, "--condition-on-previous-text",
                                   help="each window reads the text of the segments before it"),
    temperature: str = typer.Option("0", "--temperature",
                                    help="sampling temperature (0: greedy); a comma-separated list is Whisper's "
                                         "temperature fallback, e.g. 0,0.2,0.4,0.6,0.8,1"),
    compression_ratio_threshold: float = typer.Option(None, "--compression-ratio-threshold",
                                                      help="decode a window again at the next temperature when its "
                                                           "tokens compress better than this (1.35: a loop)"),
    logprob_threshold: float = typer.Option(None, "--logprob-threshold",
                                            help="... or when its tokens' mean log-probability is below this (-1.0)"),
    no_speech_threshold: float = typer.Option(None, "--no-speech-threshold",
                                              help="skip a window as silence when its <|nospeech|> probability is above "
                                                   "this (0.6) and its log-probability below --logprob-threshold"),
    seed: int = typer.Option(None, "--seed", help="random seed for the sampled windows"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Transcribe WAV files with a Whisper model; one line of text per file (with --timestamps,
    one line per timed segment; with --word-timestamps, one per word). The long-form options are Whisper's heuristics (Radford et al.
    2022 §4.5), as in Hugging Face's long-form ``generate``."""
    import sys

    import torch

    from attnkit.audio import read_wav
    from attnkit.errors import InputError
    from attnkit.generation.speech import transcribe as transcribe_audio

    try:
        temperatures = [float(t) for t in temperature.split(",")]
    except ValueError:
        raise InputError(f"--temperature must be a number or comma-separated numbers, got {temperature!r}") from None
    model, tokenizer, _ = load_model_dir(path, device, dtype)
    generator = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    for file in files:
        audio, rate = read_wav(file)
        result = transcribe_audio(model, tokenizer, audio, rate, language=language, task=task, num_beams=num_beams,
                                  show_progress=sys.stderr.isatty(),
                                  return_timestamps="word" if word_timestamps else timestamps, prompt=prompt,
                                  temperature=temperatures[0] if len(temperatures) == 1 else temperatures,
                                  generator=generator, condition_on_prev_tokens=condition,
                                  compression_ratio_threshold=compression_ratio_threshold,
                                  logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold)[0]
        if not (timestamps or word_timestamps):
            typer.echo(result)
            continue
        for chunk in result["chunks"]:
            start, end = chunk["timestamp"]
            typer.echo(f"[{start:.2f} --> {'' if end is None else f'{end:.2f}'}] {chunk['text']}")


@app.command()
@_fail_cleanly
def classify(
    path: Path = typer.Argument(..., help="text classifier directory with tokenizer.json ({Bert,Roberta,DistilBert,Esm}"
                                          "ForSequenceClassification), or a training output directory"),
    texts: list[str] = typer.Argument(..., help="texts to label"),
    top_k: int = typer.Option(1, "--top-k", help="labels per text, best first"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Label texts; one JSON line per text: {"text", "labels": [{"label", "score"}, ...]}."""
    import json

    from attnkit.pipelines import classify as classify_texts

    model, tokenizer, _ = load_model_dir(path, device, dtype)
    results = classify_texts(model, tokenizer, texts, top_k=top_k)
    for text, labels in zip(texts, results):
        typer.echo(json.dumps({"text": text, "labels": labels if top_k > 1 else [labels]}, ensure_ascii=False))


@app.command("classify-image")
@_fail_cleanly
def classify_image(
    path: Path = typer.Argument(..., help="image classifier directory (ViTForImageClassification), or a training "
                                          "output directory; with --labels, a CLIP directory with its tokenizer"),
    files: list[Path] = typer.Argument(..., help="image files (PNG, JPEG, ... anything Pillow reads)"),
    top_k: int = typer.Option(1, "--top-k", help="labels per image, best first"),
    labels: str = typer.Option(None, "--labels", help="comma-separated labels for zero-shot classification with "
                               "an image-text model (CLIP): each written into --template"),
    template: str = typer.Option("This is a photo of {}.", "--template", help="the text each label is written into"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Label image files; one JSON line per file: {"file", "labels": [{"label", "score"}, ...]}.
    Images are prepared by the directory's preprocessor_config.json (else the model's defaults)."""
    import json

    from attnkit.interop import from_pretrained
    from attnkit.pipelines import classify_image as classify
    from attnkit.pipelines import zero_shot_classify_image
    from attnkit.training.checkpoint import resolve_model_dir

    images = [str(f) for f in files]
    if labels is not None:
        model, tokenizer, _ = load_model_dir(path, device, dtype)
        names = [name.strip() for name in labels.split(",") if name.strip()]
        results = [ranked[:top_k] for ranked in zero_shot_classify_image(model, tokenizer, images, names, template)]
    else:
        dev, dt = model_placement(device, dtype)
        results = classify(from_pretrained(resolve_model_dir(path), dtype=dt, device=dev), images, top_k=top_k)
    for file, ranked in zip(files, results):
        typer.echo(json.dumps({"file": str(file), "labels": ranked}))

# -- machine translation: translate / evaluate / average ----------------------------------------
@app.command()
@_fail_cleanly
def translate(
    path: Path = typer.Argument(..., help="model directory, or a training output directory"),
    texts: list[str] = typer.Argument(..., help="source sentences"),
    num_beams: int = typer.Option(4, "--num-beams", help="beam size (the paper: 4)"),
    length_penalty: float = typer.Option(0.6, "--length-penalty", help="GNMT alpha (the paper: 0.6)"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Translate sentences (beam search, max length = input length + 50); one line each."""
    from attnkit.generation.translation import translate as translate_texts

    model, tokenizer, _ = load_model_dir(path, device, dtype)
    for line in translate_texts(model, tokenizer, texts, num_beams=num_beams, length_penalty=length_penalty):
        typer.echo(line)


@app.command()
@_fail_cleanly
def evaluate(
    path: Path = typer.Argument(..., help="model directory, or a training output directory"),
    data: str = typer.Option(..., "--data", help="text-to-text: 'numbers' (built-in test split), a TSV or JSONL file, "
                                                 "or 'SRC_FILE,TGT_FILE'; classifiers: a labelled JSONL/CSV/TSV or "
                                                 "CoNLL file; QA: SQuAD JSON; image classifiers: an image folder"),
    metric: list[str] = typer.Option(None, "--metric", help="text-to-text: bleu (default), chrf or rouge (repeatable)"),
    text_field: str = typer.Option("text", "--text-field", help="classifiers: the text's field"),
    label_field: str = typer.Option("label", "--label-field", help="classifiers: the label's field"),
    pair_field: str = typer.Option(None, "--pair-field", help="classifiers: a second text's field (sentence pairs)"),
    tokenize: str = typer.Option("13a", "--tokenize", help="sacrebleu BLEU tokenizer: 13a, char, intl, none, ..."),
    num_beams: int = typer.Option(4, "--num-beams"),
    length_penalty: float = typer.Option(0.6, "--length-penalty"),
    output: Path = typer.Option(None, "--output", help="also write the translations here, one per line"),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Score a model on a labelled test set. Text-to-text models (translation, summarisation)
    decode it and get sacrebleu's detokenised BLEU / chrF or rouge-score's ROUGE; classifiers,
    QA and image classifiers get the scores their training task logs (accuracy, F1, entity F1,
    SQuAD exact match)."""
    from attnkit.data.translation import load_pairs
    from attnkit.errors import InputError
    from attnkit.generation.translation import translate as translate_texts
    from attnkit.metrics import TEXT_METRICS, require_packages
    from attnkit.metrics.summarization import rouge
    from attnkit.metrics.translation import check_options, score

    model, tokenizer, directory = load_model_dir(path, device, dtype, tokenizer=False)
    if not hasattr(model, "decoder_start_ids"):  # a classifier, QA or image model: its task's scores
        from attnkit.tokenizers import Tokenizer
        from attnkit.training.evaluation import evaluate_model

        if metric:
            raise InputError(f"--metric scores text-to-text models; {directory} holds a {type(model).__name__}, "
                             "scored by its task's metrics")
        needs_tokenizer = getattr(model.config, "model_type", None) != "vit"
        tokenizer = Tokenizer.from_pretrained(directory) if needs_tokenizer else None
        scores = evaluate_model(model, tokenizer, data, text_field, label_field, pair_field)
        typer.echo(f"{directory}: {data}")
        for name, value in scores.items():
            typer.echo(f"{name}: {value:.4f}")
        return
    from attnkit.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_pretrained(directory)
    metric = metric or ["bleu"]
    unknown = [m for m in metric if m not in TEXT_METRICS]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r}; expected one of {TEXT_METRICS}")
    require_packages(metric, f"--metric {' '.join(metric)} needs", InputError)
    check_options([m for m in metric if m != "rouge"], tokenize)
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        raise InputError(f"--output {output}: " + ("is a directory" if output.is_dir() else
                                                  f"its directory {output.parent} does not exist"))
    pairs = load_pairs(data, "test")
    hypotheses = translate_texts(model, tokenizer, [s for s, _ in pairs], num_beams=num_beams,
                                 length_penalty=length_penalty)
    if output is not None:
        output.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    references = [t for _, t in pairs]
    exact = sum(h == r for h, r in zip(hypotheses, references)) / len(pairs)
    typer.echo(f"{directory}: {len(pairs)} sentences, exact match {100 * exact:.2f}")
    for name in metric:
        if name == "rouge":
            for kind, value in rouge(hypotheses, references).items():
                typer.echo(f"{kind}: {value:.2f}")
            continue
        label = f"{name} (tokenize={tokenize})" if name == "bleu" else name
        typer.echo(f"{label}: {score(name, hypotheses, references, tokenize):.2f}")


@app.command()
@_fail_cleanly
def average(
    checkpoints: list[Path] = typer.Argument(..., help="model directories, or one training output directory"),
    out: Path = typer.Option(..., "--out", help="directory for the averaged model"),
    last: int = typer.Option(None, "--last", help="with a training output directory: average its last N checkpoints"),
) -> None:
    """Average checkpoints' weights into one model (Vaswani et al. 2017 §6.1)."""
    from attnkit.errors import CheckpointError
    from attnkit.training.averaging import average_checkpoints
    from attnkit.training.checkpoint import complete_checkpoints

    if last is not None:
        if last < 1:
            raise CheckpointError(f"--last must be >= 1, got {last}")
        if len(checkpoints) != 1:
            raise CheckpointError("--last N takes exactly one training output directory")
        found = [p for _, p in complete_checkpoints(checkpoints[0])]
        if len(found) < last:
            raise CheckpointError(f"{checkpoints[0]} has {len(found)} complete checkpoints, fewer than --last {last}")
        checkpoints = found[-last:]
    average_checkpoints(checkpoints, out)
    typer.echo(f"averaged {len(checkpoints)} checkpoints into {out}")

def _with_adapters(path: Path):
    """``(model, directory)``: a model directory, or a training run's newest checkpoint, that has
    LoRA adapters."""
    from attnkit.errors import InputError
    from attnkit.interop import from_pretrained
    from attnkit.nn.lora import lora_layers
    from attnkit.training.checkpoint import resolve_model_dir

    directory = resolve_model_dir(path)
    model = from_pretrained(directory)
    if not lora_layers(model):
        raise InputError(f"{directory} has no LoRA adapters (lora_config.json); nothing to merge or export")
    return model, directory


@app.command("merge-lora")
@_fail_cleanly
def merge_lora(
    path: Path = typer.Argument(..., help="model directory with LoRA adapters, or a training output directory"),
    out: Path = typer.Option(..., "--out", help="directory for the merged model"),
) -> None:
    """Fold LoRA adapters into the weights: a plain model (Hugging Face's layout) with the tokenizer."""
    import shutil

    from attnkit.nn.lora import merge_lora as merge
    from attnkit.training.averaging import TOKENIZER_FILES

    model, directory = _with_adapters(path)
    merge(model).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (directory / name).is_file():
            shutil.copyfile(directory / name, out / name)
    typer.echo(f"merged the adapters of {directory} into {out}")


@app.command("export-peft")
@_fail_cleanly
def export_peft(
    path: Path = typer.Argument(..., help="model directory with LoRA adapters, or a training output directory"),
    out: Path = typer.Option(..., "--out", help="directory for adapter_config.json and adapter_model.safetensors"),
    base: str = typer.Option(None, "--base", help="base_model_name_or_path to write [default: where the run's model "
                             "came from]"),
) -> None:
    """Write LoRA adapters in PEFT's format (for peft.PeftModel.from_pretrained on the base model)."""
    from attnkit.interop.peft import save_peft_adapter

    model, directory = _with_adapters(path)
    save_peft_adapter(model, out, base)
    typer.echo(f"wrote the adapters of {directory} to {out} in PEFT's format")


if __name__ == "__main__":
    app()
