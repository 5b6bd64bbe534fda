"""The pipeline stages of the moderation template, one module per stage (see dvc.yaml)."""
