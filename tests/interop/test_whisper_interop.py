"""Whisper parity: random transformers ``WhisperForConditionalGeneration`` / ``WhisperModel``
checkpoints load into attnkit's Whisper with the same logits, loss, encoder states, hidden
states, attention weights and generated tokens, and attnkit saves what transformers loads."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.models.whisper import Whisper, WhisperConfig

transformers = pytest.importorskip("transformers")
V, MELS, FRAMES, START, EOT = 96, 8, 200, 91, 90
HF_FIELDS = dict(vocab_size=V, num_mel_bins=MELS, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_layers=2, decoder_layers=2, max_source_positions=100,
                 max_target_positions=32, pad_token_id=EOT, bos_token_id=EOT, eos_token_id=EOT,
                 decoder_start_token_id=START, begin_suppress_tokens=None, suppress_tokens=None)


def random_whisper(tmp_path, seed=0, cls="WhisperForConditionalGeneration", **overrides):
    """A small Whisper saved to ``tmp_path`` (eager attention, so that it returns weights), every
    weight drawn at a scale where outputs depend on the whole input: norm weights around 1,
    biases and the stored encoder positions random too (a wrong key mapping shows)."""
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(**{**HF_FIELDS, **overrides}, attn_implementation="eager")
    hf = getattr(transformers, cls)(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.3)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
            elif "embed" in name:
                p.normal_(0.0, 0.5)
            else:
                p.normal_(0.0, p[0].numel() ** -0.5)  # ~unit-variance outputs (fan-in)
    hf.save_pretrained(tmp_path)
    return hf


def features(B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, MELS, FRAMES, generator=g)


def labels_batch(B=3, T=9):
    """Labels with ragged lengths (-100 after each row's end) and their decoder padding mask."""
    labels = torch.randint(0, EOT, (B, T))
    lengths = torch.tensor([T, 5, 2])[:B]
    real = torch.arange(T)[None, :] < lengths[:, None]
    return labels.masked_fill(~real, -100), real.long()


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def test_logits_loss_states_and_attentions_match_transformers(tmp_path):
    hf = random_whisper(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert isinstance(model, Whisper)
    feats = features()
    labels, mask = labels_batch()
    with torch.no_grad():
        ref = hf(input_features=feats, labels=labels, decoder_attention_mask=mask, output_attentions=True,
                 output_hidden_states=True)
        out = model(feats, labels=labels, decoder_attention_mask=mask, output_attentions=True,
                    output_hidden_states=True)
    real = mask.bool()
    assert max_diff(out.logits[real], ref.logits[real]) < 1e-4
    assert abs(out.loss.item() - ref.loss.item()) < 1e-5
    assert max_diff(out.encoder_last_hidden_state, ref.encoder_last_hidden_state) < 1e-4
    assert max_diff(out.encoder_last_hidden_state[0], out.encoder_last_hidden_state[1]) > 0.1  # depends on the audio
    for ours, theirs in zip(out.encoder_hidden_states, ref.encoder_hidden_states, strict=True):
        assert max_diff(ours, theirs) < 1e-4
    for ours, theirs in zip(out.hidden_states, ref.decoder_hidden_states, strict=True):
        assert max_diff(ours[real], theirs[real]) < 1e-4
    for ours, theirs in zip(out.encoder_attentions, ref.encoder_attentions, strict=True):
        assert max_diff(ours, theirs) < 1e-5
    for ours, theirs in [*zip(out.cross_attentions, ref.cross_attentions, strict=True),
                         *zip(out.attentions, ref.decoder_attentions, strict=True)]:
        # (B, H, T, S) weights of the real target positions
        assert max_diff(ours.transpose(1, 2)[real], theirs.transpose(1, 2)[real]) < 1e-5


def test_gradients_match_transformers(tmp_path):
    hf = random_whisper(tmp_path).train()  # dropout is 0: train mode changes nothing else
    model = attnkit.from_pretrained(tmp_path).train()
    feats = features(2)
    labels, _ = labels_batch(2)
    hf(input_features=feats, labels=labels).loss.backward()
    model(feats, labels=labels).loss.backward()
    ours = dict(model.named_parameters())
    theirs = dict(hf.named_parameters())
    pairs = {"stem.conv1.weight": "model.encoder.conv1.weight", "embed.weight": "model.decoder.embed_tokens.weight",
             "encoder.layers.0.attn.q_proj.weight": "model.encoder.layers.0.self_attn.q_proj.weight",
             "decoder.layers.1.cross_attn.k_proj.weight": "model.decoder.layers.1.encoder_attn.k_proj.weight"}
    for a, b in pairs.items():
        assert max_diff(ours[a].grad, theirs[b].grad) < 1e-4 * theirs[b].grad.abs().max().item() + 1e-6
    assert model.encoder_positions.grad is None  # fixed sinusoids: never trained


def hf_generate(hf, feats, prompt, **kw):
    with torch.no_grad():
        return transformers.GenerationMixin.generate(hf, input_features=feats, decoder_input_ids=prompt,
                                                     do_sample=False, **kw)


def eos_that_ends_a_hypothesis(hf, feats, prompt, **kw) -> int:
    """A token that, used as EOS, ends the returned hypotheses at different steps (one row
    stops while another runs on; the tokens of a search without EOS tried first)."""
    free = hf_generate(hf, feats, prompt, eos_token_id=-1, pad_token_id=0, **kw)[:, prompt.shape[1]:]
    for eos in dict.fromkeys(free.flatten().tolist() + list(range(V))):
        out = hf_generate(hf, feats, prompt, eos_token_id=eos, pad_token_id=eos, **kw)
        new = out[:, prompt.shape[1]:] == eos
        ends = torch.where(new.any(dim=1), new.int().argmax(dim=1), new.shape[1])  # first EOS, else the end
        if new.any() and len(set(ends.tolist())) > 1:
            return eos
    raise AssertionError("no token ends a hypothesis")


@pytest.mark.parametrize("num_beams,length_penalty", [(1, 1.0), (3, 0.0)])
def test_generated_tokens_match_transformers(tmp_path, num_beams, length_penalty):
    """Against transformers' shared generation loop (``GenerationMixin.generate``) over its
    Whisper with the same decoder prompt: ``WhisperForConditionalGeneration.generate`` adds
    Whisper's own processing (language detection, timestamps, forced ids) on top of it."""
    hf = random_whisper(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    feats = features()
    prompt = torch.tensor([[START, 7, 11]] * 3)
    kw = dict(max_new_tokens=12, num_beams=num_beams, length_penalty=length_penalty)
    eos = eos_that_ends_a_hypothesis(hf, feats, prompt, **kw)
    expected = hf_generate(hf, feats, prompt, eos_token_id=eos, pad_token_id=eos, **kw)
    assert torch.equal(model.generate(feats, decoder_input_ids=prompt, eos_token_id=eos, pad_token_id=eos, **kw),
                       expected)


def test_saved_checkpoint_loads_in_transformers_with_same_logits(tmp_path):
    random_whisper(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    model.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == ["WhisperForConditionalGeneration"]
    hf, info = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    feats, ids = features(2), torch.tensor([[START, 3, 4, 5]] * 2)
    with torch.no_grad():
        assert max_diff(hf.eval()(input_features=feats, decoder_input_ids=ids).logits,
                        model(feats, ids).logits) < 1e-4
    again = attnkit.from_pretrained(tmp_path / "ours")
    assert again.config == model.config
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_whisper_model_checkpoint_loads_with_the_head_tied(tmp_path):
    """``WhisperModel`` (no ``model.`` prefix, no ``proj_out``): the head is the token embedding."""
    hf = random_whisper(tmp_path, cls="WhisperModel")
    model = attnkit.from_pretrained(tmp_path)
    feats, ids = features(2), torch.tensor([[START, 3, 4]] * 2)
    with torch.no_grad():
        ref = hf(input_features=feats, decoder_input_ids=ids).last_hidden_state
        out = model(feats, ids)
    assert max_diff(out.last_hidden_state, ref) < 1e-4
    assert max_diff(out.logits, ref @ hf.decoder.embed_tokens.weight.T) < 1e-4


def test_scale_embedding_is_ignored_as_transformers_does_and_attnkit_only_variant_round_trips(tmp_path):
    hf = random_whisper(tmp_path / "hf", scale_embedding=True)  # transformers reads it and never applies it
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert not model.config.scale_embedding
    feats, ids = features(1), torch.tensor([[START, 3, 4]])
    with torch.no_grad():
        assert max_diff(model(feats, ids).logits, hf(input_features=feats, decoder_input_ids=ids).logits) < 1e-4
    scaled = Whisper(WhisperConfig.from_preset("whisper-test", scale_embedding=True)).eval()
    scaled.save_pretrained(tmp_path / "scaled")
    assert json.loads((tmp_path / "scaled" / "config.json").read_text())["model_type"] == "attnkit"
    again = attnkit.from_pretrained(tmp_path / "scaled")
    assert again.config.scale_embedding
    with torch.no_grad():
        assert torch.equal(again(feats, ids).logits, scaled(feats, ids).logits)


@pytest.mark.parametrize("field,value", [("decoder_attention_heads", 2), ("decoder_ffn_dim", 32),
                                         ("encoder_layerdrop", 0.1), ("use_weighted_layer_sum", True),
                                         ("tie_word_embeddings", False), ("activation_function", "mish")])
def test_unsupported_variants_are_refused_naming_the_field(tmp_path, field, value):
    config = {**HF_FIELDS, "model_type": "whisper", field: value}
    (tmp_path / "config.json").write_text(json.dumps(config))
    random_whisper(tmp_path / "weights")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "weights" / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match=field):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_checkpoint_suppress_and_begin_suppress_tokens_are_honoured_as_in_transformers(tmp_path, num_beams):
    """Whisper checkpoints ban tokens in generation_config.json: ``suppress_tokens`` always,
    ``begin_suppress_tokens`` (blank, end of text) as the first new token only."""
    hf = random_whisper(tmp_path / "plain")
    feats, prompt = features(), torch.tensor([[START, 7, 11]] * 3)
    plain = hf_generate(hf, feats, prompt, max_new_tokens=6, num_beams=num_beams)[:, 3:]
    first, later = int(plain[0, 0]), int(plain[0, -1])
    hf.generation_config.begin_suppress_tokens = [first]
    hf.generation_config.suppress_tokens = [later] if later != first else []
    hf.save_pretrained(tmp_path / "banned")
    model = attnkit.from_pretrained(tmp_path / "banned")
    assert model.generation_config.begin_suppress_tokens == (first,)
    expected = hf_generate(hf, feats, prompt, max_new_tokens=6, num_beams=num_beams)
    got = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=6, num_beams=num_beams)
    assert torch.equal(got, expected)
    assert not (got[:, 3] == first).any() and not (got[:, 3:] == later).any()


@pytest.mark.parametrize("num_beams,language,task", [(1, "de", "translate"), (3, "en", "transcribe")])
def test_transcripts_equal_whisper_generate_for_a_language_and_task(tmp_path, num_beams, language, task):
    """Against ``WhisperForConditionalGeneration.generate`` itself (short-form, no timestamps),
    with a checkpoint's token tables and suppressed tokens: attnkit's prompt from
    ``decoder_prompt`` and the shared loop give its tokens. Whisper's generate returns the new
    tokens alone, padded to its own length: its first ``max_new_tokens`` columns are compared."""
    hf = random_whisper(tmp_path)
    tables = dict(lang_to_id={"<|en|>": 80, "<|de|>": 81}, task_to_id={"transcribe": 85, "translate": 84},
                  no_timestamps_token_id=89, is_multilingual=True, begin_suppress_tokens=[17, EOT], suppress_tokens=[56],
                  max_initial_timestamp_index=1, prev_sot_token_id=86, max_length=32)
    for name, value in tables.items():  # Whisper's own fields, as openai/whisper-* generation configs hold them
        setattr(hf.generation_config, name, value)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    feats = features()
    with torch.no_grad():
        expected = hf.generate(input_features=feats, language=language, task=task, max_new_tokens=10,
                               num_beams=num_beams)[:, :10]
    prompt = model.decoder_prompt(language, task, batch_size=3)
    assert prompt[0].tolist() == [START, 80 + (language == "de"), 85 - (task == "translate"), 89]
    got = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=10, num_beams=num_beams)
    assert torch.equal(got[:, 4:], expected)


WHISPER_TABLES = dict(lang_to_id={"<|en|>": 80, "<|de|>": 81, "<|fr|>": 82}, task_to_id={"transcribe": 85, "translate": 84},
                      no_timestamps_token_id=89, is_multilingual=True, begin_suppress_tokens=[EOT], suppress_tokens=[56],
                      max_initial_timestamp_index=1, prev_sot_token_id=86, max_length=32)


def multilingual_whisper(tmp_path):
    """A random Whisper whose generation config has the released checkpoints' token tables."""
    hf = random_whisper(tmp_path)
    for name, value in WHISPER_TABLES.items():
        setattr(hf.generation_config, name, value)
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


def test_detect_language_equals_transformers(tmp_path):
    hf, model = multilingual_whisper(tmp_path)
    feats = features(6, seed=3)
    with torch.no_grad():
        expected = hf.detect_language(feats)
    got = model.detect_language(feats)
    assert torch.equal(got, expected) and set(got.tolist()) <= {80, 81, 82}
    plain = attnkit.Whisper(WhisperConfig.from_preset("whisper-test"))
    with pytest.raises(attnkit.InputError, match="no lang_to_id table"):
        plain.detect_language(feats[:, :, :200])


def test_transcribe_long_audio_equals_whisper_generate_window_by_window(tmp_path):
    """1.6 windows of 44.1 kHz audio: resampled, cut into two 2-second windows (the second padded
    with silence), each decoded as ``WhisperForConditionalGeneration.generate`` decodes it with
    language detection, and the texts joined."""
    from attnkit.audio import log_mel_spectrogram, pad_or_trim, resample
    from attnkit.generation.speech import transcribe
    from attnkit.tokenizers import Tokenizer

    hf, model = multilingual_whisper(tmp_path)
    tok = Tokenizer.train_char(["".join(chr(0x41 + i) for i in range(EOT))],
                               special_tokens=[f"<|special{i}|>" for i in range(V - EOT)])
    assert tok.vocab_size == V
    g = torch.Generator().manual_seed(5)
    audio = 0.1 * torch.randn(int(1.6 * 2 * 44100), generator=g)
    seen = []  # the features each generate call decodes
    generate = model.generate
    model.generate = lambda features, **kw: seen.append(features) or generate(features, **kw)
    texts = transcribe(model, tok, [audio, audio[:44100]], sampling_rate=44100, max_new_tokens=6, num_beams=2)
    del model.generate
    wave = resample(audio, 44100, 16000)
    short = resample(audio[:44100], 44100, 16000)  # the second waveform, resampled on its own
    windows = [pad_or_trim(wave[:32000], 32000), pad_or_trim(wave[32000:], 32000), pad_or_trim(short, 32000)]
    feats = log_mel_spectrogram(torch.stack(windows), n_mels=MELS)
    assert torch.equal(torch.cat(seen), feats)
    with torch.no_grad():
        new = hf.generate(input_features=feats, task="transcribe", max_new_tokens=6, num_beams=2)
    pieces = [tok.decode(row, skip_special_tokens=True).strip() for row in new]
    assert texts == [" ".join(p for p in pieces[:2] if p), pieces[2]]
    assert any(pieces)  # something was decoded, not only special tokens
    german = transcribe(model, tok, audio, sampling_rate=44100, language="de", task="translate", max_new_tokens=6)
    with torch.no_grad():
        new = hf.generate(input_features=feats[:2], language="de", task="translate", max_new_tokens=6)
    assert german == [" ".join(p for p in (tok.decode(r, skip_special_tokens=True).strip() for r in new) if p)]
    with pytest.raises(attnkit.InputError, match="needs a speech model"):
        transcribe(attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny")), tok, audio)
    with pytest.raises(attnkit.InputError, match="1-D float tensor"):
        transcribe(model, tok, torch.zeros(100, dtype=torch.int16))


# A vocabulary laid out as Whisper's: text below EOT, then the start, language and task tokens,
# <|notimestamps|>, and 32 timestamp tokens (0.00 .. 0.62 s).
TS_EOT, TS_START, TS_NO_TIMESTAMPS, TS_V = 80, 81, 87, 120
TS_TABLES = dict(lang_to_id={"<|en|>": 82, "<|de|>": 83}, task_to_id={"transcribe": 85, "translate": 84},
                 no_timestamps_token_id=TS_NO_TIMESTAMPS, is_multilingual=True, begin_suppress_tokens=[TS_EOT],
                 suppress_tokens=[56], max_initial_timestamp_index=5, prev_sot_token_id=86, max_length=32)


def timestamped_whisper(tmp_path):
    hf = random_whisper(tmp_path, vocab_size=TS_V, pad_token_id=TS_EOT, bos_token_id=TS_EOT, eos_token_id=TS_EOT,
                        decoder_start_token_id=TS_START)
    for name, value in {**TS_TABLES, "eos_token_id": TS_EOT, "decoder_start_token_id": TS_START}.items():
        setattr(hf.generation_config, name, value)
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


def test_timestamp_rules_equal_transformers_processor(tmp_path):
    """WhisperTimestamps against WhisperTimeStampLogitsProcessor on the same scores, for
    sequences at every stage: the first token, after text, after a lone timestamp, after a pair,
    and scores where the timestamps' total probability wins or loses."""
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    from attnkit.generation.speech import WhisperTimestamps

    hf, model = timestamped_whisper(tmp_path)
    theirs = WhisperTimeStampLogitsProcessor(hf.generation_config, begin_index=3)
    ours = WhisperTimestamps.for_model(model, begin_index=3)
    tb = TS_NO_TIMESTAMPS + 1
    prompt = [TS_START, 82, 85]
    sequences = [prompt, prompt + [tb], prompt + [tb, 50], prompt + [tb, 50, tb + 7], prompt + [tb, 50, tb + 7, tb + 7],
                 prompt + [tb + 2, 50, 51, tb + 9, tb + 9, 60], prompt + [tb + 3, 50, tb + 3]]
    g = torch.Generator().manual_seed(0)
    checked = 0
    for seq in sequences:
        ids = torch.tensor([seq] * 4)
        for scale in (1.0, 8.0):
            scores = torch.randn(4, TS_V, generator=g) * scale
            scores[1, tb:] += 6.0  # timestamps likelier than any text token
            expected = theirs(ids, scores.clone())
            got = ours(ids, scores.clone())
            assert torch.equal(got, expected), seq
            checked += int(torch.isinf(expected).any())
    assert checked == 2 * len(sequences)  # every case bans something


def test_timestamped_decoding_is_transformers_up_to_its_first_seek(tmp_path):
    """Greedy decoding under the timestamp rules: the tokens equal those of our loop with
    transformers' processor object, and those of ``generate(return_timestamps=True)`` up to the
    first closed segment, where transformers' sequential long-form algorithm moves its window
    (which attnkit does not reimplement)."""
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    from attnkit.generation.speech import WhisperTimestamps, whisper_prompt

    hf, model = timestamped_whisper(tmp_path)
    feats = features()
    prompt = whisper_prompt(model, "en", None, batch_size=3, timestamps=True)
    assert prompt[0].tolist() == [TS_START, 82, 85]
    got = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=12,
                         logits_processor=[WhisperTimestamps.for_model(model, 3)])[:, 3:]
    with_theirs = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=12,
                                 logits_processor=[WhisperTimeStampLogitsProcessor(hf.generation_config, begin_index=3)])
    assert torch.equal(got, with_theirs[:, 3:])
    with torch.no_grad():
        expected = hf.generate(input_features=feats, language="en", task="transcribe", return_timestamps=True,
                               max_new_tokens=12)
    tb = TS_NO_TIMESTAMPS + 1
    for ours, theirs in zip(got.tolist(), expected.tolist()):
        assert ours[0] >= tb  # the first token is a timestamp
        end = next((i + 1 for i in range(1, len(ours)) if ours[i] >= tb and ours[i - 1] >= tb), len(ours))
        assert ours[:end] == theirs[:end]


