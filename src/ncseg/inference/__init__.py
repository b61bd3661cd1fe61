"""Whole images through networks, one code path for validation during training, out-of-fold predictions, the
MLflow pyfunc model and `ncseg predict`, so what is measured in cross-validation is what users run:
`runtime` (device, precision, memory layout) and `tiling` (overlap-tiling, ensembling). The input channels come
from `ncseg.normalization`."""
