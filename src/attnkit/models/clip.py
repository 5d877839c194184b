"""Image-text dual encoders: CLIP and SigLIP.

**CLIP** (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"). Two Transformers read an image and a text into one embedding space (§2.4,
Figure 3): the image encoder is a Vision Transformer with a [CLS] token and an extra LayerNorm
before the encoder ("a minor modification", §2.4); its final [CLS] state, normed, is the
image's feature. The text encoder is a causal Transformer over byte-pair tokens whose state at
the end-of-text token, after a final LayerNorm, is the text's feature. Linear projections
(without biases) map both to ``projection_dim``; the logits of an image-text pair are their
cosine similarity times a learned temperature ``exp(logit_scale)`` (Figure 3's pseudocode), and
the loss is the symmetric cross-entropy over the batch's pairings. Layers are pre-norm with
quick-GELU MLPs, as the released checkpoints (Hugging Face's ``CLIPModel``).

**SigLIP** (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"). The same two
towers with other details, as ``google/siglip-*`` (Hugging Face's ``SiglipModel``): the image
encoder has no [CLS] token and no LayerNorm before the encoder; its states are normed and
pooled by attention from a learned probe (a "MAP" head: one cross-attention, then an MLP with a
residual). The text encoder is bidirectional; its feature is its last position's state (texts
are padded to the full length, without a mask, as trained) through a linear head. The logits
add a learned bias to the scaled cosine similarity, and the loss scores each image-text pair
on its own with a sigmoid (§3, Eq. 1), every pair of the batch but the matching ones a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.config import Config
from attnkit.models.outputs import ContrastiveOutput
from attnkit.models.vit import check_pixel_values
from attnkit.nn import (ACTIVATIONS, Encoder, FeedForward, LayerConfig, MultiHeadAttention, PatchEmbedding,
                        causal_mask, resize_position_grid)
from attnkit.nn.masks import as_padding_mask, expand_padding_mask


@dataclass(frozen=True)
class ClipConfig(Config):
    """Sizes of a CLIP model. Defaults are ViT-B/32 (``openai/clip-vit-base-patch32``): a 12-layer,
    512-wide text encoder over 77 positions and a 12-layer, 768-wide ViT over 224 × 224 images
    in 32 × 32 patches, both projected to 512 (Radford et al. 2021, Tables 19-20)."""

    model_type = "clip"

    vocab_size: int = 49408
    n_positions: int = 77  # text positions
    text_d_model: int = 512
    text_n_layers: int = 12
    text_n_heads: int = 8
    text_d_ff: int = 2048
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    vision_d_model: int = 768
    vision_n_layers: int = 12
    vision_n_heads: int = 12
    vision_d_ff: int = 3072
    projection_dim: int = 512
    activation: str = "quick_gelu"
    norm_eps: float = 1e-5
    attn_dropout: float = 0.0
    logit_scale_init: float = 2.6592  # log(1 / 0.07), §2.5
    initializer_range: float = 0.02
    pad_token_id: int | None = 1
    bos_token_id: int | None = 49406
    eos_token_id: int | None = 49407  # the text's feature is read here (2: at the highest id, as old configs say)

    def validate(self) -> None:
        self.require_positive("vocab_size", "n_positions", "text_d_model", "text_n_layers", "text_n_heads", "text_d_ff",
                              "image_size", "patch_size", "num_channels", "vision_d_model", "vision_n_layers",
                              "vision_n_heads", "vision_d_ff", "projection_dim", "norm_eps")
        self.require(self.image_size >= self.patch_size, "image_size",
                     f"must be at least patch_size ({self.patch_size})")
        for side in ("text", "vision"):
            d, h = getattr(self, f"{side}_d_model"), getattr(self, f"{side}_n_heads")
            self.require(d % h == 0, f"{side}_d_model", f"must be divisible by {side}_n_heads ({h})")
        self.require(self.activation in ACTIVATIONS, "activation", f"must be one of {tuple(ACTIVATIONS)}")
        self.require_fraction("attn_dropout")
        self.require_token_ids("pad_token_id", "bos_token_id", "eos_token_id")

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.image_size, self.image_size

    @property
    def grid(self) -> int:
        """Patches down (and across) an ``image_size`` image (a border narrower than a patch is left out)."""
        return self.image_size // self.patch_size

    def layer_config(self, side: str) -> LayerConfig:
        """The layers of the ``"text"`` or ``"vision"`` encoder."""
        return LayerConfig(d_model=getattr(self, f"{side}_d_model"), n_heads=getattr(self, f"{side}_n_heads"),
                           d_ff=getattr(self, f"{side}_d_ff"), activation=self.activation, norm="layernorm",
                           norm_eps=self.norm_eps, pre_norm=True, bias=True, attn_dropout=self.attn_dropout)


@dataclass(frozen=True)
class SiglipConfig(ClipConfig):
    """Sizes of a SigLIP model. Defaults are ``google/siglip-base-patch16-224`` (B/16): 12-layer,
    768-wide towers, 224 × 224 images in 16 × 16 patches, 64 text positions over a 32,000-token
    SentencePiece vocabulary (Zhai et al. 2023)."""

    model_type = "siglip"

    vocab_size: int = 32000
    n_positions: int = 64
    text_d_model: int = 768
    text_n_heads: int = 12
    text_d_ff: int = 3072
    patch_size: int = 16
    projection_dim: int = 768  # the text head's output (Hugging Face's projection_size); the image's is its width
    activation: str = "gelu_tanh"
    norm_eps: float = 1e-6
    logit_scale_init: float = 2.302585  # log(10), §3.2
    logit_bias_init: float = -10.0
    vision_use_head: bool = True  # the attention-pooling head; without it there is no image feature
    pad_token_id: int | None = 1
    bos_token_id: int | None = None
    eos_token_id: int | None = 1

    def validate(self) -> None:
        super().validate()
        self.require(self.projection_dim == self.vision_d_model or not self.vision_use_head, "projection_dim",
                     f"must equal vision_d_model ({self.vision_d_model}): the image and text features are compared")


class DualEncoder(Model):
    """What CLIP and SigLIP share: ``get_text_features(input_ids, attention_mask)`` and
    ``get_image_features(pixel_values)`` give the features ``(B, projection_dim)`` (not
    normalised, as Hugging Face's); ``forward(input_ids, pixel_values, attention_mask,
    return_loss)`` a :class:`ContrastiveOutput`: ``logits_per_image`` ``(images, texts)`` and
    ``logits_per_text``, the cosine similarities times ``exp(logit_scale)`` (plus ``logit_bias``),
    the normalised features, and with ``return_loss`` the loss of pairing the i-th image with the
    i-th text (:meth:`pairing_loss`)."""

    main_input_name = "pixel_values"

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Text features ``(B, projection_dim)`` of ``(B, T)`` token ids (``attention_mask``: 1 on real tokens)."""
        check_token_ids(input_ids, "input_ids", self.config.vocab_size)
        if input_ids.shape[1] > self.config.n_positions:
            raise InputError(f"texts of {input_ids.shape[1]} tokens are longer than the model's "
                             f"{self.config.n_positions} positions (n_positions)")
        return self.text_model(input_ids, attention_mask)[1]

    def get_image_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """Image features ``(B, projection_dim)`` of ``(B, channels, H, W)`` pixels (normalised with
        the checkpoint's mean and std)."""
        return self.vision_model(pixel_values, interpolate_pos_encoding)[1]

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                return_loss: bool = False, interpolate_pos_encoding: bool = False) -> ContrastiveOutput:
        image = F.normalize(self.get_image_features(pixel_values, interpolate_pos_encoding), dim=-1)
        text = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        logits_per_text = text @ image.T * self.logit_scale.exp()  # (texts, images)
        if self.logit_bias is not None:
            logits_per_text = logits_per_text + self.logit_bias
        out = ContrastiveOutput(logits_per_image=logits_per_text.T, logits_per_text=logits_per_text,
                                text_embeds=text, image_embeds=image)
        if return_loss:
            if len(text) != len(image):
                raise InputError(f"the loss pairs the i-th image with the i-th text: got {len(image)} images and "
                                 f"{len(text)} texts")
            out.loss = self.pairing_loss(logits_per_text)
        return out

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class TextTower(nn.Module):
    """Token and learned position embeddings, a pre-norm encoder with a final LayerNorm, and the
    text's feature: CLIP's (causal, the state at the end-of-text token) or, with ``siglip``,
    SigLIP's (bidirectional, the last position's state through ``head``). ``(B, T)`` ids ->
    ``(states (B, T, C), feature)``."""

    def __init__(self, config: ClipConfig, siglip: bool = False):
        super().__init__()
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_d_model)
        self.position_embedding = nn.Embedding(c.n_positions, c.text_d_model)
        self.encoder = Encoder(c.layer_config("text"), c.text_n_layers, final_norm=True)
        self.head = nn.Linear(c.text_d_model, c.projection_dim) if siglip else None
        self.eos_token_id = c.eos_token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        B, T = input_ids.shape
        x = self.token_embedding(input_ids) + self.position_embedding(torch.arange(T, device=input_ids.device))
        padding = None if attention_mask is None else as_padding_mask(attention_mask, B, T)
        if self.head is not None:  # SigLIP: bidirectional, the last position
            h = self.encoder(x, mask=None if padding is None else expand_padding_mask(padding)).hidden
            return h, self.head(h[:, -1])
        mask = causal_mask(T, T, device=input_ids.device)  # (T, T)
        h = self.encoder(x, mask=mask if padding is None else mask & expand_padding_mask(padding)).hidden
        # the end-of-text token: its first occurrence (old configs with eos_token_id 2: the highest id)
        end = input_ids.argmax(-1) if self.eos_token_id in (None, 2) else \
            (input_ids == self.eos_token_id).int().argmax(-1)
        return h, h[torch.arange(B, device=h.device), end]


