"""OpenVINO IR export (.xml + .bin) through ONNX, with the model card in the IR's rt_info."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from atrous._atomic import scratch_directory
from atrous.card import ModelCard, write_openvino_card
from atrous.errors import ModelError
from atrous.export._staging import publish, staged_path
from atrous.export.onnx import export_onnx, exported_card

__all__ = ["export_openvino"]


def export_openvino(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    opset: int = 17,
    with_argmax: bool = False,
    sample_size: tuple[int, int] | None = None,
) -> Path:
    """Export to OpenVINO IR at ``path`` (.xml; weights in the .bin beside it) in FP32.

    The graph goes PyTorch -> ONNX (dynamic H/W, simplified) -> ``openvino.convert_model``; the
    card is stored under rt_info ``atrous/card`` so ``load_engine("model.xml")`` finds it.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise ModelError(f"{path}: an OpenVINO IR file name ends in .xml")
    out_card = exported_card(card, "openvino", with_argmax, opset=opset)
    with scratch_directory("openvino") as tmp:
        onnx_path = export_onnx(
            model,
            card,
            Path(tmp) / "model.onnx",
            opset=opset,
            with_argmax=with_argmax,
            sample_size=sample_size,
        )
        ir = ov.convert_model(str(onnx_path))
    write_openvino_card(ir, out_card)
    # save beside the target, then move .bin before .xml: an .xml never lacks its weights
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(path) as staged:
        ov.save_model(ir, str(staged), compress_to_fp16=False)
        publish(staged, path)
    return path
