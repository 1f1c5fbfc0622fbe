"""Fast path: uint8 NHWC graph with in-graph normalisation, reduced-resolution argmax."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

from atrous.card import CARD_KEY
from atrous.export.parity import diversify, synthetic_image
from atrous.fastpath import FastGraph, export_fast_onnx, fast_card
from atrous.models import default_card, get_model
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter, fast_segmenter
from atrous.sources import load_engine

NAME = "deeplabv3_mnv2_dm05_os16"


@pytest.fixture(scope="module")
def net():
    model = get_model(NAME, num_classes=5).eval()
    card = default_card(NAME, num_classes=5)
    card.preprocessing = card.preprocessing.model_copy(update={"resize": "none"})
    return diversify(model, card), card


def test_fast_card_takes_raw_uint8_pixels(net):
    _, card = net
    seg = Segmenter(None, fast_card(card, 4))  # preprocess needs no engine
    batch, metas = seg.preprocess([np.full((30, 41, 3), 7, np.uint8)])
    assert batch.dtype == np.uint8 and batch.shape == (1, 3, 32, 48)  # planar
    assert (batch[0, :, :30, :41] == 7).all() and (batch[0, :, 30:] == 128).all()
    assert metas[0].padded == (32, 48)


def test_full_resolution_fast_path_matches_torch(net, tmp_path):
    model, card = net
    fast = fast_segmenter((model, card), threads=2, label_stride=1, cache_dir=tmp_path)
    ref = Segmenter(TorchEngine(model, 2), card)
    image = synthetic_image(96, 128, seed=3)  # a multiple of 8: no padding, no resize
    expected = ref.predict(image).mask
    got = fast.predict(image).mask
    assert got.shape == (96, 128) and got.dtype == np.uint8
    assert (got == expected).mean() > 0.999
    assert len(np.unique(expected)) >= 3  # diversified weights: the check is not trivial


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_labels_are_the_bilinear_argmax_at_the_label_stride(net, tmp_path, stride):
    model, card = net
    path = export_fast_onnx(model, card, tmp_path / "f.onnx", label_stride=stride)
    engine, loaded = load_engine(path, threads=2)
    assert loaded.output == "logits" and loaded.preprocessing.layout == "NCHW"
    proto = onnx.load(str(path))
    assert not {"Resize", "ArgMax"} & {n.op_type for n in proto.graph.node}  # tail on the host
    meta = dict((p.key, p.value) for p in proto.metadata_props)
    assert f'"label_stride":{stride}' in meta[CARD_KEY].replace(" ", "")
    image = synthetic_image(90, 121, seed=1)  # padded to a multiple of 8 and cropped back
    mask = Segmenter(engine, loaded).predict(image).mask
    assert mask.shape == (90, 121)
    padded = np.full((1, 3, 96, 128), 128, np.uint8)
    padded[0, :, :90, :121] = image.transpose(2, 0, 1)
    with torch.inference_mode():
        logits = FastGraph(model, card)(torch.from_numpy(padded))
        size = (96 // stride, 128 // stride)
        up = torch.nn.functional.interpolate(logits, size, mode="bilinear", align_corners=False)
        low = up.argmax(1)[0].numpy()
    expected = np.repeat(np.repeat(low, stride, 0), stride, 1)[:90, :121]
    assert (mask == expected).mean() > 0.999
    assert len(np.unique(expected)) >= 3  # diversified weights: several classes, boundaries


def test_sparse_upsample_argmax_equals_full_bilinear_argmax():
    from atrous.upsample import sparse_upsample_argmax

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:17, 0:23]
    logits = np.zeros((6, 17, 23), np.float32)
    for c in range(6):  # smooth blobs: large uniform areas and real boundaries
        cy, cx, r = rng.uniform(0, 17), rng.uniform(0, 23), rng.uniform(2, 6)
        logits[c] = 5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    logits += rng.normal(0, 0.05, logits.shape).astype(np.float32)
    for size in [(130, 180), (257, 361), (17, 23), (9, 40)]:
        full = torch.nn.functional.interpolate(
            torch.from_numpy(logits)[None], size, mode="bilinear", align_corners=False
        )
        expected = full[0].argmax(0).numpy()
        got = sparse_upsample_argmax(logits, size)
        assert got.dtype == np.uint8 and got.shape == size
        assert (got == expected).mean() > 0.9999
        part = sparse_upsample_argmax(logits, size, (size[0] // 2, size[1] - 3))
        assert (part == got[: size[0] // 2, : size[1] - 3]).all()
        for threads in (2, 3):  # row bands on numba's threads: the same labels
            assert (sparse_upsample_argmax(logits, size, None, threads) == got).all()
    assert len(np.unique(expected)) >= 4


@pytest.mark.parametrize("classes", [2, 21, 150])
def test_sparse_upsample_argmax_on_noise_logits_with_a_crossing_in_every_cell(classes):
    # random scores: nearly every cell is a boundary, runs of 16 columns hold two or three
    # winners (the single-crossing shortcut and its pixel-by-pixel fallback both run)
    from atrous.upsample import sparse_upsample_argmax

    logits = np.random.default_rng(classes).normal(0, 1, (classes, 33, 33)).astype(np.float32)
    for size in [(513, 513), (520, 390)]:
        full = torch.nn.functional.interpolate(
            torch.from_numpy(logits)[None], size, mode="bilinear", align_corners=False
        )
        expected = full[0].argmax(0).numpy()
        got = sparse_upsample_argmax(logits, size)
        assert (got == expected).mean() > 0.9999


def test_a_class_that_wins_at_no_corner_still_wins_between_them():
    # only classes below one corner winner at all four corners are skipped in a cell: a class
    # second everywhere at the corners (2) wins in the middle; one below class 0 at every
    # corner (3) never does
    from atrous.upsample import sparse_upsample_argmax

    left, right = np.array([10, 0, 6, 9.5], np.float32), np.array([0, 10, 6, -1], np.float32)
    logits = np.stack([left, right], -1)[:, None, :].repeat(2, 1)  # (4 classes, 2, 2)
    size = (8, 32)
    full = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size, mode="bilinear", align_corners=False
    )
    expected = full[0].argmax(0).numpy()
    got = sparse_upsample_argmax(logits, size)
    assert (got == expected).all()
    assert set(np.unique(got[0])) == {0, 1, 2}


def _segment_in_child(logits, queue):
    from atrous.upsample import sparse_upsample_argmax

    queue.put(sparse_upsample_argmax(logits, (192, 128), None, 2))


def test_a_forked_child_segments_with_row_bands_after_its_parent(monkeypatch):
    # the parent's band threads do not survive fork(): the child must start its own
    import multiprocessing

    import atrous.upsample as upsample
    from atrous.upsample import sparse_upsample_argmax

    # row bands even on a busy machine (one band there), in the parent and the forked child
    monkeypatch.setattr(upsample, "cores_oversubscribed", lambda: False)

    logits = np.random.default_rng(3).normal(0, 1, (4, 12, 16)).astype(np.float32)
    expected = sparse_upsample_argmax(logits, (192, 128), None, 2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_segment_in_child, args=(logits, queue))
    child.start()
    got = queue.get(timeout=60)  # hung forever before the fix
    child.join(10)
    assert child.exitcode == 0 and (got == expected).all()


def test_winners_are_numpys_transpose_and_argmax_with_ties_to_the_lowest_class():
    from atrous._sparse_kernel import winners

    rng = np.random.default_rng(3)
    logits = rng.integers(0, 3, size=(7, 9, 11)).astype(np.float32)  # many ties
    for given in (logits, logits[:, ::2, 1:]):  # contiguous and a strided view
        scores, low = winners(given)
        assert np.array_equal(scores, np.transpose(given, (1, 2, 0)))
        assert np.array_equal(low, given.argmax(0))


def test_row_bands_share_the_boundary_work():
    from atrous._sparse_kernel import band_edges

    low = np.zeros((20, 30), np.int64)
    low[12:, ::2] = 1  # every boundary in the bottom rows
    edges = band_edges(low, 80, 80, 2)
    assert edges[0] == 0 and edges[-1] == 80 and len(edges) == 3
    assert 48 < edges[1] < 80  # the busy bottom rows are split, not the plain top ones
    assert list(band_edges(np.zeros((20, 30), np.int64), 80, 80, 4)) == [0, 20, 40, 60, 80]


def test_fast_jpeg_decode_matches_pillow_and_applies_exif(tmp_path):
    from PIL import Image

    from atrous.data.io import read_image
    from atrous.segmenter import fast_read_image

    pixels = synthetic_image(40, 80, seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    path = tmp_path / "rot.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    fast, reference = fast_read_image(path), read_image(path)
    assert fast.shape == reference.shape == (80, 40, 3)
    assert np.abs(fast.astype(int) - reference).max() <= 1
    for subsampling in (0, 2):  # 4:4:4 and 4:2:0 chroma, upright: the libjpeg-turbo route
        upright = tmp_path / f"upright{subsampling}.jpg"
        Image.fromarray(pixels).save(upright, quality=90, subsampling=subsampling)
        fast, reference = fast_read_image(upright), read_image(upright)
        assert fast.shape == reference.shape == (40, 80, 3) and fast.dtype == np.uint8
        assert np.abs(fast.astype(int) - reference).max() <= 1
    grey = tmp_path / "grey.jpg"
    Image.fromarray(pixels[..., 0]).save(grey)
    assert (fast_read_image(grey) == read_image(grey)).all()
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not an image"):
        fast_read_image(bad)


def test_fast_decode_of_uploaded_bytes_matches_pillow_and_keeps_its_limits():
    from PIL import Image

    from atrous.data.io import decode_image, fast_decode_image
    from atrous.errors import InputError

    pixels = synthetic_image(40, 80, seed=3)

    def encoded(fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt, **options)
        return buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: the OpenCV route
    for data, shape in [
        (encoded("JPEG", quality=90), (40, 80, 3)),
        (encoded("JPEG", quality=95, exif=exif), (80, 40, 3)),
    ]:
        fast, reference = fast_decode_image(data), decode_image(data)
        assert fast.shape == reference.shape == shape and fast.dtype == np.uint8
        assert np.abs(fast.astype(int) - reference).max() <= 1
    png = encoded("PNG")
    assert np.array_equal(fast_decode_image(png), pixels)  # not a JPEG: Pillow's pixels
    jpeg = encoded("JPEG")
    with pytest.raises(InputError, match="upload.jpg: image of 80x40 exceeds"):
        fast_decode_image(jpeg, "upload.jpg", max_pixels=80 * 40 - 1)  # refused by its header
    with pytest.raises(InputError, match="upload.jpg"):
        fast_decode_image(jpeg[:2] + b"not a jpeg at all", "upload.jpg")


def test_label_map_is_completed_when_padding_is_not_a_stride_multiple(net):
    _, card = net
    odd = fast_card(card, 2)
    odd.preprocessing = odd.preprocessing.model_copy(update={"pad_multiple": 33})

    class HalfResolution:
        name, threads = "half", 1

        def run(self, batch):  # 33 -> 16x16 logits: one row and column short of the image
            bright = (batch[:, 0, ::2, ::2][:, :16, :16] > 100).astype(np.float32)
            return np.stack([np.full_like(bright, 0.5), bright], axis=1)  # (N, 2, 16, 16)

        def describe(self):
            return {}

    image = np.zeros((33, 33, 3), np.uint8)
    image[:, 20:] = 200
    mask = Segmenter(HalfResolution(), odd).predict(image).mask
    assert mask.shape == (33, 33)
    assert (mask[:, :20] == 0).all() and (mask[:, 20:] == 1).all()


def test_from_file_fast_engine_opens_the_cached_fast_graph(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ATROUS_CACHE")  # the default: ~/.cache/atrous (conftest sets a private one)
    path, *_ = tiny_checkpoint
    seg = Segmenter.from_file(path, engine="fast", threads=1)
    assert seg.engine.name == "onnxruntime" and seg.card.output == "logits"  # low resolution
    assert len(list((tmp_path / ".cache" / "atrous" / "fast").glob("*.onnx"))) == 1
    assert seg.predict(synthetic_image(50, 70)).mask.shape == (50, 70)
    Segmenter.from_file(path, engine="fast", threads=1)  # the second open reuses the export
    assert len(list((tmp_path / ".cache" / "atrous" / "fast").glob("*.onnx"))) == 1


def test_narrow_high_resolution_convs_are_found_from_shapes(net, tmp_path):
    from atrous.fastpath import narrow_high_resolution_convs

    model, card = net
    path = export_fast_onnx(model, card, tmp_path / "f.onnx", label_stride=2)
    sample = np.zeros((1, 3, 64, 64), np.uint8)
    names = narrow_high_resolution_convs(path, sample)
    # MobileNetV2 dm0.5: the input normalisation, the 16-channel stem at 1/2 and the first
    # block (depthwise 16, projection 8); the 48-channel expansion at 1/2 is wide enough for int8
    assert any("features.0" in n for n in names) and any("features.1/" in n for n in names)
    assert not any("features.2/" in n for n in names)
    assert not any("features.3/" in n or "classifier" in n for n in names)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_folded_normalisation_takes_a_mean_colour_border_from_the_host(net, tmp_path, order):
    import onnxruntime as ort

    from atrous.card import onnx_card, write_onnx_card
    from atrous.fastpath import Normalize, fold_input_normalization

    card = net[1].model_copy(deep=True)
    card.preprocessing = card.preprocessing.model_copy(
        update={"channel_order": order, "mean": (0.2, 0.5, 0.7)}  # swapped channels would show
    )

    class Stem(torch.nn.Module):
        def __init__(self, padding: int) -> None:
            super().__init__()
            self.normalize = Normalize(card)
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=padding)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.conv(self.normalize(pixels))

    image = synthetic_image(33, 41, seed=4)
    pixels = np.ascontiguousarray(image.transpose(2, 0, 1)[None])  # planar, as the graph takes
    reference = Segmenter(None, card).preprocess([image])[0][:, :, :33, :41]
    normalised = Normalize(card)(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(normalised, reference, atol=1e-5)  # the Segmenter's convention
    for padding in (0, 1, 2):
        path = tmp_path / f"stem{padding}.onnx"
        stem = Stem(padding).eval()
        torch.onnx.export(
            stem,
            (torch.from_numpy(pixels),),
            str(path),
            input_names=["pixels"],
            dynamic_axes={"pixels": {2: "height", 3: "width"}},
            dynamo=False,
        )
        proto = onnx.load(str(path))
        write_onnx_card(proto, fast_card(card, 2))
        assert fold_input_normalization(proto)
        assert not any(n.name == "/normalize/Conv" for n in proto.graph.node)
        pre = onnx_card(proto).preprocessing
        assert pre.border == padding
        # the host's canvas: the image inside a border of the card's padding colour
        canvas = np.empty((1, 3, 33 + 2 * padding, 41 + 2 * padding), np.uint8)
        canvas[:] = np.asarray(pre.pad_value, np.uint8)[None, :, None, None]
        canvas[0, :, padding : padding + 33, padding : padding + 41] = pixels[0]
        before = ort.InferenceSession(str(path)).run(None, {"pixels": pixels})[0]
        after = ort.InferenceSession(proto.SerializeToString()).run(None, {"pixels": canvas})[0]
        assert after.shape == before.shape
        inner = (slice(None), slice(None), slice(padding, -1), slice(padding, -1))
        np.testing.assert_allclose(after[inner], before[inner], rtol=1e-4, atol=1e-4)
        # the border: the mean colour rounded to whole pixel values (black would be off by ~1)
        assert np.abs(after - before).max() < 0.05


def test_sparse_upsample_repeat_equals_an_integer_enlargement_of_the_labels():
    from atrous.upsample import sparse_upsample_argmax

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (5, 9, 12)).astype(np.float32)
    size, region = (72, 96), (70, 93)
    base = sparse_upsample_argmax(logits, size, region)
    for repeat, shape in [(2, (139, 185)), (2, (140, 186)), (3, (208, 277)), (1, (70, 93))]:
        got = sparse_upsample_argmax(logits, size, region, 2, repeat, shape)
        expected = np.repeat(np.repeat(base, repeat, 0), repeat, 1)[: shape[0], : shape[1]]
        assert got.shape == shape and (got == expected).all()
    with pytest.raises(ValueError, match="does not fit"):
        sparse_upsample_argmax(logits, size, region, 1, 2, (141, 186))


def test_int8_fast_graph_keeps_the_narrow_stem_float_and_takes_its_border_from_the_host(
    net, tmp_path
):
    from atrous.export.onnx import read_onnx_card
    from atrous.fastpath import export_fast_int8

    model, card = net
    path = export_fast_int8(
        model, card, tmp_path / "int8.onnx", [synthetic_image(64, 64, seed=i) for i in range(4)]
    )
    proto = onnx.load(str(path))
    dequantized = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}

    def int8(prefix: str) -> bool:
        convs = [n for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith(prefix)]
        assert convs, prefix
        return all(n.input[1] in dequantized for n in convs)

    # the 1/2-resolution stem and first block stay float (the border must not hide their size)
    assert not int8("/backbone/features.0/") and not int8("/backbone/features.1/")
    assert int8("/backbone/features.2/") and int8("/backbone/features.10/")
    pre = read_onnx_card(path).preprocessing
    assert pre.border == 1 and len(pre.pad_value) == 3
    # channel padding: the 72 hidden channels at 1/4 resolution became 80
    shapes = {tuple(i.dims) for i in proto.graph.initializer}
    assert (80, 1, 3, 3) in shapes and (72, 1, 3, 3) not in shapes
    # the image-pooling branch is a bias of the projection (no broadcast map, no concat), and
    # the classifier runs on the head's uint8 output
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Expand", "Concat", "QLinearConcat"}
    assert "MatMulIntegerToFloat" in ops
    assert not [
        n for n in proto.graph.node if n.name.startswith("/classifier/") and n.op_type == "Conv"
    ]
    seg = Segmenter(*load_engine(path, "onnxruntime", 1))
    assert seg.preprocess([synthetic_image(61, 70, seed=9)])[0].shape == (1, 3, 66, 74)
    assert seg.predict(synthetic_image(61, 70, seed=9)).mask.shape == (61, 70)


def test_integer_classifier_matches_the_float_classifier_on_the_dequantized_input():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from atrous.fastpath import integer_classifier

    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.2, (7, 32, 1, 1)).astype(np.float32)
    bias = rng.normal(0, 1, 7).astype(np.float32)
    scale, zero_point = np.float32(0.05), np.uint8(20)
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["x"], "/head/dq"),
            helper.make_node("Conv", ["x", "w", "b"], ["logits"], "/classifier/Conv"),
        ],
        "g",
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [1, 32, 5, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array(scale), "s"),
            numpy_helper.from_array(np.array(zero_point), "zp"),
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = rng.integers(0, 256, (1, 32, 5, 6), dtype=np.uint8)

    def run(model):
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {"q": q})[0]

    expected = run(proto)
    assert integer_classifier(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Transpose", "MatMulIntegerToFloat", "Transpose"]
    got = run(proto)
    assert got.shape == expected.shape == (1, 7, 5, 6)
    # int8 weights with one scale per class: each logit is off by at most half a weight step
    # times the sum of |x|
    x = (q.astype(np.float32) - zero_point) * scale
    step = np.abs(weight[:, :, 0, 0]).max(axis=1) / 127
    bound = 0.5 * step[None, :, None, None] * np.abs(x).sum(axis=1)[:, None] + 1e-4
    assert (np.abs(got - expected) <= bound).all()
    assert np.abs(got - expected).max() > 0  # the weights really are int8


def test_the_sparse_kernel_is_compiled_once_and_loaded_from_disk_after(tmp_path):
    # compiled in every process before (closures defeat numba's cache): ~6 s per first image
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from atrous._sparse_kernel import kernel\n"
        "scores = np.zeros((4, 5, 3), np.float32); low = np.zeros((4, 5), np.int64)\n"
        "labels = np.empty((8, 10), np.uint8)\n"
        "kernel(scores, low, 8, 10, 10, 1, labels, 0, 8)\n"
        "print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run() -> list[int]:
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return [int(v) for v in done.stdout.split()]

    assert run() == [0, 1]  # compiled, written to the cache
    assert run() == [1, 0]  # the next process loads it


def test_openvino_int8_fast_graph_runs_every_convolution_in_int8(net, tmp_path):
    import openvino as ov

    from atrous.card import card_from_json
    from atrous.fastpath import export_fast_int8
    from atrous.runtimes.openvino_engine import RT_INFO_CARD

    model, card = net
    images = [synthetic_image(64, 64, seed=i) for i in range(8)]
    path = export_fast_int8(model, card, tmp_path / "int8.xml", images[:6], num=6)
    assert path.with_suffix(".bin").exists()
    ir = ov.Core().read_model(str(path))
    facts = card_from_json(ir.get_rt_info(RT_INFO_CARD).astype(str)).fast_path
    assert facts.engine == "openvino" and facts.precision == "int8"
    # depthwise weights are int8 with one scale per output channel (NNCF sees folded constants,
    # not the Reshape of the ONNX weights, which gave a scale per channel and kernel column)
    depthwise = [op for op in ir.get_ordered_ops() if op.get_type_name() == "GroupConvolution"]
    assert depthwise
    for op in depthwise:
        scaled = op.input(1).get_source_output().get_node()
        assert scaled.get_type_name() == "Multiply", op.get_friendly_name()
        scale = list(scaled.input(1).get_source_output().get_partial_shape().to_shape())
        assert int(np.prod(scale)) == scale[0], (op.get_friendly_name(), scale)
        weights = scaled.input(0).get_source_output().get_node().input(0).get_source_output()
        assert weights.get_element_type() == ov.Type.i8
    # ... so the CPU plugin runs every convolution, depthwise included, on int8 inputs
    engine, loaded = load_engine(path, "openvino", 1)
    runtime = engine.engine.compiled.get_runtime_model()  # under the NHWC-output wrapper
    precisions = {
        op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in runtime.get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert precisions and all(p in ("u8", "i8") for p in precisions.values()), precisions
    # the normalisation is folded (the host writes the mean-colour border); channels-last pixels
    assert loaded.preprocessing.border == 1 and loaded.preprocessing.layout == "NHWC"
    seg = Segmenter(engine, loaded)
    fp32 = fast_segmenter((model, card), threads=1, cache_dir=tmp_path)
    agreement = []
    for image in images[6:]:
        got, ref = seg.predict(image).mask, fp32.predict(image).mask
        assert got.shape == (64, 64)
        agreement.append((got == ref).mean())
    # diversified random weights have tiny logit margins, so int8 flips many pixels (measured
    # 0.73-0.79); a wrong layout or channel order scores about 1/5, chance for 5 classes
    assert np.mean(agreement) > 0.65


def test_label_stride_follows_the_input_size():
    from atrous.fastpath import DEFAULT_LABEL_STRIDE, FULL_LABELS_BELOW, label_stride_for

    assert label_stride_for(128) == label_stride_for(FULL_LABELS_BELOW - 1) == 1
    assert label_stride_for(FULL_LABELS_BELOW) == label_stride_for(513) == DEFAULT_LABEL_STRIDE
    assert label_stride_for(None) == DEFAULT_LABEL_STRIDE


def test_a_short_label_map_stays_in_one_band(monkeypatch):
    # a second thread's hand-off costs more than half of a short map's rows save
    import atrous.upsample as upsample

    monkeypatch.setattr(upsample, "cores_oversubscribed", lambda: False)
    submitted: list[int] = []
    real_pool = upsample._pool
    monkeypatch.setattr(upsample, "_pool", lambda n: submitted.append(n) or real_pool(n))
    logits = np.random.default_rng(4).normal(0, 1, (4, 17, 17)).astype(np.float32)
    short = upsample.sparse_upsample_argmax(logits, (129, 129), None, 2)
    assert submitted == []
    tall = upsample.sparse_upsample_argmax(logits, (2 * upsample.MIN_BAND_ROWS, 129), None, 2)
    assert submitted == [1]
    assert short.shape == (129, 129) and tall.shape == (160, 129)