def test_split_segments_reads_a_window_as_whisper_does():
    """Whisper's reading of a window (``openai/whisper``'s transcribe loop): segments closed by
    consecutive timestamps; a lone last timestamp means nothing more was said (move a whole
    window on), otherwise move to the last closed segment's end and decode the rest again."""
    from attnkit.generation.speech import split_segments

    tb = TS_NO_TIMESTAMPS + 1
    a, b, c = 5, 6, 7
    # <0.00> a b <0.20><0.20> c <0.50> : closed, then a lone last timestamp
    segments, moved = split_segments([tb, a, b, tb + 10, tb + 10, c, tb + 25], tb, frames=200)
    assert segments == [(0, 10, [tb, a, b, tb + 10]), (10, 25, [tb + 10, c, tb + 25])] and moved == 200
    # <0.00> a <0.20><0.20> b c : the last segment is unfinished: decode again from 0.20 s (frame 20)
    segments, moved = split_segments([tb, a, tb + 10, tb + 10, b, c], tb, frames=200)
    assert segments == [(0, 10, [tb, a, tb + 10, tb + 10])] and moved == 20
    # no closed segment: the whole window, ending at its last timestamp or at the window's end
    assert split_segments([tb, a, b, tb + 7], tb, frames=200) == ([(0, 7, [tb, a, b, tb + 7])], 200)
    assert split_segments([tb, a, b], tb, frames=120) == ([(0, 60, [tb, a, b])], 120)


