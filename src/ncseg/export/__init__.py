"""Exporters: a registered model in the formats other tools run (BioImage.IO for deepImageJ/Fiji, ilastik, QuPath).

Each is its own module with its own optional dependencies (`pip install 'ncseg[export]'`); nothing in the core
imports them.
"""
