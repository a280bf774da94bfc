"""xmodal: attention-based image-text cross-modal retrieval."""

__version__ = "0.1.0"
