"""LiteRT (TFLite) engine via ``ai-edge-litert`` (optional extra ``[tflite]``).

A .tflite runs only at the shapes it was converted with unless its signature has dynamic dims;
the engine resizes dynamic inputs per batch and refuses other sizes with a clear error. The
atrous card lives in the flatbuffer's metadata list under ``atrous.card``.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from atrous.card import tflite_card_json
from atrous.errors import ModelError
from atrous.runtimes._common import cast_input, error_line, output_index
from atrous.runtimes.contract import Signature
from atrous.runtimes.torch_engine import default_threads

__all__ = ["LiteRtEngine", "litert_available"]

MISSING = "the LiteRT runtime is not installed; pip install 'atrous[tflite]' (ai-edge-litert)"


def litert_available() -> bool:
    """Whether ``ai_edge_litert`` can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class LiteRtEngine:
    """Runs a .tflite file with the LiteRT interpreter (XNNPACK on CPU), ``threads`` threads.

    Quantized inputs are quantized with the tensor's scale/zero point; quantized outputs are
    dequantized, so callers always see float logits (or integer labels).
    """

    name = "litert"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if not litert_available():
            raise ModelError(f"{path}: {MISSING}")
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.threads = threads or default_threads()
        self.content = self.path.read_bytes()
        try:
            self.interpreter = Interpreter(model_content=self.content, num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: LiteRT cannot load it: {error_line(exc)}") from None
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input = inputs[0]
        self._output_at = 0
        self.output = self.interpreter.get_output_details()[0]
        self._shape = tuple(self.input["shape"])

    @property
    def card_json(self) -> str | None:
        """The model card in the flatbuffer metadata, if any."""
        return tflite_card_json(self.content)

    def outputs(self) -> list[str]:
        """The names of the model's outputs, in order."""
        return [d["name"] for d in self.interpreter.get_output_details()]

    def select_output(self, which: str | int | None) -> None:
        """Read the output ``which`` names (name or index; None: the first) from now on."""
        self._output_at = output_index(self.outputs(), which, self.path)
        self.output = self.interpreter.get_output_details()[self._output_at]

    def signature(self) -> Signature:
        """Input/output shapes (None for dynamic dims) and dtypes as the caller sees them."""

        def dims(detail: dict) -> tuple[int | None, ...]:
            sig = detail.get("shape_signature", detail["shape"])
            return tuple(None if d < 0 else int(d) for d in sig)

        out_dtype = np.dtype(self.output["dtype"])
        if _quantization(self.output) and out_dtype.kind in "iu" and _channels(self.output) > 1:
            out_dtype = np.dtype(np.float32)
        return Signature(
            dims(self.input),
            np.dtype(self.input["dtype"]),
            dims(self.output),
            out_dtype,
            _quantization(self.input),
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The selected output for one batch; quantized tensors are (de)quantized."""
        shape = tuple(batch.shape)
        if shape != self._shape:
            signature = [int(d) for d in self.input.get("shape_signature", self.input["shape"])]
            fits = len(signature) == len(shape) and all(
                f < 0 or f == s for f, s in zip(signature, shape, strict=True)
            )
            if not fits:
                fixed = [int(d) for d in self.input["shape"]]
                raise ModelError(
                    f"{self.path}: this .tflite runs only at input shape {fixed}, "
                    f"not {list(shape)}; export it at that size"
                )
            self.interpreter.resize_tensor_input(self.input["index"], list(shape))
            self.interpreter.allocate_tensors()
            self._shape = shape
            self.output = self.interpreter.get_output_details()[self._output_at]
        dtype = np.dtype(self.input["dtype"])
        quant = _quantization(self.input)
        if quant and dtype.kind in "iu" and batch.dtype.kind == "f":
            scale, zero = quant
            batch = batch / scale + zero
        self.interpreter.set_tensor(self.input["index"], cast_input(batch, dtype))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        quant = _quantization(self.output)
        if quant and out.dtype.kind in "iu" and _channels(self.output) > 1:
            scale, zero = quant
            out = (out.astype(np.float32) - zero) * scale
        return out

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads and model file."""
        return {
            "engine": self.name,
            "version": version("ai-edge-litert"),
            "threads": self.threads,
            "model": str(self.path),
        }


def _quantization(detail: dict) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


def _channels(detail: dict) -> int:
    shape = detail["shape"]
    return int(shape[-1]) if len(shape) == 4 else 1
