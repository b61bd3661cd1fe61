"""The served model's home: `model` (the MLflow pyfunc, logged as code by `model_code`), `protocol` (what a request
and an answer hold, and the limits checked on each file's header), `server` (the `mlflow models serve` process) and
`sources` (which of ncseg's modules the served model runs: what its fingerprint covers).

Imports nothing: importing one module of the package must not pull in the others."""