ALIGNMENT_HEADS = [[1, 0], [1, 2], [0, 3]]  # (decoder layer, head) pairs whose cross-attention times the words


def long_form_whisper(tmp_path, scale=1.0, no_speech=1.0):
    """The timestamped Whisper with its timestamp tokens' embeddings scaled by ``scale`` (the model
    then closes segments often, and its windows start mid-window, at the last segment's end) and
    the ``<|nospeech|>`` row (the id before ``<|notimestamps|>``) by ``no_speech``."""
    hf = random_whisper(tmp_path, vocab_size=TS_V, pad_token_id=TS_EOT, bos_token_id=TS_EOT, eos_token_id=TS_EOT,
                        decoder_start_token_id=TS_START)
    for name, value in {**TS_TABLES, "eos_token_id": TS_EOT, "decoder_start_token_id": TS_START,
                        "alignment_heads": ALIGNMENT_HEADS}.items():
        setattr(hf.generation_config, name, value)
    with torch.no_grad():
        hf.model.decoder.embed_tokens.weight[TS_NO_TIMESTAMPS + 1:] *= scale
        hf.model.decoder.embed_tokens.weight[TS_NO_TIMESTAMPS - 1] *= no_speech
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


def long_form_features(model, windows=2.6, seed=2):
    from attnkit.audio import log_mel_spectrogram

    wave = 0.1 * torch.randn(int(windows * model.config.n_samples), generator=torch.Generator().manual_seed(seed))
    return log_mel_spectrogram(wave, n_mels=MELS)  # (1, 8, 520 for 2.6 windows): the whole waveform


