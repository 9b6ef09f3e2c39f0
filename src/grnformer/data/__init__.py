"""Data layer: resources, gene vocabulary, input validation, labels, corpus, sampler, collator, datasets."""
