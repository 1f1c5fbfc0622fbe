"""OpenVINO engine: CPU plugin, ``threads`` inference threads, one stream, latency hint, FP32;
a model with dynamic dimensions is also compiled for the input shapes that repeat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atrous.card import RT_INFO_CARD, openvino_card_json
from atrous.errors import ModelError
from atrous.runtimes._common import ShapeSpecializer, cast_input, error_line, output_index
from atrous.runtimes.contract import Signature
from atrous.runtimes.torch_engine import default_threads

__all__ = ["OpenVinoEngine", "RT_INFO_CARD", "cpu_config"]

# a dynamic-shape model is also compiled with the shape pinned for each of its first
# SPECIALIZED_SHAPES repeated input shapes (the int8 fast graph at 513x513: 9.8 instead of
# 10.9 ms; compiling takes ~0.3 s)
SPECIALIZED_SHAPES = 2


def cpu_config(threads: int, precision: str = "f32") -> dict[str, Any]:
    """The CPU plugin settings atrous runs a model with: ``threads`` inference threads, one
    stream, the latency hint, ``precision`` (f32 unless bf16 is asked for on purpose)."""
    return {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    }


class OpenVinoEngine:
    """Runs an OpenVINO IR (.xml) or ONNX file on the OpenVINO CPU plugin.

    One stream with ``INFERENCE_NUM_THREADS=threads`` and the LATENCY hint (one image at a time).
    Precision defaults to FP32: on CPUs with bf16 support OpenVINO otherwise runs in bf16, which
    changes the outputs; pass ``precision='bf16'`` to measure that trade-off on purpose.

    Args:
        path: .xml (weights in the .bin beside it) or .onnx.
        threads: inference threads; None uses every core this process may run on.
        precision: 'f32' or 'bf16' (INFERENCE_PRECISION_HINT).
        specialize: how many repeated input shapes of a dynamic-shape model get a compiled
            model of their own with the shape fixed (faster); 0 runs every shape dynamically.
    """

    name = "openvino"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        precision: str = "f32",
        specialize: int = SPECIALIZED_SHAPES,
    ) -> None:
        import openvino as ov

        self.path = Path(path)
        self.threads = threads or default_threads()
        self.precision = precision
        core = ov.Core()
        try:
            self.model = core.read_model(str(self.path))
        except Exception as exc:
            raise ModelError(f"{self.path}: OpenVINO cannot read it: {error_line(exc)}") from None
        if len(self.model.inputs) != 1:
            raise ModelError(
                f"{self.path}: expected one input, the model has {len(self.model.inputs)}"
            )
        self._output_at = 0
        self._core = core
        self._config = cpu_config(self.threads, precision)
        self.compiled = core.compile_model(self.model, "CPU", self._config)
        self.request = self.compiled.create_infer_request()
        self.input_dtype = self.model.inputs[0].get_element_type().to_dtype()
        dynamic = self.model.inputs[0].get_partial_shape().is_dynamic
        self._shapes = ShapeSpecializer(specialize if dynamic else 0, self._pinned_request)

    def _pinned_request(self, shape: tuple[int, ...]) -> Any:
        """An infer request on the model compiled for ``shape`` alone, which the CPU plugin plans
        and runs faster than the dynamic one (None for a shape it cannot take statically)."""
        fixed = self.model.clone()
        try:
            fixed.reshape({0: list(shape)})
            compiled = self._core.compile_model(fixed, "CPU", self._config)
        except Exception:  # it stays on the dynamic model
            return None
        return compiled.create_infer_request()

    @property
    def card_json(self) -> str | None:
        """The model card in the IR's rt_info (or, for .onnx, the ONNX metadata), if any."""
        return openvino_card_json(self.model)

    def outputs(self) -> list[str]:
        """The names of the model's outputs, in order (its index where an output has none)."""
        return [o.get_any_name() if o.get_names() else str(i) for i, o in
                enumerate(self.model.outputs)]  # fmt: skip

    def select_output(self, which: str | int | None) -> None:
        """Read the output ``which`` names (name or index; None: the first) from now on."""
        self._output_at = output_index(self.outputs(), which, self.path)

    def signature(self) -> Signature:
        """Input and selected output shapes (None for dynamic dims) and dtypes."""

        def dims(port) -> tuple[int | None, ...]:
            shape = port.get_partial_shape()
            return tuple(None if d.is_dynamic else d.get_length() for d in shape)

        inp, out = self.model.inputs[0], self.model.outputs[self._output_at]
        return Signature(
            dims(inp),
            np.dtype(inp.get_element_type().to_dtype()),
            dims(out),
            np.dtype(out.get_element_type().to_dtype()),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The selected output for one batch (cast to the input's dtype first)."""
        x = np.ascontiguousarray(cast_input(batch, self.input_dtype))
        request = self._shapes.runner(x.shape, self.request)
        # no copy of the input: the call is synchronous and the request's view of ``x`` is
        # only read during it
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(self._output_at).data.copy()

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads, precision and model file."""
        import openvino as ov

        return {
            "engine": self.name,
            "version": ov.get_version(),
            "threads": self.threads,
            "precision": self.precision,
            "model": str(self.path),
        }
