"""Data layer: resources, gene vocabulary, input validation, labels, corpus, sampler, collator, datasets.

`grnformer.data.prepare(adata_or_path, organism=None)` is the entry point for user data (docs/ARCHITECTURE.md);
the module of the same name stays importable as `from grnformer.data.input.prepare import MappingReport`.
"""

from grnformer.data.input.prepare import MappingReport, prepare

__all__ = ["MappingReport", "prepare"]
