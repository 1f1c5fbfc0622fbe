"""ONNX Runtime engine: CPU execution provider, intra-op threads = ``threads``, one inter-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from atrous.card import card_json_of
from atrous.errors import ModelError
from atrous.runtimes._common import ShapeSpecializer, cast_input, error_line, output_index
from atrous.runtimes.contract import Signature
from atrous.runtimes.torch_engine import default_threads

__all__ = ["OrtEngine", "ORT_DTYPES"]

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
# models up to this size also get a fixed-shape session for each of their first
# SPECIALIZED_SHAPES repeated input shapes (each session holds its own copy of the weights)
SPECIALIZE_MAX_BYTES = 64 << 20
SPECIALIZED_SHAPES = 2


class OrtEngine:
    """Runs an ONNX file with ONNX Runtime.

    Sequential execution with ``intra_op_num_threads=threads`` and one inter-op thread, all graph
    optimizations on: the configuration that is fastest for one image on a few cores. Float
    batches are cast to the model's input dtype (e.g. uint8 for foreign models taking raw pixels).

    Args:
        path: the .onnx file.
        threads: intra-op threads; None uses every core this process may run on.
        specialize: how many repeated input shapes get a session of their own with the
            symbolic dimensions fixed (faster); None: 2 for files up to 64 MB, else 0.
    """

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, threads: int | None = None, specialize: int | None = None
    ) -> None:
        self.path = Path(path)
        self.threads = threads or default_threads()
        if specialize is None:
            small = self.path.stat().st_size <= SPECIALIZE_MAX_BYTES
            specialize = SPECIALIZED_SHAPES if small else 0
        self.session = self._open()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input = inputs[0]
        self.input_dtype = ORT_DTYPES.get(self.input.type, np.float32)
        self.output_names = [self.session.get_outputs()[0].name]
        self._shapes = ShapeSpecializer(specialize, self._pinned_session)

    def _open(self, fixed_dims: dict[str, int] | None = None) -> Any:
        """A session on the file; ``fixed_dims`` pins symbolic input dimensions by name."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # worker threads spin between the operators of a run (fast hand-offs) but not after
        # it: left spinning, they take the cores from whatever runs next (decoding, another
        # session, another engine in an interleaved benchmark; measured 2x slower per run
        # with two sessions taking turns)
        options.add_session_config_entry("session.force_spinning_stop", "1")
        for name, size in (fixed_dims or {}).items():
            options.add_free_dimension_override_by_name(name, size)
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(
                f"{self.path}: ONNX Runtime cannot load it: {error_line(exc)}"
            ) from None

    def _pinned_session(self, shape: tuple[int, ...]) -> Any:
        """A session with the symbolic input dimensions pinned to ``shape`` (None when the input
        has none to pin): ONNX Runtime then folds the graph's shape arithmetic away and plans
        memory for that size (~2% of the fast graph at 513x513)."""
        names = [d if isinstance(d, str) else None for d in self.input.shape]
        if not any(names) or len(names) != len(shape):
            return None
        return self._open({name: size for name, size in zip(names, shape, strict=True) if name})

    @property
    def card_json(self) -> str | None:
        """The model card stored in the ONNX metadata (key ``atrous.card``), if any."""
        return card_json_of(self.session.get_modelmeta().custom_metadata_map)

    def outputs(self) -> list[str]:
        """The names of the model's outputs, in order."""
        return [o.name for o in self.session.get_outputs()]

    def select_output(self, which: str | int | None) -> None:
        """Read the output ``which`` names (name or index; None: the first) from now on."""
        self.output_names = [self.outputs()[output_index(self.outputs(), which, self.path)]]

    def signature(self) -> Signature:
        """Input and selected output shapes (None for symbolic dims) and dtypes."""
        output = next(o for o in self.session.get_outputs() if o.name == self.output_names[0])
        return Signature(
            _dims(self.input.shape),
            np.dtype(self.input_dtype),
            _dims(output.shape),
            np.dtype(ORT_DTYPES.get(output.type, np.float32)),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The selected output for one batch (cast to the input's dtype first)."""
        x = np.ascontiguousarray(cast_input(batch, self.input_dtype))
        session = self._shapes.runner(x.shape, self.session)
        return session.run(self.output_names, {self.input.name: x})[0]

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads and model file."""
        return {
            "engine": self.name,
            "version": ort.__version__,
            "threads": self.threads,
            "model": str(self.path),
        }


def _dims(shape: list) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
