"""grnformer: pre-train a single-cell foundation model and read gene regulatory networks from its attention."""

from grnformer.errors import InputError, ResourceError

__version__ = "0.1.0"
__all__ = ["InputError", "ResourceError", "__version__"]
