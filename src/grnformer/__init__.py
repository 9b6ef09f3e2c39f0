"""grnformer: pre-train a single-cell foundation model and read gene regulatory networks from its attention."""

from grnformer.errors import InputError, ResourceError

__version__ = "0.1.0"
__all__ = ["InputError", "Model", "ResourceError", "__version__", "load"]


def __getattr__(name: str):
    """``grnformer.load`` and ``grnformer.Model`` (`grnformer.api`), imported on first use so that ``import
    grnformer`` stays fast."""
    if name in ("load", "Model"):
        from grnformer import api

        return getattr(api, name)
    raise AttributeError(f"module 'grnformer' has no attribute '{name}'")
