"""attnkit.viz: attention weights as heat maps (PNG, through matplotlib) and a self-contained
HTML viewer."""

from attnkit.viz.attention import AttentionMaps, attention_html, attention_maps, plot_attention

__all__ = ["AttentionMaps", "attention_html", "attention_maps", "plot_attention"]