def hf_long_form(hf, feats, **kwargs):
    """``(start, end, tokens)`` of every segment of transformers' long-form ``generate``."""
    with torch.no_grad():
        out = hf.generate(input_features=feats, attention_mask=torch.ones(1, feats.shape[-1], dtype=torch.long),
                          **{"language": "en", **kwargs}, task="transcribe", return_timestamps=True,
                          return_segments=True, max_new_tokens=12)
    return [(float(s["start"]), float(s["end"]), s["tokens"].tolist()) for s in out["segments"][0]]


def assert_same_segments(got, expected):
    assert [s.tokens for s in got] == [t for _, _, t in expected]
    assert [x for s in got for x in (s.start, s.end)] == pytest.approx([x for s, e, _ in expected for x in (s, e)])


@pytest.mark.parametrize("scale,seed", [(1.0, 2), (2.0, 3), (3.0, 2)])
def test_long_form_segments_equal_transformers_long_form_generate(tmp_path, scale, seed):
    """2.6 windows of audio through Whisper's sequential algorithm: every segment's start, end
    and tokens equal ``WhisperForConditionalGeneration.generate(return_timestamps=True,
    return_segments=True)``'s, with the timestamp tokens' embeddings scaled so that the model
    closes segments often (its windows then start mid-window, at the last segment's end)."""
    from attnkit.generation.speech import long_form_segments

    hf, model = long_form_whisper(tmp_path, scale)
    feats = long_form_features(model, seed=seed)
    got = long_form_segments(model, feats, "en", None, max_new_tokens=12)
    assert_same_segments(got, hf_long_form(hf, feats))
    starts = [s.start for s in got]
    if scale > 1:  # segments closed inside windows: some window started off the 2-second grid
        assert len(got) > 3 and any(round(s % 2.0, 2) not in (0.0, 2.0) for s in starts)


