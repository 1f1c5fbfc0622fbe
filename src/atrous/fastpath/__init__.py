"""The fast CPU path: one graph from uint8 pixels to low-resolution logits, run by OpenVINO
(int8 IR) or ONNX Runtime (ONNX), and a sparse upsample + argmax on the host.

What it removes from the plain path (network in PyTorch eager, float NCHW input, 21-channel logits
upsampled to full resolution, argmax in Python):

- eager PyTorch: the engines fold BatchNorm, fuse Conv+ReLU6 and run blocked kernels;
  ``export_fast_int8`` quantizes the network statically: for OpenVINO (.xml, the fastest here:
  its CPU plugin has int8 depthwise kernels) with NNCF, for ONNX Runtime (.onnx) as QDQ;
- kernel remainder loops: internal channel groups (MobileNetV2's 72 hidden channels at width
  0.5) are padded with zero channels to multiples of 16, the SIMD block (exact; see
  :mod:`atrous.quantize.channel_padding`);
- float preprocessing in Python: the graph takes uint8 RGB pixels. The ONNX Runtime graph
  takes them planar (N, 3, H, W): the host de-interleaves the decoded image while it pads it, in
  one pass that costs less than ONNX Runtime's in-graph transpose; the OpenVINO IR takes them
  channels-last, as decoded (its plugin merges the transpose into its first reorder). The int8
  graphs fold mean/std into their first convolution;
- the broadcast image-pooling map of the ASPP head: its features enter the projection as a
  per-image bias (``PooledBiasASPP``, exact), so nothing is broadcast or concatenated;
- the float classifier of the int8 ONNX Runtime graph: one integer matrix product on the head's
  uint8 output with float logits out (``integer_classifier``);
- the full-resolution logit upsample: the graph ends at the logits (1/16 of the input for an
  OS16 model); the Segmenter computes labels at 1/``label_stride`` of the input with
  ``atrous.upsample.sparse_upsample_argmax``, which interpolates the class scores only where
  the four low-resolution neighbours disagree (the same labels as a full bilinear resize and
  argmax), and enlarges them by an exact integer repeat. ``label_stride=1`` gives the exact
  full-resolution labels.

``export_fast_onnx`` writes the graph with its model card; ``fast_graph_engine`` builds (and
caches, under ``$ATROUS_CACHE/fast``) it for a checkpoint or zoo name and opens it;
``atrous.segmenter.fast_segmenter`` (or ``Segmenter.from_file(..., engine="fast")``) wraps that
in a ready Segmenter.

Modules, low to high: ``modules`` (torch modules and the card), ``graph`` (ONNX export),
``rewrite`` (graph surgery), ``int8`` (quantization), ``build`` (``export_fast`` with its parity
check), ``cache`` (the cached fp32 graph on ONNX Runtime).
"""

from atrous.fastpath.build import FastExport, export_fast
from atrous.fastpath.cache import cached_fast_graph, fast_graph_engine
from atrous.fastpath.graph import FAST_GRAPH_VERSION, export_fast_onnx
from atrous.fastpath.int8 import FAST_SUFFIXES, export_fast_int8, fast_engine, quantize_fast_onnx
from atrous.fastpath.modules import (
    DEFAULT_LABEL_STRIDE,
    FULL_LABELS_BELOW,
    INPUT_NAME,
    LABEL_STRIDES,
    OUTPUT_NAME,
    FastGraph,
    Normalize,
    fast_card,
    label_stride_for,
)
from atrous.fastpath.rewrite import (
    fold_input_normalization,
    integer_classifier,
    narrow_high_resolution_convs,
)

__all__ = [
    "DEFAULT_LABEL_STRIDE",
    "FAST_GRAPH_VERSION",
    "FAST_SUFFIXES",
    "FULL_LABELS_BELOW",
    "FastExport",
    "FastGraph",
    "INPUT_NAME",
    "LABEL_STRIDES",
    "Normalize",
    "OUTPUT_NAME",
    "cached_fast_graph",
    "export_fast",
    "export_fast_int8",
    "export_fast_onnx",
    "fast_card",
    "fast_engine",
    "fast_graph_engine",
    "fold_input_normalization",
    "integer_classifier",
    "label_stride_for",
    "narrow_high_resolution_convs",
    "quantize_fast_onnx",
]
