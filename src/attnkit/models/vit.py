"""ViT: the Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

An image is cut into patches, each projected linearly (eq. 1), a learned [CLS] token is put
in front, learned position embeddings are added, and a pre-norm Transformer encoder (GELU
MLP, LayerNorm eps 1e-12 as Hugging Face's ViT) with a final LayerNorm reads the sequence
(eqs. 2-3). The image classifier is a linear layer on the final [CLS] state (eq. 4, the
fine-tuning head); an optional tanh pooler over [CLS] is Hugging Face's ``ViTModel``'s. Images
of another size reuse the position embeddings resized bicubically (§3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model
from attnkit.models.classification import ClassifierLoss, ClassLabels, ProblemType
from attnkit.models.config import Config
from attnkit.models.outputs import ModelOutput
from attnkit.nn import ACTIVATIONS, Encoder, LayerConfig, PatchEmbedding, resize_position_grid


@dataclass(frozen=True)
class ViTConfig(ClassLabels, Config):
    """Sizes of a Vision Transformer. Defaults are ViT-Base/16 at 224 × 224 pixels (Dosovitskiy et
    al. 2021, Table 1) with Hugging Face's defaults elsewhere (no dropout, two labels)."""

    model_type = "vit"

    image_size: int | tuple[int, int] = 224  # square images of this side, or (height, width) in pixels
    patch_size: int = 16
    num_channels: int = 3
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.0
    attn_dropout: float = 0.0
    qkv_bias: bool = True  # biases on the query/key/value projections
    initializer_range: float = 0.02
    num_labels: int = 2
    # The classifier's loss; None infers it from num_labels and the labels' dtype (as HF).
    problem_type: ProblemType | None = None
    # The classes' names in id order (Hugging Face's id2label); None names them LABEL_0, LABEL_1, ...
    label_names: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.require_positive("patch_size", "num_channels", "d_model", "n_layers", "n_heads", "d_ff", "norm_eps")
        self.require(all(side > 0 and side % self.patch_size == 0 for side in self.image_hw), "image_size",
                     f"must be positive and divisible by patch_size ({self.patch_size}) on each side")
        self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        self.require(self.activation in ACTIVATIONS, "activation", f"must be one of {tuple(ACTIVATIONS)}")
        self.require_fraction("dropout", "attn_dropout")
        self.validate_labels()

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the images the model takes."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches down and across an ``image_size`` image."""
        return self.image_hw[0] // self.patch_size, self.image_hw[1] // self.patch_size

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, activation=self.activation, norm="layernorm",
            norm_eps=self.norm_eps, pre_norm=True, bias=True, qkv_bias=self.qkv_bias, dropout=self.dropout,
            attn_dropout=self.attn_dropout,
            ffn_dropout=0.0,  # as Hugging Face's ViT: dropout on the sublayer outputs only
        )