class VisionTower(nn.Module):
    """Patches with learned positions and a pre-norm encoder, and the image's feature: CLIP's (a
    [CLS] token in front, a LayerNorm before the encoder, the final [CLS] state normed) or, with
    ``siglip``, SigLIP's (every state normed, then pooled by :class:`AttentionPooling`).
    ``(B, channels, H, W)`` -> ``(states (B, [1 +] P, C), feature)``."""

    def __init__(self, config: ClipConfig, siglip: bool = False):
        super().__init__()
        c = config
        self.config = c
        self.patch_embed = PatchEmbedding(c.num_channels, c.vision_d_model, c.patch_size, bias=siglip)
        self.class_embedding = None if siglip else nn.Parameter(torch.zeros(c.vision_d_model))
        self.position_embedding = nn.Embedding(c.grid ** 2 + (not siglip), c.vision_d_model)
        self.pre_norm = None if siglip else nn.LayerNorm(c.vision_d_model, eps=c.norm_eps)
        self.encoder = Encoder(c.layer_config("vision"), c.vision_n_layers, final_norm=False)
        self.post_norm = nn.LayerNorm(c.vision_d_model, eps=c.norm_eps)
        self.head = AttentionPooling(c) if siglip and c.vision_use_head else None

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False):
        c = self.config
        B, _, H, W = check_pixel_values(pixel_values, c.num_channels, c.image_hw, c.patch_size,
                                        interpolate_pos_encoding)
        x = self.patch_embed(pixel_values.to(self.position_embedding.weight.dtype))  # (B, P, C)
        positions = self.position_embedding.weight[None]  # (1, [1 +] P, C)
        cls = self.class_embedding is not None
        if (H, W) != c.image_hw:  # the grid of patch positions resized bicubically, as ViT's
            grid = resize_position_grid(positions[:, int(cls):], H // c.patch_size, W // c.patch_size)
            positions = torch.cat([positions[:, :1], grid], dim=1) if cls else grid
        if cls:
            x = torch.cat([self.class_embedding.expand(B, 1, -1), x], dim=1)
        x = x + positions
        h = self.encoder(x if self.pre_norm is None else self.pre_norm(x)).hidden
        if cls:
            return h, self.post_norm(h[:, 0])
        h = self.post_norm(h)
        return h, None if self.head is None else self.head(h)


class AttentionPooling(nn.Module):
    """SigLIP's "MAP" head: a learned probe attends over the image's states (one multi-head
    cross-attention), then ``x + MLP(LayerNorm(x))``. ``(B, P, C)`` -> ``(B, C)``."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        c = config
        self.probe = nn.Parameter(torch.zeros(1, 1, c.vision_d_model))
        self.attention = MultiHeadAttention(c.vision_d_model, c.vision_n_heads, cross=True)
        self.norm = nn.LayerNorm(c.vision_d_model, eps=c.norm_eps)
        self.mlp = FeedForward(c.vision_d_model, c.vision_d_ff, c.activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.probe.expand(len(h), -1, -1), context=h)[0]  # (B, 1, C)
        return (x + self.mlp(self.norm(x)))[:, 0]


class Clip(DualEncoder):
    """The CLIP dual encoder (Hugging Face's ``CLIPModel``); see :class:`DualEncoder`. The
    features are the towers' projected (``text_projection``, ``visual_projection``, no biases);
    the loss is the symmetric cross-entropy (Radford et al. 2021, Figure 3)."""

    config_class = ClipConfig

    def __init__(self, config: ClipConfig):
        super().__init__(config)
        c = config
        self.text_model = TextTower(c)
        self.vision_model = VisionTower(c)
        self.text_projection = nn.Linear(c.text_d_model, c.projection_dim, bias=False)
        self.visual_projection = nn.Linear(c.vision_d_model, c.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))
        self.register_parameter("logit_bias", None)
        self.apply(self._init_weights)
        nn.init.normal_(self.vision_model.class_embedding, std=c.vision_d_model ** -0.5)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_projection(super().get_text_features(input_ids, attention_mask))

    def get_image_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        return self.visual_projection(super().get_image_features(pixel_values, interpolate_pos_encoding))

    @staticmethod
    def pairing_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each text over the images and each image over the texts, averaged."""
        targets = torch.arange(len(logits_per_text), device=logits_per_text.device)
        return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.T, targets)) / 2


