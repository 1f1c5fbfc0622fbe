"""ncnn export through pnnx: TorchScript trace -> pnnx -> ``.param`` graph + ``.bin`` weights.

pnnx traces the network at two sizes, so the ncnn graph runs at any input size (its resizes
take their output size from a reference blob). The weights stay fp32 (pnnx's default stores
fp16). ncnn files carry no metadata: the card is written beside them as ``<file>.card.json``,
which :class:`atrous.runtimes.ncnn_engine.NcnnEngine` reads back.

int8: ncnn quantizes with its C++ tools ``ncnn2table`` and ``ncnn2int8``, which the ``ncnn``
and ``pnnx`` wheels do not ship, so atrous writes fp32 ncnn files only.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atrous._atomic import atomic_write_text, scratch_directory
from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.export.onnx import exported_card
from atrous.models.aspp import ImagePooling
from atrous.runtimes.contract import SIDECAR_SUFFIX

__all__ = ["INT8_UNAVAILABLE", "export_ncnn", "pnnx_available"]

INT8_UNAVAILABLE = (
    "int8 ncnn needs ncnn's C++ tools ncnn2table and ncnn2int8, which the ncnn and pnnx "
    "wheels do not ship; atrous exports ncnn in fp32"
)
MISSING = "ncnn export needs pnnx and ncnn; pip install 'atrous[ncnn]'"
PNNX_TIMEOUT_S = 600


def pnnx_available() -> bool:
    """Whether the ``pnnx`` converter and the ``ncnn`` runtime can be imported."""
    try:
        import ncnn  # noqa: F401
        import pnnx  # noqa: F401
    except ImportError:
        return False
    return True


def _broadcast_by_resize(self: ImagePooling, x: torch.Tensor) -> torch.Tensor:
    """ImagePooling's output, broadcast with a nearest resize of the 1x1 map (the same values):
    ncnn has no broadcast to a runtime size, but its resize takes the size of a reference blob."""
    return F.interpolate(self.pooled(x), size=x.shape[-2:], mode="nearest")


def ncnn_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose operators pnnx turns into ncnn layers."""
    net = copy.deepcopy(model).eval()
    for module in net.modules():
        if isinstance(module, ImagePooling):
            module.forward = types.MethodType(_broadcast_by_resize, module)
    return net


def _second_size(h: int, w: int) -> tuple[int, int]:
    """Another input size for pnnx's second trace (the dimensions that differ become dynamic)."""
    return max(33, h // 2 + 1), max(33, w // 2 + 3)


def _run_pnnx(traced: Path, size: tuple[int, int], out: Path, source: Path) -> None:
    """pnnx on a TorchScript file; ``out``.param/.bin written beside its other outputs."""
    import pnnx

    second = _second_size(*size)
    args = [
        pnnx.EXEC_PATH,
        traced.name,
        f"inputshape=[1,3,{size[0]},{size[1]}]f32",
        f"inputshape2=[1,3,{second[0]},{second[1]}]f32",
        "fp16=0",
        f"ncnnparam={out.name}.param",
        f"ncnnbin={out.name}.bin",
    ]
    try:
        done = subprocess.run(
            args, cwd=traced.parent, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"{source}: pnnx did not run: {exc}") from None
    param = out.with_suffix(".param")
    if done.returncode != 0 or not param.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"{source}: pnnx failed ({done.returncode}): {last[0]}")
    foreign = sorted(_unconverted_layers(param))
    if foreign:
        raise ModelError(f"{source}: pnnx left operators ncnn cannot run: {', '.join(foreign)}")


def _unconverted_layers(param: Path) -> set[str]:
    """Layer types in an ncnn .param that are pnnx/PyTorch operators, not ncnn layers."""
    lines = param.read_text(encoding="utf-8").splitlines()[2:]
    return {line.split()[0] for line in lines if line.split() and "." in line.split()[0]}


def export_ncnn(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    sample_size: tuple[int, int] | None = None,
) -> Path:
    """Write ``model`` as an fp32 ncnn graph at ``path`` (.param; weights in the .bin beside
    it) and its card beside them (``path`` + '.card.json'); return ``path``.

    Args:
        model: the network; returns logits at the input size.
        card: its card; the copy beside the files says format 'ncnn'.
        sample_size: (H, W) traced at; defaults to the card's size (or 513). The graph runs
            at any size.

    Raises:
        ModelError: pnnx missing or failing, or a graph with operators ncnn cannot run.
    """
    path = Path(path)
    if path.suffix != ".param":
        raise ModelError(f"{path}: an ncnn graph file name ends in .param")
    if not pnnx_available():
        raise ModelError(f"{path}: {MISSING}")
    size = sample_size or (card.preprocessing.size or 513,) * 2
    out_card = exported_card(card, "ncnn", False, dynamic=True, precision="fp32")
    with scratch_directory("ncnn") as tmp:
        traced = Path(tmp) / "model.pt"
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation: pnnx still reads it
                script = torch.jit.trace(ncnn_ready(model), torch.zeros(1, 3, *size))
        except Exception as exc:
            raise ModelError(f"{path}: TorchScript trace failed: {exc}") from None
        script.save(str(traced))
        _run_pnnx(traced, size, Path(tmp) / "model", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "model.bin"), path.with_suffix(".bin"))
        shutil.move(str(Path(tmp) / "model.param"), path)
    atomic_write_text(path.with_name(path.name + SIDECAR_SUFFIX), out_card.to_json())
    return path
