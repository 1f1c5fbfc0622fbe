"""Test helper: write a DeepLab MobileNetV2 as TF's converter lays out the TF DeepLab zoo files.

Independent of atrous's exporter (no ONNX): BatchNorm folded by torch's ``fuse_conv_bn_eval``,
kernels OHWI / 1HWO, SAME padding, TF-style tensor names, the image pooling as a full-window
AVERAGE_POOL_2D broadcast back by an align-corners RESIZE_BILINEAR, the concatenation in TF's
order (image pooling first), ReLU fused into the head convs and an align-corners final resize.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import torch
from ai_edge_litert import schema_py_generated as s
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ACT = {"none": 0, "relu": 1, "relu6": 3}


class _Builder:
    def __init__(self, weights: str = "float") -> None:
        self.weights = weights  # 'float', 'uint8' (per tensor) or 'int8' (per channel)
        self.tensors: list = []
        self.buffers: list = [s.BufferT()]
        self.codes: list[int] = []
        self.ops: list = []

    def tensor(self, name: str, shape, value: np.ndarray | None = None, ttype=None) -> int:
        t = s.TensorT()
        t.name, t.shape = name.encode(), list(shape)
        t.type = s.TensorType.FLOAT32 if ttype is None else ttype
        t.buffer = 0
        if value is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs, outputs, otype=0, options=None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes.index(code), inputs, outputs
        o.builtinOptionsType, o.builtinOptions = otype, options
        self.ops.append(o)

    def conv(self, name: str, x: int, conv: nn.Conv2d, bn: nn.Module | None, act: str) -> int:
        if bn is not None:
            conv = fuse_conv_bn_eval(conv, bn)
        w = conv.weight.detach().numpy().astype(np.float32)
        bias = conv.bias.detach().numpy().astype(np.float32)
        _, h, wd, _ = self.tensors[x].shape
        stride = conv.stride[0]
        oh, ow = -(-h // stride), -(-wd // stride)
        depthwise = conv.groups > 1
        if depthwise:
            kernel, code = w.transpose(1, 2, 3, 0), s.BuiltinOperator.DEPTHWISE_CONV_2D
            options, otype = s.DepthwiseConv2DOptionsT(), s.BuiltinOptions.DepthwiseConv2DOptions
            options.depthMultiplier = 1
        else:
            kernel, code = w.transpose(0, 2, 3, 1), s.BuiltinOperator.CONV_2D
            options, otype = s.Conv2DOptionsT(), s.BuiltinOptions.Conv2DOptions
        options.padding = s.Padding.SAME
        options.strideH = options.strideW = stride
        options.dilationHFactor = options.dilationWFactor = conv.dilation[0]
        options.fusedActivationFunction = ACT[act]
        wi = self.kernel(f"{name}/weights", kernel, 3 if depthwise else 0)
        bi = self.tensor(f"{name}/biases", bias.shape, bias)
        out = self.tensor(name, (1, oh, ow, w.shape[0]))
        self.op(code, [x, wi, bi], [out], otype, options)
        return out

    def kernel(self, name: str, kernel: np.ndarray, axis: int) -> int:
        """A float kernel, or a quantized constant and the DEQUANTIZE op that reads it."""
        if self.weights == "float":
            return self.tensor(name, kernel.shape, kernel)
        q = s.QuantizationParametersT()
        if self.weights == "uint8":  # TF1-style: per tensor, asymmetric, zero point in 0..255
            low, high = min(kernel.min(), 0.0), max(kernel.max(), 0.0)
            scale = np.array([(high - low) / 255], np.float32)
            zero = np.round(-low / scale).astype(np.int64)
            values = np.clip(np.round(kernel / scale) + zero, 0, 255).astype(np.uint8)
            ttype = s.TensorType.UINT8
        else:  # per channel along ``axis``, symmetric
            moved = np.moveaxis(kernel, axis, 0).reshape(kernel.shape[axis], -1)
            scale = (np.abs(moved).max(1) / 127).astype(np.float32) + 1e-12
            zero = np.zeros(scale.size, np.int64)
            view = [1] * kernel.ndim
            view[axis] = -1
            values = np.clip(np.round(kernel / scale.reshape(view)), -127, 127).astype(np.int8)
            ttype, q.quantizedDimension = s.TensorType.INT8, axis
        q.scale, q.zeroPoint = scale.tolist(), zero.tolist()
        qi = self.tensor(f"{name}_quant", kernel.shape, values, ttype)
        self.tensors[qi].quantization = q
        out = self.tensor(name, kernel.shape)
        self.op(s.BuiltinOperator.DEQUANTIZE, [qi], [out])
        return out

    def resize(self, name: str, x: int, size: int) -> int:
        c = self.tensors[x].shape[3]
        si = self.tensor(f"{name}/size", (2,), np.array([size, size], np.int32), s.TensorType.INT32)
        out = self.tensor(name, (1, size, size, c))
        options = s.ResizeBilinearOptionsT()
        options.alignCorners = True
        self.op(
            s.BuiltinOperator.RESIZE_BILINEAR,
            [x, si],
            [out],
            s.BuiltinOptions.ResizeBilinearOptions,
            options,
        )
        return out

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        g = s.SubGraphT()
        g.tensors, g.operators, g.inputs, g.outputs = self.tensors, self.ops, inputs, outputs
        m = s.ModelT()
        m.version, m.subgraphs, m.buffers = 3, [g], self.buffers
        m.operatorCodes = []
        for code in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            m.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def write_tf_style(
    model: nn.Module, size: int, path: Path, uint8_input: bool = False, weights: str = "float"
) -> Path:
    """Write ``model`` (an eval-mode atrous DeepLab, MobileNetV2, head 'pooling') TF-style;
    ``uint8_input``: uint8 pixels, scale 1/128 and zero point 128, dequantized in the graph;
    ``weights``: 'uint8' / 'int8' kernels (per tensor / per channel) behind DEQUANTIZE ops."""
    b = _Builder(weights)
    x = inp = b.tensor("ImageTensor", (1, size, size, 3))
    if uint8_input:
        inp = b.tensor("ImageTensor_uint8", (1, size, size, 3), ttype=s.TensorType.UINT8)
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [1 / 128], [128]
        b.tensors[inp].quantization = q
        b.op(s.BuiltinOperator.DEQUANTIZE, [inp], [x])
    for i, unit in enumerate(model.backbone.features):
        scope = "MobilenetV2/Conv" if i == 0 else f"MobilenetV2/expanded_conv_{i - 1}"
        if i == 0:
            x = b.conv(f"{scope}/Relu6", x, unit[0], unit[1], "relu6")
            continue
        start, layers = x, list(unit.conv)
        if len(layers) == 3:  # expansion 1: depthwise, project
            layers = [None, *layers]
        else:
            x = b.conv(f"{scope}/expand/Relu6", x, layers[0][0], layers[0][1], "relu6")
        x = b.conv(f"{scope}/depthwise/Relu6", x, layers[1][0], layers[1][1], "relu6")
        x = b.conv(f"{scope}/project/BatchNorm", x, layers[2], layers[3], "none")
        if unit.use_residual:
            out = b.tensor(f"{scope}/add", b.tensors[x].shape)
            b.op(
                s.BuiltinOperator.ADD,
                [start, x],
                [out],
                s.BuiltinOptions.AddOptions,
                s.AddOptionsT(),
            )
            x = out
    _, h, w, c = b.tensors[x].shape
    pool = s.Pool2DOptionsT()
    pool.padding, pool.strideH, pool.strideW = s.Padding.VALID, h, w
    pool.filterHeight, pool.filterWidth = h, w
    pooled = b.tensor("AvgPool2D/AvgPool", (1, 1, 1, c))
    b.op(s.BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled], s.BuiltinOptions.Pool2DOptions, pool)
    head = model.head
    p = b.conv("image_pooling/Relu", pooled, head.pooling.conv, head.pooling.bn, "relu")
    p = b.resize("ResizeBilinear", p, h)
    a = b.conv("aspp0/Relu", x, head.branches[0][0], head.branches[0][1], "relu")
    cat = b.tensor("concat", (1, h, w, b.tensors[a].shape[3] * 2))
    options = s.ConcatenationOptionsT()
    options.axis = 3
    b.op(
        s.BuiltinOperator.CONCATENATION,
        [p, a],
        [cat],
        s.BuiltinOptions.ConcatenationOptions,
        options,
    )
    project = fuse_conv_bn_eval(head.project[0], head.project[1])
    half = project.weight.shape[1] // 2  # atrous concatenates (1x1, pooling); TF the reverse
    with torch.no_grad():
        project.weight.copy_(torch.cat([project.weight[:, half:], project.weight[:, :half]], 1))
    y = b.conv("concat_projection/Relu", cat, project, None, "relu")
    y = b.conv("logits/semantic/BiasAdd", y, model.classifier, None, "none")
    y = b.resize("ResizeBilinear_2", y, size)
    path.write_bytes(b.finish([inp], [y]))
    return path


def write_unrelated(path: Path) -> Path:
    """A tiny .tflite that is no DeepLab: 1x1 conv then LOGISTIC on an 8x8 RGB input."""
    b = _Builder()
    x = b.tensor("input", (1, 8, 8, 3))
    conv = nn.Conv2d(3, 4, 1)
    y = b.conv("conv", x, conv, None, "none")
    out = b.tensor("sigmoid", (1, 8, 8, 4))
    b.op(s.BuiltinOperator.LOGISTIC, [y], [out])
    path.write_bytes(b.finish([x], [out]))
    return path