def test_a_recording_s_language_is_detected_once_as_transformers_detects_it(tmp_path):
    """Without a language the sequential algorithm detects it from the first window and keeps it
    for every window (transformers' long-form ``generate``, ``openai/whisper``'s ``transcribe``),
    while detection window by window would pick another for some window; ``transcribe`` reports it."""
    from attnkit.generation.speech import long_form_segments, recording_language, transcribe
    from attnkit.tokenizers import Tokenizer

    from attnkit.audio import log_mel_spectrogram

    hf, model = long_form_whisper(tmp_path, scale=2.0)
    with torch.no_grad():  # <|de|> close to <|en|>, so that quiet and loud windows pick differently
        embed = hf.model.decoder.embed_tokens.weight
        embed[83] = embed[82] + 0.1 * torch.randn(embed.shape[1], generator=torch.Generator().manual_seed(0))
        model.embed.weight[83] = embed[83]
    g = torch.Generator().manual_seed(0)
    wave = torch.cat([a * torch.randn(model.config.n_samples, generator=g) for a in (0.001, 0.1, 1.0, 0.01, 3.0)])
    feats = log_mel_spectrogram(wave, n_mels=MELS)
    per_window = model.detect_language(feats.unflatten(-1, (5, -1)).permute(2, 0, 1, 3)[:, 0]).tolist()
    assert per_window == [83, 82, 82, 82, 82]  # the windows alone disagree
    first = recording_language(model, feats)
    assert first == "<|de|>"
    got = long_form_segments(model, feats, None, max_new_tokens=12)
    assert_same_segments(got, hf_long_form(hf, feats, language=None))
    assert got == long_form_segments(model, feats, first, max_new_tokens=12)
    assert got != long_form_segments(model, feats, "<|en|>", max_new_tokens=12)  # the language counts
    tok = Tokenizer.train_char(["".join(chr(0x41 + i) for i in range(TS_EOT))],
                               special_tokens=[f"<|s{i}|>" for i in range(TS_V - TS_EOT)])
    assert transcribe(model, tok, wave, max_new_tokens=12, return_timestamps=True)[0]["language"] == first.strip("<|>")


