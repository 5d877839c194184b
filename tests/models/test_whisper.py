"""Whisper: preset sizes against transformers, the encoder's sinusoids, teacher forcing and its
loss, cached decoding against recomputation, decoder prompts, and the errors for inputs the
model cannot read. Checkpoint parity with transformers is in tests/interop/test_whisper_interop.py."""

import pytest
import torch
import torch.nn.functional as F

import attnkit
from attnkit import ConfigError, InputError
from attnkit.models.encoder_decoder import shift_tokens_right
from attnkit.models.whisper import Whisper, WhisperConfig
from attnkit.nn import MultiHeadAttention, sinusoidal_positions

transformers = pytest.importorskip("transformers")


def test_model_is_exported():
    assert attnkit.Whisper is Whisper and attnkit.WhisperConfig is WhisperConfig
    assert attnkit.models.Whisper is Whisper


@pytest.mark.parametrize("preset,expected", [("whisper-tiny", 37_760_640), ("whisper-base", 72_593_920),
                                             ("whisper-small", 241_734_912)])
def test_preset_parameter_counts_equal_transformers(preset, expected):
    c = WhisperConfig.from_preset(preset)
    with torch.device("meta"):
        ours = Whisper(c)
        hf = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
            vocab_size=c.vocab_size, num_mel_bins=c.num_mel_bins, d_model=c.d_model, encoder_layers=c.n_encoder_layers,
            decoder_layers=c.n_decoder_layers, encoder_attention_heads=c.n_heads, decoder_attention_heads=c.n_heads,
            encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff))
    assert ours.num_parameters() == hf.num_parameters() == expected


def test_encoder_positions_are_whispers_sinusoids():
    """Whisper's formula (wavelengths up to exactly 10000, sines then cosines) differs from
    Vaswani et al.'s; transformers computes it in float32, hence the tolerance."""
    from transformers.models.whisper.modeling_whisper import sinusoids

    ours = sinusoidal_positions(1500, 384, interleave=False, reach_base=True)
    assert (ours - sinusoids(1500, 384)).abs().max() < 2e-4
    assert (sinusoidal_positions(1500, 384, interleave=False) - sinusoids(1500, 384)).abs().max() > 0.1
    assert torch.equal(Whisper(WhisperConfig.from_preset("whisper-test")).encoder_positions,
                       sinusoidal_positions(100, 32, interleave=False, reach_base=True))


def test_attention_has_no_key_bias():
    model = Whisper(WhisperConfig.from_preset("whisper-test"))
    attn = model.decoder.layers[0].cross_attn
    assert attn.k_proj.bias is None and attn.q_proj.bias is not None and attn.v_proj.bias is not None
    with pytest.raises(InputError, match="key_bias"):
        MultiHeadAttention(32, 4, key_bias=False)  # fused q/k/v share one bias


def small_model(seed=0):
    torch.manual_seed(seed)
    model = Whisper(WhisperConfig.from_preset("whisper-test")).eval()
    with torch.no_grad():  # weights at a scale where outputs depend on every input
        for name, p in model.named_parameters():
            if name != "encoder_positions" and p.dim() > 1:
                p.normal_(0.0, p[0].numel() ** -0.5)
    return model


def features(B=2, seed=1):
    return torch.randn(B, 8, 200, generator=torch.Generator().manual_seed(seed))


def test_loss_is_cross_entropy_of_labels_shifted_after_the_start_token():
    model = small_model()
    labels = torch.randint(0, 90, (2, 6))
    labels[1, 4:] = -100
    out = model(features(), labels=labels)
    decoder_input_ids = shift_tokens_right(labels, 90, 91)
    assert decoder_input_ids[0, 0] == 91 and decoder_input_ids[1, 5] == 90  # start token; -100 became padding
    logits = model(features(), decoder_input_ids=decoder_input_ids).logits
    assert torch.allclose(out.logits, logits)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(out.loss, expected)


def test_cached_decoding_matches_recompute():
    model = small_model()
    feats = features()
    ids = torch.randint(0, 90, (2, 7))
    ids[:, 0] = 91
    with torch.no_grad():
        full = model(feats, ids).logits
        hidden = model.encode(feats).last_hidden_state
        cache = model.decoder.new_cache(ids.shape[1])
        first = model.decode(ids[:, :3], hidden, cache=cache).logits  # a prompt, then one token per step
        steps = [model.decode(ids[:, t: t + 1], hidden, cache=cache).logits for t in range(3, 7)]
    assert torch.allclose(torch.cat([first, *steps], dim=1), full, atol=1e-5)