class ViT(Model):
    """The ViT encoder (Hugging Face's ``ViTModel``).

    ``forward(pixel_values (B, num_channels, H, W))`` returns a :class:`ModelOutput` with
    ``last_hidden_state`` ``(B, 1 + P, C)`` after the final norm ([CLS] first, then the ``P``
    patches in row-major order) and, with the pooler, ``pooler_output`` ``(B, C)``.
    ``hidden_states`` are, as in Hugging Face's ViT, the embeddings and each layer's output, the
    last one before the final norm.
    """

    config_class = ViTConfig

    def __init__(self, config: ViTConfig, add_pooler: bool = True):
        super().__init__(config)
        c = config
        self.patch_embed = PatchEmbedding(c.num_channels, c.d_model, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + c.grid[0] * c.grid[1], c.d_model))  # [CLS], the grid
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Encoder(c.layer_config(), c.n_layers, final_norm=False)
        self.final_norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.pooler = nn.Linear(c.d_model, c.d_model) if add_pooler else None
        self.apply(lambda m: init_vit_weights(m, c.initializer_range))

    def forward(self, pixel_values: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False,
                interpolate_pos_encoding: bool = False) -> ModelOutput:
        """Args:
            pixel_values: ``(B, num_channels, H, W)`` float pixels (normalised as in training);
                cast to the model's dtype.
            interpolate_pos_encoding: for images of another size than ``image_size`` (sides
                multiples of ``patch_size``), resize the grid of position embeddings bicubically
                (§3.2) as Hugging Face does (from a square grid only, as there); without it such
                images are an :class:`InputError`.
        """
        x = self._embed(pixel_values, interpolate_pos_encoding)
        out = self.encoder(x, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = self.final_norm(out.hidden)  # eq. 4's LN, over every position
        pooled = torch.tanh(self.pooler(h[:, 0])) if self.pooler is not None else None
        return ModelOutput(last_hidden_state=h, pooler_output=pooled, attentions=out.attentions,
                           hidden_states=out.hidden_states)

    def _embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> torch.Tensor:
        """Eq. 1: ``[x_class; x_p¹E; ...; x_pᴾE] + E_pos``, then dropout. Returns ``(B, 1 + P, C)``."""
        c = self.config
        B, _, H, W = check_pixel_values(pixel_values, c.num_channels, c.image_hw, c.patch_size,
                                        interpolate_pos_encoding)
        patches = self.patch_embed(pixel_values.to(self.patch_embed.proj.weight.dtype))  # (B, P, C)
        positions = self.position_embeddings  # (1, 1 + P, C)
        h, w = H // c.patch_size, W // c.patch_size
        if (h, w) != c.grid:
            grid = resize_position_grid(positions[:, 1:], h, w)  # (1, h·w, C)
            positions = torch.cat([positions[:, :1], grid], dim=1)  # (1, 1 + h·w, C)
        x = torch.cat([self.cls_token.expand(B, -1, -1), patches], dim=1)  # (B, 1 + P, C)
        return self.drop(x + positions)


def check_pixel_values(pixel_values, channels: int, image_hw: tuple[int, int], patch_size: int,
                       interpolate_pos_encoding: bool) -> tuple[int, int, int, int]:
    """``(B, channels, H, W)`` of images a Vision Transformer takes, after checking them: float
    ``(batch, channels, height, width)``, the model's channels, its ``image_hw`` (any size with
    ``interpolate_pos_encoding``), sides that are positive multiples of ``patch_size`` (or the
    trained size, whose border the patches leave out as in training: SigLIP so400m's 384 pixels
    in 14-pixel patches). Else an :class:`InputError` naming the problem."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or not pixel_values.is_floating_point():
        got = f"{getattr(pixel_values, 'dtype', type(pixel_values))} {tuple(getattr(pixel_values, 'shape', ()))}"
        raise InputError(f"pixel_values must be a float tensor (batch, channels, height, width), got {got}")
    B, n, H, W = pixel_values.shape
    if n != channels:
        raise InputError(f"pixel_values has {n} channels, the model takes {channels} (num_channels)")
    if not interpolate_pos_encoding and (H, W) != tuple(image_hw):
        raise InputError(f"images are {H}x{W} pixels, the model takes {image_hw[0]}x{image_hw[1]} (image_size); "
                         "pass interpolate_pos_encoding=True to resize its position embeddings to other sizes")
    if (H % patch_size or W % patch_size or H == 0 or W == 0) and (H, W) != tuple(image_hw):
        raise InputError(f"images are {H}x{W} pixels; height and width must be positive multiples of patch_size "
                         f"({patch_size}), or pixels at the borders would be dropped")
    return B, n, H, W


def init_vit_weights(module: nn.Module, std: float) -> None:
    """ViT's initialisation (Hugging Face's, from the reference code): truncated N(0, std)
    matrices, convolution, [CLS] token and positions; zero biases; unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    if isinstance(module, ViT):
        nn.init.trunc_normal_(module.cls_token, std=std)
        nn.init.trunc_normal_(module.position_embeddings, std=std)


class ViTForImageClassification(ClassifierLoss, Model):
    """Image classifier: a linear layer on the final [CLS] state (Dosovitskiy et al. 2021 eq. 4;
    Hugging Face's ``ViTForImageClassification``), ``logits`` ``(B, num_labels)``. ``labels``
    give ``loss`` by ``config.problem_type`` (see
    :class:`~attnkit.models.classification.ClassifierLoss`): integer class ids ``(B,)`` are
    cross-entropy. ``self.vit`` is the encoder (without pooler)."""

    config_class = ViTConfig
    base_model_prefix, base_model_class = "vit", ViT

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.vit = ViT(config, add_pooler=False)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        init_vit_weights(self.classifier, config.initializer_range)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, interpolate_pos_encoding: bool = False) -> ModelOutput:
        """See :meth:`ViT.forward`; ``labels`` ``(B,)`` class ids (or floats, per ``problem_type``)."""
        out = self.vit(pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding)
        out.logits = self.classifier(out.last_hidden_state[:, 0])  # (B, num_labels) from [CLS]
        if labels is not None:
            out.loss = self.classification_loss(out.logits, labels)
        return out
