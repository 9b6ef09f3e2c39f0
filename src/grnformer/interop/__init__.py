"""Other models' files read safely and converted into grnformer's terms (scPRINT's Lightning checkpoints)."""
