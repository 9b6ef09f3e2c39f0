"""The cell tasks of a trained model on a user's AnnData: embeddings, labels, denoised counts, adaptation.

One module per task, each with an in-memory function named like it (results written into the AnnData) and a
``*_file`` function that the CLI maps onto (input validated before anything is written; outputs atomic):
`tasks.embed.embed`, `tasks.classify.classify`, `tasks.denoise.denoise`, `tasks.adapt`. What they share (device,
prepared input, gene sets, the model loop, writers) is `inference`; gene networks are `networks`. Functions are
not re-exported here because each shares its module's name.
"""
