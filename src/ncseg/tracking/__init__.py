"""MLflow, in one package: `store` (where the store is, its locks, relocating it; no MLflow import) and `runs`
(experiments, tags, nested runs, what gets logged). Training, evaluation and registration log through `runs`."""