@pytest.mark.parametrize("condition,prompt", [(True, None), (True, [5, 17, 33]), (False, [5, 17, 33])])
def test_conditioning_on_previous_text_and_a_prompt_equal_transformers(tmp_path, condition, prompt):
    """``condition_on_prev_tokens`` (each window reads ``<|startofprev|>`` and the segments before
    it, the last ``max_target_positions // 2 - 1`` tokens) and ``prompt_ids`` (read before every
    window, or as the first previous text when conditioning) give transformers' segments; the
    conditioning changes what is decoded."""
    from attnkit.generation.speech import long_form_segments

    hf, model = long_form_whisper(tmp_path, scale=3.0)
    feats = long_form_features(model, windows=3.6, seed=2)
    got = long_form_segments(model, feats, "en", max_new_tokens=12, condition_on_prev_tokens=condition,
                             prompt_ids=prompt)
    hf_prompt = None if prompt is None else torch.tensor([TS_TABLES["prev_sot_token_id"], *prompt])
    assert_same_segments(got, hf_long_form(hf, feats, condition_on_prev_tokens=condition, prompt_ids=hf_prompt))
    assert [s.tokens for s in got] != [s.tokens for s in long_form_segments(model, feats, "en", max_new_tokens=12)]
    with pytest.raises(attnkit.InputError, match="the prompt is 16 tokens; this model reads at most 15"):
        long_form_segments(model, feats, "en", prompt_ids=[5] * 16)
    del model.generation_config.other["prev_sot_token_id"]
    with pytest.raises(attnkit.InputError, match="no <\\|startofprev\\|> token"):
        long_form_segments(model, feats, "en", condition_on_prev_tokens=condition, prompt_ids=prompt)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_silent_windows_are_skipped_as_transformers_skips_them(tmp_path, num_beams):
    """``no_speech_threshold`` with ``logprob_threshold``: a window whose ``<|nospeech|>``
    probability after ``<|startoftranscript|>`` is above the one and whose tokens' mean
    log-probability (beam search: its score) is below the other leaves no segment, and the next
    window starts a whole window later, as in transformers."""
    from attnkit.generation.speech import long_form_segments, no_speech_probability, whisper_prompt

    hf, model = long_form_whisper(tmp_path, scale=1.0, no_speech=6.0)
    feats = long_form_features(model, windows=4.0, seed=4)
    windows = feats.unflatten(-1, (4, -1)).permute(2, 0, 1, 3)[:, 0]  # (4, 8, 200): the four windows
    odds = no_speech_probability(model, windows, whisper_prompt(model, "en", batch_size=4, timestamps=True), 0)
    threshold = float(odds.median())  # some windows above, some below
    assert (odds > threshold).any() and (odds < threshold).any()
    kwargs = dict(logprob_threshold=0.0, no_speech_threshold=threshold)  # every window is unlikely: odds decide
    got = long_form_segments(model, feats, "en", num_beams=num_beams, max_new_tokens=12, **kwargs)
    assert_same_segments(got, hf_long_form(hf, feats, num_beams=num_beams, temperature=0.0, **kwargs))
    everything = long_form_segments(model, feats, "en", num_beams=num_beams, max_new_tokens=12)
    assert 0 < len(got) < len(everything)
    with pytest.raises(attnkit.InputError, match="needs logprob_threshold"):
        long_form_segments(model, feats, "en", no_speech_threshold=0.5)


def test_temperature_fallback_equals_transformers(tmp_path):
    """A list of temperatures: a window whose tokens compress too well or are too unlikely is
    decoded again by sampling at the next temperature (conditioning stops after one at 0.5 or
    more). Under the same seed the samples, and so the segments, are transformers'."""
    from attnkit.generation.speech import long_form_segments

    hf, model = long_form_whisper(tmp_path, scale=2.0)
    feats = long_form_features(model, windows=3.0, seed=5)
    kwargs = dict(temperature=(0.0, 0.4, 0.8), logprob_threshold=-0.4, compression_ratio_threshold=0.7,
                  condition_on_prev_tokens=True)
    torch.manual_seed(7)
    got = long_form_segments(model, feats, "en", max_new_tokens=12, **kwargs)
    torch.manual_seed(7)
    expected = hf_long_form(hf, feats, do_sample=False, **kwargs)
    assert_same_segments(got, expected)
    greedy = long_form_segments(model, feats, "en", max_new_tokens=12, condition_on_prev_tokens=True)
    assert [s.tokens for s in got] != [s.tokens for s in greedy]  # some window was sampled
    with pytest.raises(attnkit.InputError, match="temperature must be"):
        long_form_segments(model, feats, "en", temperature=[])


