"""ncnn engine via the ``ncnn`` wheel (optional extra ``[ncnn]``): a ``.param`` graph, its
``.bin`` weights beside it, ``threads`` threads, fp32 storage and arithmetic.

An ncnn model carries no metadata: the atrous card travels beside it as ``<file>.card.json``
(``atrous export --format ncnn`` writes it). ncnn graphs run at any input size, one image at a
time (a batch is run image by image).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from atrous.errors import ModelError
from atrous.runtimes._common import error_line
from atrous.runtimes.contract import SIDECAR_SUFFIX, Signature
from atrous.runtimes.torch_engine import default_threads

__all__ = ["NcnnEngine", "ncnn_available", "MISSING"]

MISSING = "the ncnn runtime is not installed; pip install 'atrous[ncnn]' (ncnn, pnnx)"


def ncnn_available() -> bool:
    """Whether the ``ncnn`` Python module can be imported."""
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return False
    return True


def _fp32_net(threads: int) -> Any:
    """An ``ncnn.Net`` set to compute in fp32 (no fp16/bf16 storage or arithmetic, which ncnn
    turns on where the CPU has them) on ``threads`` threads."""
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = threads
    opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_vulkan_compute = False
    return net


class NcnnEngine:
    """Runs an ncnn model (``.param`` + ``.bin``) on the CPU in fp32.

    Args:
        path: the .param file; the weights are the .bin of the same name.
        threads: ncnn threads; None uses every core this process may run on.
    """

    name = "ncnn"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if not ncnn_available():
            raise ModelError(f"{path}: {MISSING}")
        self.path = Path(path)
        self.threads = threads or default_threads()
        weights = self.path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelError(f"{self.path}: its weights {weights.name} are missing beside it")
        self.net = _fp32_net(self.threads)
        try:
            failed = self.net.load_param(str(self.path)) or self.net.load_model(str(weights))
        except Exception as exc:
            raise ModelError(f"{self.path}: ncnn cannot read it: {error_line(exc)}") from None
        if failed:
            raise ModelError(f"{self.path}: ncnn cannot read it (unknown layers or bad weights)")
        inputs, outputs = self.net.input_names(), self.net.output_names()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input_name, self.output_name = inputs[0], outputs[0]

    @property
    def card_json(self) -> str | None:
        """The card written beside the model (``<file>.card.json``), if any."""
        side = self.path.with_name(self.path.name + SIDECAR_SUFFIX)
        return side.read_text(encoding="utf-8") if side.is_file() else None

    def signature(self) -> Signature:
        """NCHW float input of any size; the output's channels are not in an ncnn graph."""
        f32 = np.dtype(np.float32)
        return Signature((1, 3, None, None), f32, (1, None, None, None), f32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Outputs (N, C, H, W) of an NCHW float batch, one image at a time."""
        import ncnn

        if batch.ndim != 4:
            raise ModelError(f"{self.path}: expected an NCHW batch, got shape {list(batch.shape)}")
        outs = []
        for image in batch:
            # ncnn.Mat wraps the array's memory without a reference: ``pixels`` must outlive
            # the extraction
            pixels = np.ascontiguousarray(image, dtype=np.float32)
            extractor = self.net.create_extractor()
            extractor.input(self.input_name, ncnn.Mat(pixels))
            status, out = extractor.extract(self.output_name)
            if status != 0:
                raise ModelError(f"{self.path}: ncnn failed on input shape {list(image.shape)}")
            outs.append(np.array(out, dtype=np.float32))
        return np.stack(outs)

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads, precision and model file."""
        return {
            "engine": self.name,
            "version": version("ncnn"),
            "threads": self.threads,
            "precision": "fp32",
            "model": str(self.path),
        }