def test_generate_continues_the_decoder_prompt_and_defaults_to_the_start_token():
    model = small_model()
    feats = features()
    prompt = torch.tensor([[91, 5, 6], [91, 5, 6]])
    out = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=5, eos_token_id=None)
    assert out.shape == (2, 8) and torch.equal(out[:, :3], prompt)
    with torch.no_grad():  # each new token is the argmax after the prompt and the tokens before it
        logits = model(feats, out[:, :-1]).logits
    assert torch.equal(logits[:, 2:].argmax(-1), out[:, 3:])
    assert torch.equal(model.generate(feats, max_new_tokens=3, eos_token_id=None)[:, 0], torch.tensor([91, 91]))
    beams = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=5, num_beams=3, eos_token_id=None)
    assert torch.equal(beams[:, :3], prompt)
    # max_length counts the decoder prompt, as in transformers
    assert model.generate(feats, decoder_input_ids=prompt, max_length=6, eos_token_id=None).shape == (2, 6)
    steps = list(model.stream(feats, decoder_input_ids=prompt, max_new_tokens=5, eos_token_id=None))
    assert torch.equal(torch.stack(steps, dim=1), out[:, 3:])
    samples = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=4, do_sample=True, num_return_sequences=2,
                             generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 7) and torch.equal(samples[:, :3], prompt.repeat(2, 1))


@pytest.mark.parametrize("shape,dtype,match", [
    ((2, 80, 200), torch.float32, "80 mel bins, the model reads 8"),
    ((2, 8, 3000), torch.float32, "3000 frames, the model reads exactly 200"),
    ((8, 200), torch.float32, "batch, num_mel_bins, frames"),
    ((2, 8, 200), torch.int64, "float tensor"),
])
def test_bad_features_are_refused(shape, dtype, match):
    model = small_model()
    feats = torch.zeros(shape, dtype=dtype)
    with pytest.raises(InputError, match=match):
        model(feats, torch.tensor([[91]] * shape[0]))
    with pytest.raises(InputError):
        model.generate(feats, max_new_tokens=2)


def test_too_long_decoder_inputs_and_masks_are_refused():
    model = small_model()
    feats = features()
    with pytest.raises(InputError, match="max_target_positions"):
        model(feats, torch.zeros(2, 33, dtype=torch.long))
    with pytest.raises(InputError, match="max_target_positions"):
        model(feats, labels=torch.zeros(2, 33, dtype=torch.long))
    with pytest.raises(InputError, match="max_target_positions"):
        model.generate(feats, decoder_input_ids=torch.full((2, 4), 91), max_new_tokens=30)
    with pytest.raises(InputError, match="rows"):
        model.generate(feats, decoder_input_ids=torch.full((3, 1), 91))
    with pytest.raises(InputError, match="attention_mask"):
        model.encode(feats, torch.ones(2, 200))
    with pytest.raises(InputError, match="encoder-decoder"):
        attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny")).generate(torch.ones(1, 2, dtype=torch.long),
                                                                         decoder_input_ids=torch.ones(1, 1).long())


@pytest.mark.parametrize("field,value", [("d_model", 30), ("activation", "tanh"), ("dropout", 1.0),
                                         ("decoder_start_token_id", 96), ("max_source_positions", 0)])
def test_config_rejects_bad_fields_naming_them(field, value):
    with pytest.raises(ConfigError, match=field):
        WhisperConfig.from_preset("whisper-test", **{field: value})


def test_decoder_prompt_reads_the_checkpoints_token_tables():
    """openai/whisper-* generation configs map languages and tasks to ids."""
    model = small_model()
    model.generation_config = attnkit.GenerationConfig(other=dict(
        lang_to_id={"<|en|>": 80, "<|de|>": 81}, task_to_id={"transcribe": 85, "translate": 84}, no_timestamps_token_id=89))
    assert model.decoder_prompt("de", "translate").tolist() == [[91, 81, 84, 89]]
    assert model.decoder_prompt("<|en|>", "transcribe", batch_size=2).tolist() == [[91, 80, 85, 89]] * 2
    assert model.decoder_prompt(timestamps=True).tolist() == [[91]]
    with pytest.raises(InputError, match="fr.*known"):
        model.decoder_prompt("fr")
    model.generation_config = attnkit.GenerationConfig()
    with pytest.raises(InputError, match="no_timestamps_token_id"):
        model.decoder_prompt()