def test_a_prompt_in_fixed_windows_equals_transformers_prompt_ids(tmp_path):
    """``transcribe(prompt=...)`` without timestamps: each window's decoder reads
    ``<|startofprev|>`` and the prompt's tokens first, as with transformers' ``prompt_ids``
    (``WhisperProcessor.get_prompt_ids``: the text after a space)."""
    from attnkit.audio import log_mel_spectrogram, pad_or_trim
    from attnkit.generation.speech import encode_prompt, transcribe
    from attnkit.tokenizers import Tokenizer

    hf, model = timestamped_whisper(tmp_path)
    tok = Tokenizer.train_char([" " + "".join(chr(0x41 + i) for i in range(TS_EOT - 1))],
                               special_tokens=[f"<|s{i}|>" for i in range(TS_V - TS_EOT)])
    audio = 0.1 * torch.randn(2 * model.config.n_samples, generator=torch.Generator().manual_seed(3))
    ids = encode_prompt(model, tok, "  CAB DE ")
    assert ids == tok.encode(" CAB DE", add_special_tokens=False) and len(ids) == 7
    got = transcribe(model, tok, audio, language="en", prompt="  CAB DE ", max_new_tokens=8)
    windows = torch.stack([pad_or_trim(audio[i * 32000:(i + 1) * 32000], 32000) for i in range(2)])
    with torch.no_grad():
        out = hf.generate(input_features=log_mel_spectrogram(windows, n_mels=MELS), language="en", task="transcribe",
                          prompt_ids=torch.tensor([TS_TABLES["prev_sot_token_id"], *ids]), max_new_tokens=8)
    pieces = [tok.decode(row, skip_special_tokens=True).strip() for row in out]
    assert got == [" ".join(p for p in pieces if p)] and got[0]
    assert got != transcribe(model, tok, audio, language="en", max_new_tokens=8)  # the prompt counted
    with pytest.raises(attnkit.InputError, match="contains special tokens"):
        encode_prompt(model, tok, "AB<|s3|>")


def test_token_timestamps_equal_transformers_short_form(tmp_path):
    """``token_timestamps``: the alignment heads' cross-attention, normalised, median-filtered
    (``median_filter_width``), averaged and aligned by dynamic time warping, equals
    ``generate(return_token_timestamps=True)`` for a batch of windows."""
    from attnkit.generation.alignment import token_timestamps
    from attnkit.generation.speech import whisper_prompt

    hf = random_whisper(tmp_path, median_filter_width=5)
    for name, value in {**WHISPER_TABLES, "alignment_heads": ALIGNMENT_HEADS}.items():
        setattr(hf.generation_config, name, value)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.median_filter_width == 5
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["median_filter_width"] == 5
    feats = features(3, seed=4)
    with torch.no_grad():
        out = hf.generate(input_features=feats, language="en", task="transcribe", max_new_tokens=10,
                          return_token_timestamps=True)
    prompt = whisper_prompt(model, "en", batch_size=3)
    sequences = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=10)
    assert torch.equal(sequences[:, prompt.shape[1]:], out["sequences"][:, -10:])
    got = token_timestamps(model, feats, sequences, prompt.shape[1])
    assert torch.allclose(got[:, prompt.shape[1]:], out["token_timestamps"][:, -10:], atol=1e-6)
    assert got[:, :prompt.shape[1]].abs().sum() == 0 and len(set(got[:, prompt.shape[1]:].flatten().tolist())) > 3
    assert (got[:, 1:] >= got[:, :-1]).all()  # monotonic: the warping path never goes back


@pytest.mark.parametrize("num_beams", [1, 2])
def test_long_form_token_times_equal_transformers_segments(tmp_path, num_beams):
    """``long_form_segments(word_timestamps=True)``: every segment's ``token_times`` equal the
    ``token_timestamps`` of transformers' long-form segments (windows that start mid-way, the last
    one cut to the recording's real frames)."""
    from attnkit.generation.speech import long_form_segments

    hf, model = long_form_whisper(tmp_path, scale=3.0)
    feats = long_form_features(model, windows=2.6, seed=2)
    got = long_form_segments(model, feats, "en", num_beams=num_beams, max_new_tokens=12, word_timestamps=True)
    with torch.no_grad():
        out = hf.generate(input_features=feats, attention_mask=torch.ones(1, feats.shape[-1], dtype=torch.long),
                          language="en", task="transcribe", return_timestamps=True, return_segments=True,
                          return_token_timestamps=True, max_new_tokens=12, num_beams=num_beams)
    expected = out["segments"][0]
    assert [s.tokens for s in got] == [s["tokens"].tolist() for s in expected] and len(got) > 3
    for ours, theirs in zip(got, expected):
        assert ours.token_times == pytest.approx(theirs["token_timestamps"].tolist(), abs=1e-6)
    assert all(s.seek * 0.01 - 1e-9 <= s.token_times[0] and s.token_times == sorted(s.token_times) for s in got)
    assert long_form_segments(model, feats, "en", max_new_tokens=12)[0].token_times is None


def test_words_are_grouped_and_timed_as_openai_whisper_groups_them():
    """Words start at a token with a leading space or a punctuation token; a word lasts until the
    next word starts; opening quotes and brackets join the word after them, closing punctuation
    the word before (hand-worked cases of ``openai/whisper``'s ``merge_punctuations``)."""
    from attnkit.generation.alignment import words
    from attnkit.tokenizers import Tokenizer

    pieces = [" Hello", ",", " wor", "ld", " \"", "Yes", "!", "\"", " (", " ok", ")"]
    vocab = {p: i for i, p in enumerate(pieces)}

    class PieceTokenizer:  # decodes one id to its piece, as a BPE tokenizer decodes one token
        def decode(self, ids):
            return "".join(pieces[i] for i in ids)

    tokens = [vocab[p] for p in pieces]
    times = [0.0, 0.4, 0.5, 0.7, 1.0, 1.1, 1.3, 1.4, 1.5, 1.6, 1.8]
    got = words(PieceTokenizer(), tokens, times, end=2.0)
    # by hand: words " Hello" | "," | " world" | ' "Yes' | "!" | '"' | " (" | " ok" | ")", each until the next starts;
    # " (" joins " ok" (which keeps its times), then ",", "!", '"' and ")" join the word before (which keeps its)
    assert [(w["word"], w["start"], w["end"]) for w in got] == [
        ("Hello,", 0.0, 0.4), ("world", 0.5, 1.0), ('"Yes!"', 1.0, 1.3), ("( ok)", 1.6, 1.8)]
    assert [w["tokens"] for w in got] == [[0, 1], [2, 3], [4, 5, 6, 7], [8, 9, 10]]
    char = Tokenizer.train_char(["ab c"], special_tokens=["<s>"])
    assert [w["word"] for w in words(char, char.encode("ab c", add_special_tokens=False), [0, 1, 2, 3], 4)] == ["ab", "c"]


