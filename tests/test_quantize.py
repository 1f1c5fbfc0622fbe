"""int8 PTQ in ONNX Runtime, bias correction, fp16 weights, sensitivity sweep and auto mixed.

The float model is trained for a few steps on coloured Voronoi scenes so its outputs mean
something (a random network is chaotic: 1% input noise flips a third of its pixels, so
agreement would measure nothing). Calibration and held-out images come from the same generator.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atrous.export.onnx import export_onnx, read_onnx_card
from atrous.models.zoo import default_card, get_model
from atrous.quantize.bias_correction import bias_correct, fake_quantize_weight
from atrous.quantize.fp16 import fp16_weights
from atrous.quantize.nncf_ptq import nncf_available
from atrous.quantize.pipeline import choose_calibration
from atrous.quantize.ptq import calibration_batches, quantizable_nodes, quantize_onnx
from atrous.quantize.qat import insert_fake_quant, qat_export, qat_finetune, remove_fake_quant
from atrous.quantize.sensitivity import (
    agreement_scorer,
    choose_float_groups,
    layer_groups,
    sensitivity_sweep,
)

NUM_CLASSES = 3
SIZE = 33
_COLOURS = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32) * 2 - 1


def voronoi_scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, S, S) already normalised, and labels (n, S, S): colour = class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, labels = [], []
    for _ in range(n):
        points = rng.uniform(0, SIZE, (3, 2))
        classes = rng.permutation(NUM_CLASSES)
        dist = (yy[None] - points[:, 0, None, None]) ** 2 + (
            xx[None] - points[:, 1, None, None]
        ) ** 2
        label = classes[dist.argmin(0)]
        image = _COLOURS[label].transpose(2, 0, 1) + 0.2 * rng.normal(size=(3, SIZE, SIZE))
        images.append(image.astype(np.float32))
        labels.append(label)
    return np.stack(images), np.stack(labels)


@pytest.fixture(scope="module")
def trained(request):
    """A dm0.5 DeepLab trained briefly on the scenes (zero-init residuals train fast).

    The weights are kept in pytest's cache directory, so only the first run pays for training.
    """
    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=NUM_CLASSES)
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=NUM_CLASSES)
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cached = cache.mkdir("atrous-quant") / f"voronoi-{STEPS}.pt" if cache else None
    if cached is not None and cached.is_file():
        try:
            model.load_state_dict(torch.load(cached, weights_only=True))
            return model.eval(), card
        except (RuntimeError, OSError):  # stale cache (model code changed): train again
            torch.manual_seed(0)
            model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=NUM_CLASSES)
    for block in model.backbone.features:
        if getattr(block, "use_residual", False):
            nn.init.zeros_(block.conv[-1].weight)
    x, y = voronoi_scenes(64, seed=0)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the same weights whatever thread count earlier tests left behind
    model.train()
    try:
        for _ in range(STEPS):
            idx = torch.randint(0, len(x), (8,), generator=gen)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    if cached is not None:
        torch.save(model.state_dict(), cached)
    return model, card


STEPS = 60


@pytest.fixture(scope="module")
def float_onnx(trained, tmp_path_factory):
    model, card = trained
    path = tmp_path_factory.mktemp("ptq") / "float.onnx"
    return export_onnx(model, card, path, sample_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def calib():
    return [b[None] for b in voronoi_scenes(16, seed=1)[0]]


@pytest.fixture(scope="module")
def held_out():
    return [b[None] for b in voronoi_scenes(12, seed=2)[0]]


def _run(path, batches):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: b})[0] for b in batches]


def test_trained_model_is_meaningful(trained):
    model, _ = trained
    x, y = voronoi_scenes(12, seed=2)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (pred == y).mean() > 0.6  # well above the 1/3 of a constant guess


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_int8_runs_in_ort_and_agrees_with_float(float_onnx, calib, held_out, tmp_path, granularity):
    out = quantize_onnx(float_onnx, calib, tmp_path / "int8.onnx", granularity=granularity)
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # weights are stored as int8 initializers
    assert any(i.data_type == onnx.TensorProto.INT8 for i in proto.graph.initializer)
    ref = _run(float_onnx, held_out)
    got = _run(out, held_out)
    agreement = np.mean(
        [(r.argmax(1) == g.argmax(1)).mean() for r, g in zip(ref, got, strict=True)]
    )
    assert agreement >= 0.98
    # the card travels into the int8 file with the quantization settings
    card = read_onnx_card(out)
    assert card.num_classes == NUM_CLASSES
    assert card.provenance.notes["quantization"]["granularity"] == granularity


def test_int8_file_is_smaller(float_onnx, calib, tmp_path):
    out = quantize_onnx(float_onnx, calib, tmp_path / "int8.onnx")
    assert out.stat().st_size < 0.4 * float_onnx.stat().st_size


def test_calibration_uses_card_preprocessing(trained):
    _, card = trained
    image = np.full((20, 30, 3), 255, np.uint8)
    (batch,) = calibration_batches([image], card, num=1)
    # longest side to the card size, normalised with the card's mean/std
    assert batch.shape[1] == 3 and max(batch.shape[2:]) >= card.preprocessing.size
    expected = (1.0 - card.preprocessing.mean[0]) / card.preprocessing.std[0]
    assert batch[0, 0, 0, 0] == pytest.approx(expected, rel=1e-4)


def test_bad_arguments_are_one_line_errors(float_onnx, calib, tmp_path):
    from atrous.errors import InputError

    with pytest.raises(InputError, match="granularity"):
        quantize_onnx(float_onnx, calib, tmp_path / "x.onnx", granularity="per-row")
    with pytest.raises(InputError, match="not found"):
        quantize_onnx(tmp_path / "missing.onnx", calib, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@torch.no_grad()
def test_bias_correction_removes_mean_shift():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3, padding=1, groups=1)
    x = torch.randn(4, 16, 12, 12) + 2.0  # non-zero input mean makes the weight error shift
    ref = conv(x)
    quant = copy.deepcopy(conv)
    quant.weight.copy_(fake_quantize_weight(conv.weight, "per-tensor"))
    shift_before = (quant(x) - ref).mean(dim=(0, 2, 3)).abs().mean()
    model = nn.Sequential(copy.deepcopy(conv))
    bias_correct(model, [x], "per-tensor")
    model[0].weight.copy_(fake_quantize_weight(model[0].weight, "per-tensor"))
    # interior pixels (padding breaks the mean-input assumption at borders)
    diff = (model(x) - ref)[..., 1:-1, 1:-1]
    shift_after = diff.mean(dim=(0, 2, 3)).abs().mean()
    assert shift_after < 0.2 * shift_before


def test_fp16_weights_halve_size_and_keep_output(float_onnx, held_out, tmp_path):
    out = fp16_weights(float_onnx, tmp_path / "fp16.onnx")
    assert out.stat().st_size < 0.6 * float_onnx.stat().st_size
    for r, g in zip(_run(float_onnx, held_out[:2]), _run(out, held_out[:2]), strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=5e-2 * np.abs(r).max())


def test_layer_groups_cover_every_quantizable_node(float_onnx):
    blocks = layer_groups(float_onnx, "block")
    nodes = quantizable_nodes(float_onnx)
    assert sorted(n for group in blocks.values() for n in group) == sorted(nodes)
    assert 5 < len(blocks) < len(nodes)


@pytest.mark.slow  # quantizes every layer group in turn (~30 s)
def test_sweep_ranks_groups_and_mixed_honours_budget(float_onnx, calib, held_out, tmp_path):
    score = agreement_scorer(float_onnx, held_out[:6])
    quant = {"granularity": "per-tensor", "activations": "int8"}
    sweep = sensitivity_sweep(float_onnx, calib[:8], score, tmp_path / "work", **quant)
    gains = [g.gain for g in sweep.table]
    assert gains == sorted(gains, reverse=True)
    assert sweep.float_score == pytest.approx(100.0)
    assert sweep.int8_drop > 0  # per-tensor int8 changes some pixels: there is something to win
    loose = choose_float_groups(sweep, tmp_path / "loose.onnx", score, max_drop=100.0)
    assert loose.float_groups == [] and loose.mixed_score == pytest.approx(sweep.int8_score)
    # a budget of half the int8 drop: the fewest top-ranked groups that meet it stay in float
    budget = sweep.int8_drop / 2
    mixed = choose_float_groups(sweep, tmp_path / "mixed.onnx", score, max_drop=budget)
    assert mixed.mixed_drop <= budget
    assert 1 <= len(mixed.float_groups) < len(mixed.table)
    assert mixed.float_groups == [g.name for g in sweep.table[: len(mixed.float_groups)]]
    assert score(mixed.path) == pytest.approx(mixed.mixed_score)
    if len(mixed.float_groups) > 1:  # fewest: one group less does not meet the budget
        fewer = choose_float_groups(
            sweep,
            tmp_path / "f.onnx",
            score,
            max_drop=budget,
            max_float_groups=len(mixed.float_groups) - 1,
        )
        assert fewer.mixed_drop > budget
    # the groups kept in float really run in float: their weights are float initializers
    proto = onnx.load(str(mixed.path))
    floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    by_name = {n.name: n for n in proto.graph.node}
    assert all(by_name[n].input[1] in floats for n in mixed.float_nodes)
    convs = [n for n in by_name.values() if n.op_type == "Conv"]
    quantized = [n for n in convs if n.name not in mixed.float_nodes]
    assert quantized and all(n.input[1] not in floats for n in quantized)
    assert read_onnx_card(mixed.path).provenance.notes["quantization"]["float_groups"]


@pytest.mark.slow
def test_qat_trains_through_rounding_and_exports_int8(trained, calib, held_out, tmp_path):
    model, card = trained
    qat_model = copy.deepcopy(model)
    insert_fake_quant(qat_model)
    conv = qat_model.backbone.features[0][0]
    levels = torch.unique(conv.weight[0].detach())
    assert len(levels) <= 255  # the forward sees int8-rounded weights
    remove_fake_quant(qat_model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qat_model.modules())

    x, y = voronoi_scenes(16, seed=3)
    batches = [(torch.from_numpy(x[i : i + 4]), torch.from_numpy(y[i : i + 4])) for i in (0, 4)]
    qat_model = copy.deepcopy(model)
    before = qat_model.classifier.weight.detach().clone()
    qat_finetune(qat_model, batches, steps=3, lr=1e-4)
    assert not torch.equal(before, qat_model.classifier.weight)
    assert not any(hasattr(m, "act_fake_quant") for m in qat_model.modules())
    out = qat_export(qat_model, card, calib[:8], tmp_path / "qat.onnx")
    with torch.no_grad():
        ref = [qat_model(torch.from_numpy(b)).argmax(1).numpy() for b in held_out]
    got = [g.argmax(1) for g in _run(out, held_out)]
    agreement = np.mean([(r == g).mean() for r, g in zip(ref, got, strict=True)])
    assert agreement >= 0.98
    _, labels = voronoi_scenes(12, seed=2)
    assert np.mean([(g[0] == lab).mean() for g, lab in zip(got, labels, strict=True)]) > 0.6


@pytest.mark.slow
@pytest.mark.skipif(
    not nncf_available() or importlib.util.find_spec("atrous.runtimes.openvino_engine") is None,
    reason="NNCF or the OpenVINO exporter not installed (pip install atrous[openvino])",
)
def test_openvino_nncf_int8_agrees_with_float(float_onnx, calib, held_out, tmp_path):
    import openvino as ov

    from atrous.runtimes.openvino_engine import RT_INFO_CARD

    out = quantize_onnx(float_onnx, calib, tmp_path / "int8.xml", engine="openvino")
    assert out.with_suffix(".bin").stat().st_size < 0.5 * float_onnx.stat().st_size
    model = ov.Core().read_model(str(out))
    assert model.has_rt_info(RT_INFO_CARD)
    compiled = ov.Core().compile_model(model, "CPU")
    ref = _run(float_onnx, held_out[:4])
    got = [compiled(b)[0] for b in held_out[:4]]
    agreement = np.mean(
        [(r.argmax(1) == g.argmax(1)).mean() for r, g in zip(ref, got, strict=True)]
    )
    assert agreement >= 0.98


def test_choose_calibration_picks_the_best_scoring_method(float_onnx, calib, tmp_path):
    scores = {"minmax": 1.0, "entropy": 3.0, "percentile": 2.0}

    def score(path):  # a stand-in scorer that tells the methods apart by file name
        return next(v for k, v in scores.items() if k in path.name)

    assert choose_calibration(float_onnx, calib[:4], score, tmp_path) == "entropy"
    assert sorted(p.name for p in tmp_path.glob("calib_*.onnx")) == [
        "calib_entropy.onnx",
        "calib_minmax.onnx",
        "calib_percentile.onnx",
    ]


def _as_pixels(batch: np.ndarray, card) -> np.ndarray:
    """A normalised (3, H, W) scene back to the uint8 RGB image the card would normalise to it."""
    pre = card.preprocessing
    std = np.asarray(pre.std, np.float32)[:, None, None]
    mean = np.asarray(pre.mean, np.float32)[:, None, None]
    rgb = np.clip(np.rint((batch * std + mean) * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def test_fast_int8_graph_agrees_with_fast_fp32(trained, tmp_path):
    from atrous.fastpath import export_fast_int8, export_fast_onnx
    from atrous.segmenter import Segmenter

    model, card = trained
    card = card.model_copy(deep=True)
    card.preprocessing = card.preprocessing.model_copy(update={"resize": "none"})
    calib_images = [_as_pixels(b, card) for b in voronoi_scenes(16, seed=1)[0]]
    held = [_as_pixels(b, card) for b in voronoi_scenes(12, seed=2)[0]]
    int8 = export_fast_int8(model, card, tmp_path / "f8.onnx", calib_images, label_stride=1)
    fp32 = export_fast_onnx(model, card, tmp_path / "f32.onnx", label_stride=1)
    seg8 = Segmenter.from_file(int8, engine="onnxruntime", threads=1)
    seg32 = Segmenter.from_file(fp32, engine="onnxruntime", threads=1)
    masks32 = [seg32.predict(im).mask for im in held]
    pairs = zip(held, masks32, strict=True)
    agreement = np.mean([(seg8.predict(im).mask == m).mean() for im, m in pairs])
    assert agreement >= 0.98
    assert len(np.unique(np.concatenate([m.ravel() for m in masks32]))) == NUM_CLASSES
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "BatchNormalization" not in ops
    facts = read_onnx_card(int8).fast_path
    assert facts.precision == "int8" and facts.label_stride == 1
