"""attnkit.vision: the image front end of Vision Transformers (Hugging Face's ViT image
processor) and image files."""

from attnkit.vision.images import ImageProcessor, load_image

__all__ = ["ImageProcessor", "load_image"]