class Siglip(DualEncoder):
    """The SigLIP dual encoder (Hugging Face's ``SiglipModel``); see :class:`DualEncoder`. The
    features are the text head's and the attention pooling's outputs; the logits add
    ``logit_bias``; the loss is the sigmoid loss (Zhai et al. 2023, Eq. 1): ``-Σ log σ(z · t)``
    over every pair, ``z`` = 1 for the matching pairs and -1 for the others, summed over the
    images and averaged over the texts."""

    config_class = SiglipConfig

    def __init__(self, config: SiglipConfig):
        super().__init__(config)
        c = config
        self.text_model = TextTower(c, siglip=True)
        self.vision_model = VisionTower(c, siglip=True)
        self.logit_scale = nn.Parameter(torch.tensor([float(c.logit_scale_init)]))
        self.logit_bias = nn.Parameter(torch.tensor([float(c.logit_bias_init)]))
        self.apply(self._init_weights)

    def get_image_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if self.vision_model.head is None:
            raise InputError("this SigLIP has no image feature: its vision tower has no pooling head (vision_use_head)")
        return super().get_image_features(pixel_values, interpolate_pos_encoding)

    @staticmethod
    def pairing_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
        signs = 2 * torch.eye(len(logits_per_text), device=logits_per_text.device) - 1
        return -F.logsigmoid(signs * logits_per_text).sum(dim=-1).mean()
