"""Whisper: a speech recogniser (Radford et al. 2022, "Robust Speech Recognition via Large-Scale
Weak Supervision").

An encoder-decoder Transformer whose encoder reads 30 seconds of audio as an 80-bin log-mel
spectrogram (100 frames per second, :mod:`attnkit.audio`) and whose decoder writes the
transcript's tokens (§2.2, Figure 1). The differences from Vaswani et al. are composition: a
stem of two width-3 convolutions with GELU, the second of stride 2 (3000 frames -> 1500
vectors); fixed sinusoidal positions in the encoder and learned ones in the decoder;
pre-norm sublayers with exact GELU and a final LayerNorm per stack; no bias on the attention's
key projection; the LM head tied to the token embeddings. The layout and numerics follow
Hugging Face's ``WhisperForConditionalGeneration``.

Decoding starts from a prompt of special tokens, ``<|startoftranscript|><|en|><|transcribe|>
<|notimestamps|>`` in the multilingual models: ``generate(input_features, decoder_input_ids=prompt)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import check_token_ids
from attnkit.models.config import Config
from attnkit.models.encoder_decoder import EncoderDecoderModel
from attnkit.models.outputs import ModelOutput
from attnkit.nn import ConvSubsampling, Decoder, Encoder, LayerConfig, Linear, sinusoidal_positions


@dataclass(frozen=True)
class WhisperConfig(Config):
    """Sizes and variants of Whisper. Defaults are ``whisper-tiny`` (37.8M parameters) with the
    multilingual vocabulary and its special tokens."""

    model_type = "whisper"

    vocab_size: int = 51865
    num_mel_bins: int = 80
    d_model: int = 384
    n_heads: int = 6
    d_ff: int = 1536
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    max_source_positions: int = 1500  # encoder vectors: 30 s at 50 per second (3000 log-mel frames)
    max_target_positions: int = 448  # decoder positions
    activation: str = "gelu"
    norm_eps: float = 1e-5
    scale_embedding: bool = False  # × √d_model on the decoder's token embeddings (not in released checkpoints)
    dropout: float = 0.0  # on the embedding sums and every sublayer output
    attn_dropout: float = 0.0
    ffn_dropout: float = 0.0  # inside the feed-forward, after the activation
    pad_token_id: int = 50257
    bos_token_id: int | None = 50257
    eos_token_id: int | None = 50257  # <|endoftext|>
    decoder_start_token_id: int = 50258  # <|startoftranscript|>
    median_filter_width: int = 7  # smoothing of the alignment heads' attention for word timestamps

    def validate(self) -> None:
        self.require_positive("vocab_size", "num_mel_bins", "d_model", "n_heads", "d_ff", "n_encoder_layers",
                              "n_decoder_layers", "max_source_positions", "max_target_positions", "norm_eps")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.d_model % 2 == 0 and self.d_model >= 4, "d_model",
                     "must be even and at least 4 (sines and cosines of the encoder positions)")
        self.require(self.activation in ("gelu", "gelu_tanh", "relu", "silu"), "activation",
                     "must be one of 'gelu', 'gelu_tanh', 'relu', 'silu'")
        self.require_fraction("dropout", "attn_dropout", "ffn_dropout")
        self.require_token_ids("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
        self.require(isinstance(self.median_filter_width, int) and self.median_filter_width > 0
                     and self.median_filter_width % 2 == 1, "median_filter_width", "must be a positive odd integer")

    @property
    def n_frames(self) -> int:
        """Log-mel frames the encoder reads: the stem's stride 2 halves them to ``max_source_positions``."""
        return 2 * self.max_source_positions

    @property
    def n_samples(self) -> int:
        """16 kHz audio samples in one window: a log-mel frame every 160 (10 ms)."""
        return 160 * self.n_frames

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=self.activation,
            norm_eps=self.norm_eps, pre_norm=True, dropout=self.dropout, attn_dropout=self.attn_dropout,
            ffn_dropout=self.ffn_dropout, fused_qkv=False, key_bias=False,
        )