def test_transcribe_word_timestamps_are_the_words_of_the_timed_tokens(tmp_path):
    """``return_timestamps="word"``: each segment's ``words`` group its text tokens with their
    ``token_times`` (the last word ending at the closing timestamp's time), the chunks are those
    words, and together they spell the segments' text."""
    from attnkit.generation.alignment import words
    from attnkit.generation.speech import long_form_segments, transcribe
    from attnkit.tokenizers import Tokenizer
    from attnkit.audio import log_mel_spectrogram

    hf, model = long_form_whisper(tmp_path)
    tok = Tokenizer.train_char([" " + "".join(chr(0x41 + i) for i in range(TS_EOT - 1))],
                               special_tokens=[f"<|s{i}|>" for i in range(TS_V - TS_EOT)])
    audio = 0.1 * torch.randn(int(2.6 * model.config.n_samples), generator=torch.Generator().manual_seed(2))
    result = transcribe(model, tok, audio, language="en", max_new_tokens=20, return_timestamps="word")[0]
    segments = [s for s in long_form_segments(model, log_mel_spectrogram(audio, n_mels=MELS), "en", max_new_tokens=20,
                                              word_timestamps=True)
                if tok.decode([t for t in s.tokens if t < TS_EOT], skip_special_tokens=True).strip()]
    assert len(result["segments"]) == len(segments) > 1
    for got, segment in zip(result["segments"], segments):
        text = [k for k, t in enumerate(segment.tokens) if 40 <= t < TS_EOT]  # the tokenizer's specials are 0-39
        end = segment.token_times[text[-1] + 1] if text[-1] + 1 < len(segment.tokens) else segment.token_times[-1]
        assert got["words"] == words(tok, [segment.tokens[k] for k in text], [segment.token_times[k] for k in text], end)
        assert "".join(w["word"] for w in got["words"]) == got["text"].replace(" ", "")
    assert result["chunks"] == [{"timestamp": (w["start"], w["end"]), "text": w["word"]}
                                for s in result["segments"] for w in s["words"]]
    assert any(len(s["words"]) > 1 for s in result["segments"])
    with pytest.raises(attnkit.InputError, match="return_timestamps must be"):
        transcribe(model, tok, audio, return_timestamps="char")
    del model.generation_config.other["alignment_heads"]
    with pytest.raises(attnkit.InputError, match="no alignment_heads"):
        transcribe(model, tok, audio, language="en", return_timestamps="word")


def test_compression_ratio_is_transformers():
    from transformers import WhisperForConditionalGeneration

    from attnkit.generation.speech import compression_ratio

    scattered = torch.randperm(51865, generator=torch.Generator().manual_seed(0))[:200].tolist()
    for tokens, vocab in (([5, 6, 7] * 30, 120), (scattered, 51865), ([50257, 300, 12] * 4 + [9], 51865)):
        expected = WhisperForConditionalGeneration._retrieve_compression_ratio(torch.tensor(tokens), vocab)
        assert compression_ratio(tokens, vocab) == pytest.approx(expected)
    assert compression_ratio([5, 6, 7] * 30, 120) > 5 > 1.2 > compression_ratio(scattered, 51865)


def test_transcribe_with_timestamps_gives_the_segments_text(tmp_path):
    from attnkit.audio import log_mel_spectrogram
    from attnkit.generation.speech import long_form_segments, transcribe
    from attnkit.tokenizers import Tokenizer

    tok = Tokenizer.train_char(["".join(chr(0x41 + i) for i in range(80))], special_tokens=[f"<|s{i}|>" for i in range(40)])
    hf, model = timestamped_whisper(tmp_path)
    audio = 0.1 * torch.randn(int(1.5 * model.config.n_samples), generator=torch.Generator().manual_seed(2))
    result = transcribe(model, tok, audio, language="en", max_new_tokens=12, return_timestamps=True)[0]
    segments = long_form_segments(model, log_mel_spectrogram(audio, n_mels=MELS), "en", max_new_tokens=12)
    texts = [tok.decode([t for t in s.tokens if t <= TS_NO_TIMESTAMPS], skip_special_tokens=True).strip()
             for s in segments]
    assert result["chunks"] == [{"timestamp": (round(s.start, 2), round(s.end, 2)), "text": text}
                                for s, text in zip(segments, texts) if text]
    assert result["chunks"] and result["text"] == " ".join(chunk["text"] for chunk in result["chunks"])
    assert result["segments"] == [dict(id=i, **s._asdict(), text=text)
                                  for i, (s, text) in enumerate((s, text) for s, text in zip(segments, texts) if text)]
    first = result["segments"][0]
    assert first["seek"] == 0 and first["temperature"] == 0.0 and first["no_speech_prob"] is None
    assert first["avg_logprob"] < 0 and first["compression_ratio"] > 0
    with pytest.raises(attnkit.InputError, match="no timestamp tokens"):
        transcribe(attnkit.Whisper(WhisperConfig.from_preset("whisper-test")), tok, audio[:1000], return_timestamps=True)
