"""Zero-shot use of a trained model on a user's AnnData: embeddings, labels, denoised counts, gene networks.

One module per task, each with an in-memory function named like it (results written into the AnnData, or a
network AnnData returned) and a ``*_file`` function that the CLI maps onto (input validated before anything is
written; outputs atomic): `tasks.embed.embed`, `tasks.classify.classify`, `tasks.denoise.denoise`,
`networks.grn.grn` with head selection in `networks.heads`, writers in `inference.outputs`. Functions are not re-exported
here because each shares its module's name.
"""
