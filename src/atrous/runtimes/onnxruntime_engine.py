"""ONNX Runtime engine: CPU execution provider, intra-op threads = ``threads``, one inter-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atrous.errors import ModelError
from atrous.runtimes._common import CARD_KEY, cast_input, error_line
from atrous.runtimes.contract import Signature
from atrous.runtimes.torch_engine import default_threads

__all__ = ["OrtEngine", "ORT_DTYPES"]

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
            raise ModelError(
                f"{self.path}: ONNX Runtime cannot load it: {error_line(exc)}"
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input = inputs[0]
        self.input_dtype = ORT_DTYPES.get(self.input.type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()[:1]]

    @property
    def card_json(self) -> str | None:
        """The model card stored in the ONNX metadata (key ``atrous.card``), if any."""
        return self.session.get_modelmeta().custom_metadata_map.get(CARD_KEY)

    def signature(self) -> Signature:
        """Input and first output shapes (None for symbolic dims) and dtypes."""
        output = self.session.get_outputs()[0]
        return Signature(
            _dims(self.input.shape),
            np.dtype(self.input_dtype),
            _dims(output.shape),
            np.dtype(ORT_DTYPES.get(output.type, np.float32)),
        )

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


def _dims(shape: list) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
