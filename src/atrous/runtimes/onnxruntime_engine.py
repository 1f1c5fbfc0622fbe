"""ONNX Runtime engine: CPU execution provider, intra-op threads = ``threads``, one inter-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atrous.errors import ModelError
from atrous.runtimes.torch_engine import default_threads

__all__ = ["OrtEngine", "ORT_DTYPES", "cast_input"]

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


class OrtEngine:
    """Runs an ONNX file with ONNX Runtime.

    Sequential execution with ``intra_op_num_threads=threads`` and one inter-op thread, all graph
    optimizations on: the configuration that is fastest for one image on a few cores. Float
    batches are cast to the model's input dtype (e.g. uint8 for foreign models taking raw pixels).

    Args:
        path: the .onnx file.
        threads: intra-op threads; None uses every core this process may run on.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it: {first}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input = inputs[0]
        self.input_dtype = ORT_DTYPES.get(self.input.type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()[:1]]

    @property
    def metadata(self) -> dict[str, str]:
        """The model's custom metadata (where the card lives)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def input_shape(self) -> list[int | str | None]:
        """Input shape with symbolic dimensions as strings (or None)."""
        return list(self.input.shape)

    @property
    def output_shape(self) -> list[int | str | None]:
        """First output's shape with symbolic dimensions as strings (or None)."""
        return list(self.session.get_outputs()[0].shape)

    @property
    def output_dtype(self) -> type:
        """NumPy dtype of the first output."""
        return ORT_DTYPES.get(self.session.get_outputs()[0].type, np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for one batch (cast to the input's dtype first)."""
        x = np.ascontiguousarray(cast_input(batch, self.input_dtype))
        return self.session.run(self.output_names, {self.input.name: x})[0]

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads and model file."""
        import onnxruntime as ort

        return {
            "engine": self.name,
            "version": ort.__version__,
            "threads": self.threads,
            "model": str(self.path),
        }


def cast_input(batch: np.ndarray, dtype: type) -> np.ndarray:
    """Cast a float batch to an integer input dtype by rounding and clipping, else to ``dtype``."""
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(batch.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(batch), info.min, info.max).astype(dtype)
    return batch.astype(dtype, copy=False)
