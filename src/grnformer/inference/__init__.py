"""What every zero-shot use of a model shares, the cell tasks (`tasks`) and the networks (`networks`) alike.

- `device`: where the model runs and in which precision; loading a bundle onto it.
- `prepared`: a user's cells validated and mapped to the vocabulary, groups of cells, gene lists by name.
- `gene_sets`: the one owner of gene-set choice (most variable genes, TFs first: 'hvg+tfs', …).
- `loop`: batches of cells → collated contexts → model outputs.
- `options`: the `option` field helper and the option values and help texts shared by every command.
- `outputs`: atomic output files.
"""
