"""The training corpus wing: the named real datasets, the on-disk sharded store and its builder, samplers, the
TileDB-SOMA reader, label encoders, the authors' labels mapped to Cell Ontology, silver labels and the
co-expression prior."""