class Whisper(EncoderDecoderModel):
    """Whisper for speech recognition (Hugging Face's ``WhisperForConditionalGeneration``).

    ``forward(input_features (B, n_mels, 2·max_source_positions), decoder_input_ids (B, T) | labels (B, T))``
    returns a :class:`ModelOutput` with ``logits`` ``(B, T, V)``, ``loss`` (mean cross-entropy
    over the labels that are not -100; decoder inputs are the labels shifted right after
    ``decoder_start_token_id``) and ``encoder_last_hidden_state`` ``(B, max_source_positions, C)``.
    ``encode``, ``decode`` and the decoding protocol come from :class:`EncoderDecoderModel`;
    ``generate(input_features, decoder_input_ids=prompt, ...)`` transcribes.
    """

    config_class = WhisperConfig
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        c = config
        layer = c.layer_config()
        self.stem = ConvSubsampling(c.num_mel_bins, c.d_model)
        # Fixed sinusoids, kept as a frozen parameter as Hugging Face does: in the checkpoint and
        # the parameter count, never trained.
        self.encoder_positions = nn.Parameter(sinusoidal_positions(
            c.max_source_positions, c.d_model, interleave=False, reach_base=True), requires_grad=False)
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.decoder_positions = nn.Embedding(c.max_target_positions, c.d_model)
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Encoder(layer, c.n_encoder_layers)  # pre-norm: ends with its final LayerNorm
        self.decoder = Decoder(layer, c.n_decoder_layers, cross=True)
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        self.lm_head.weight = self.embed.weight  # Whisper's output projection is the embedding matrix

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Hugging Face's: N(0, 0.02) matrices and embeddings, zero biases (LayerNorms stay 1, 0)."""
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # -- hooks of EncoderDecoderModel ----------------------------------------------------------
    def _check_source(self, features: torch.Tensor) -> None:
        c = self.config
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
            what = f"{features.dtype} {tuple(features.shape)}" if isinstance(features, torch.Tensor) \
                else type(features).__name__
            raise InputError(f"input_features must be a float tensor (batch, num_mel_bins, frames), got {what}")
        if features.shape[1] != c.num_mel_bins:
            raise InputError(f"input_features has {features.shape[1]} mel bins, the model reads {c.num_mel_bins} "
                             "(num_mel_bins); compute them with attnkit.audio.log_mel_spectrogram(audio, n_mels=...)")
        if features.shape[2] != c.n_frames:
            raise InputError(f"input_features has {features.shape[2]} frames, the model reads exactly {c.n_frames} "
                             f"(2 × max_source_positions: 30 s); pad or trim the audio first "
                             "(attnkit.audio.pad_or_trim)")

    def _check_ids(self, ids: torch.Tensor, name: str, offset: int = 0) -> None:
        check_token_ids(ids, name, self.config.vocab_size)
        if offset + ids.shape[1] > self.config.max_target_positions:
            raise InputError(f"{name} reaches decoder position {offset + ids.shape[1]}, beyond the model's "
                             f"{self.config.max_target_positions} (max_target_positions); shorten the transcript")

    def _check_new_tokens(self, max_new_tokens: int) -> None:
        if max_new_tokens > self.config.max_target_positions:
            raise InputError(f"cannot decode so many tokens: the prompt and the new tokens but the last fill "
                             f"{max_new_tokens} decoder positions, the model has {self.config.max_target_positions} "
                             "(max_target_positions)")

    def _embed_source(self, features: torch.Tensor) -> torch.Tensor:
        x = self.stem(features.to(self.stem.conv1.weight.dtype))  # (B, S, C)
        return self.drop(x + self.encoder_positions[: x.shape[1]].to(x.dtype))

    def _embed_target(self, decoder_input_ids: torch.Tensor, offset: int) -> torch.Tensor:
        T = decoder_input_ids.shape[1]
        pos = self.decoder_positions.weight[offset: offset + T]  # (T, C)
        x = self.embed(decoder_input_ids)
        return self.drop((x * self.embed_scale if self.embed_scale != 1.0 else x) + pos)

    # -- Hugging Face's argument names -------------------------------------------------------
    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        """Run the encoder on ``input_features`` ``(B, num_mel_bins, 2·max_source_positions)``.
        Returns ``last_hidden_state`` ``(B, max_source_positions, C)`` (and ``attentions``,
        ``hidden_states`` when asked). Whisper reads whole 30-second windows: there is no
        encoder ``attention_mask`` (silence is padding the model was trained on)."""
        if attention_mask is not None:
            raise InputError("Whisper's encoder takes no attention_mask: it reads whole 30-second windows of "
                             "log-mel features, padded with silence")
        return super().encode(input_features, None, output_attentions, output_hidden_states)

    def forward(
        self,
        input_features: torch.Tensor,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """Args:
            input_features: ``(B, num_mel_bins, 2·max_source_positions)`` log-mel features
                (:func:`attnkit.audio.log_mel_spectrogram` of 30 s of 16 kHz audio).
            decoder_input_ids: ``(B, T)`` decoder tokens; made from ``labels`` by shifting right
                after ``decoder_start_token_id`` when omitted.
            labels: ``(B, T)`` target ids, -100 ignored.
            decoder_attention_mask: ``(B, T)`` target padding mask (True/1 = real token).
            output_attentions / output_hidden_states: every layer's weights / hidden states.
        """
        return super().forward(input_features, None, decoder_input_ids, labels, decoder_attention_mask,
                               output_attentions, output_hidden_states)

    def decoder_prompt(self, language: str | None = None, task: str | None = None, timestamps: bool = False,
                       batch_size: int = 1) -> torch.Tensor:
        """The ``(batch_size, P)`` decoder prompt of Radford et al. 2022 §2.3 (Figure 1):
        ``<|startoftranscript|>``, then the language (``"en"`` or ``"<|en|>"``) and the task
        (``"transcribe"`` or ``"translate"``) when given, then ``<|notimestamps|>`` unless
        ``timestamps``. The ids come from the checkpoint's generation config (``lang_to_id``,
        ``task_to_id``, ``no_timestamps_token_id``, as in ``openai/whisper-*``); a language left
        out is the model's to predict. Pass it as ``generate(features, decoder_input_ids=prompt)``."""
        gen = self.generation_config

        def token(table_name: str, key: str) -> int:
            table = gen.other.get(table_name)
            if not isinstance(table, dict) or key not in table:
                known = sorted(table) if isinstance(table, dict) else "none (an English-only checkpoint?)"
                raise InputError(f"{key!r} is not in the generation config's {table_name}; known: {known}")
            return table[key]

        start = self.config.decoder_start_token_id if gen.decoder_start_token_id is None else gen.decoder_start_token_id
        ids = [start]
        if language is not None:
            ids.append(token("lang_to_id", language if language.startswith("<|") else f"<|{language}|>"))
        if task is not None:
            ids.append(token("task_to_id", task))
        if not timestamps:
            no_timestamps = gen.other.get("no_timestamps_token_id")
            if not isinstance(no_timestamps, int):
                raise InputError("the generation config has no no_timestamps_token_id: pass timestamps=True or "
                                 "build the prompt by hand")
            ids.append(no_timestamps)
        check_token_ids(torch.tensor([ids]), "decoder prompt", self.config.vocab_size)
        return torch.tensor([ids] * batch_size, device=self.device)

    @torch.no_grad()
    def detect_language(self, input_features: torch.Tensor) -> torch.Tensor:
        """The ``(B,)`` language token ids the model predicts right after ``<|startoftranscript|>``
        (Radford et al. 2022 §2.3: the likeliest of the generation config's ``lang_to_id``
        tokens), as Hugging Face's ``WhisperForConditionalGeneration.detect_language``."""
        table = self.generation_config.other.get("lang_to_id")
        if not isinstance(table, dict) or not table:
            raise InputError("the generation config has no lang_to_id table: this checkpoint cannot detect "
                             "languages (an English-only or custom model)")
        start = self.decoder_prompt(batch_size=input_features.shape[0], timestamps=True)  # the start token alone
        logits = self(input_features, decoder_input_ids=start).logits[:, -1]  # (B, V)
        languages = torch.tensor(sorted(table.values()), device=logits.device)
        return languages[logits[:, languages].argmax(-1)]

    def generate(self, input_features: torch.Tensor, **kwargs) -> torch.Tensor:
        """Transcribe ``input_features`` ``(B, num_mel_bins, frames)``: :func:`attnkit.generation.generate`
        with the decoder prompt in ``decoder_input_ids`` ``(B, P)`` (default: the start token).
        Returns the prompt followed by the new tokens."""
        return super().generate(input_features, **kwargs)

    def stream(self, input_features: torch.Tensor, **kwargs):
        """The new tokens one ``(B,)`` step at a time; see :func:`attnkit.generation.stream`."""
        return super().stream(input_features, **kwargs)
