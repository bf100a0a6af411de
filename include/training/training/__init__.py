"""Example trainer: what the training image runs (``python -m training``).

It honours the environment contract of ``plugins/model_lifecycle/training.py``: inputs as environment
variables, everything it produces in one MLflow run tagged with those inputs.
"""
