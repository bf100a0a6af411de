"""A pyfunc model whose class lives in this test package: cloudpickle saves the class by reference, so a
serving runtime without the package cannot load it (``No module named 'tests'``), whatever its MLmodel
says. What a model that depends on code the runtime does not have looks like."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class ForeignModel(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> list[int]:
        return [0] * len(model_input)
