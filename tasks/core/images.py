"""What reading an image file can raise, shared by the validate and clean stages."""

from __future__ import annotations

from PIL import Image

# Pillow raises OSError (UnidentifiedImageError is one) for missing or undecodable files,
# SyntaxError from some format plugins on corrupt chunks, DecompressionBombError for huge ones.
IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)
