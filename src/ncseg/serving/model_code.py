"""The served model as MLflow models-from-code: MLflow runs this file to build the model when it logs or loads it,
so a logged model folder holds this code, the ncseg package and the weights (state dicts), and no pickle.

Not for import: running it hands the model to MLflow.
"""

import mlflow

from ncseg.serving.model import NcSegmenter

mlflow.models.set_model(NcSegmenter())
