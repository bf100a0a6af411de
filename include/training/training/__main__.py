"""Example trainer: what the training image runs (``python -m training``); ``python -m
training.evaluate`` scores models on the evaluation dataset.

Both honour the environment contract of ``plugins/model_lifecycle/training.py``: inputs as environment
variables, everything they produce in MLflow runs tagged with those inputs.
"""
import sys

from training.train import main

sys.exit(main())
