"""The evaluator: metrics against torchmetrics, protocols, flip/multi-scale, any engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from atrous.data.synthetic import SyntheticShapes
from atrous.errors import InputError
from atrous.evaluate import ConfusionMatrix, evaluate, parse_scales, plot_confusion
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter


def _random_pairs(rng, n_classes=6, n=5):
    pairs = []
    for _ in range(n):
        h, w = rng.integers(20, 60, size=2)
        label = rng.integers(0, n_classes, size=(h, w)).astype(np.uint8)
        label[rng.random((h, w)) < 0.15] = 255
        pred = label.copy()
        noise = rng.random((h, w)) < 0.4
        pred[noise] = rng.integers(0, n_classes, size=int(noise.sum()))
        pred[pred == 255] = rng.integers(0, n_classes)
        pairs.append((pred, label))
    return pairs


@pytest.mark.parametrize("absent_class", [False, True])
def test_metrics_match_torchmetrics(rng, absent_class):
    n = 6
    pairs = _random_pairs(rng, n)
    if absent_class:  # class 5 never appears in labels nor predictions
        pairs = [(np.where(p == 5, 0, p), np.where(t == 5, 0, t)) for p, t in pairs]
    cm = ConfusionMatrix(n)
    kw = {"num_classes": n, "ignore_index": 255}
    tm = {
        "iou": MulticlassJaccardIndex(average="none", **kw),
        "miou": MulticlassJaccardIndex(average="macro", **kw),
        "fw": MulticlassJaccardIndex(average="weighted", **kw),
        "acc": MulticlassAccuracy(average="micro", **kw),
        "macc": MulticlassAccuracy(average="macro", **kw),
    }
    for pred, label in pairs:
        cm.update(pred, label)
        p, t = torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(label.astype(np.int64))
        for metric in tm.values():
            metric.update(p.reshape(-1), t.reshape(-1))
    ref = {k: m.compute().numpy().astype(np.float64) for k, m in tm.items()}
    iou = cm.iou()
    present = np.isfinite(iou)
    assert present.sum() == (n - 1 if absent_class else n)
    np.testing.assert_allclose(iou[present], ref["iou"][present], atol=1e-6)
    assert abs(cm.miou() - ref["miou"]) < 1e-6
    assert abs(cm.fw_iou() - ref["fw"]) < 1e-6
    assert abs(cm.pixel_accuracy() - ref["acc"]) < 1e-6
    if not absent_class:  # torchmetrics counts an absent class as 0 recall; we leave it out
        assert abs(cm.mean_accuracy() - ref["macc"]) < 1e-6


def test_confusion_matrix_is_dataset_level_not_per_image_average():
    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 0, 0, 1]]), np.array([[0, 0, 0, 0]]))  # image IoU 0.75 / 0
    cm.update(np.array([[1] * 8]), np.array([[1] * 8]))
    # class 0: tp 3, union 4 -> 0.75; class 1: tp 8, union 9
    assert cm.miou() == pytest.approx((0.75 + 8 / 9) / 2)


def test_confusion_matrix_rejects_labels_outside_classes():
    cm = ConfusionMatrix(3)
    with pytest.raises(InputError, match="img7: label value 4"):
        cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 4, np.uint8), "img7")


def test_parse_scales():
    assert parse_scales("0.5:0.25:1.75") == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert parse_scales("1.0") == (1.0,)
    assert parse_scales("0.5,1") == (0.5, 1.0)
    with pytest.raises(InputError):
        parse_scales("a:b")


class _OracleEngine:
    """An engine that returns one-hot logits of a fixed label map (for protocol tests)."""

    name, threads = "oracle", 1

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.label = None

    def run(self, batch):
        n, _, h, w = batch.shape
        out = np.zeros((n, self.num_classes, h, w), np.float32)
        lab = self.label[:h, :w]
        for c in range(self.num_classes):
            out[:, c, : lab.shape[0], : lab.shape[1]] = lab == c
        return out

    def describe(self):
        return {"engine": self.name}


@pytest.fixture
def small_model():
    from atrous.models.zoo import default_card, get_model

    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    pre = card.preprocessing.model_copy(update={"size": 64})
    return model, card.model_copy(update={"preprocessing": pre})


def test_evaluate_matches_manual_confusion_matrix(small_model):
    model, card = small_model
    data = SyntheticShapes("val", length=3, size=48)
    seg = Segmenter(TorchEngine(model, threads=2), card)
    result = evaluate(seg, data, progress=False)
    cm = ConfusionMatrix(5)
    for sample in data:
        cm.update(seg.predict(sample.image).mask, sample.mask)
    np.testing.assert_array_equal(result.confusion, cm.matrix)
    assert result.miou == pytest.approx(cm.miou())
    assert result.confusion.sum() == 3 * 48 * 48  # scored at the label's own size
    d = json.loads(json.dumps(result.to_dict()))
    assert d["protocol"] == "dataset" and len(d["per_class_iou"]) == 5


def test_flip_and_scales_average_softmax(small_model):
    model, card = small_model
    data = SyntheticShapes("val", length=2, size=40)
    seg = Segmenter(TorchEngine(model, threads=2), card)
    result = evaluate(seg, data, flip=True, scales=(0.75, 1.0), progress=False)
    cm = ConfusionMatrix(5)
    for s in data:
        probs = 0
        for scale in (0.75, 1.0):
            for flip in (False, True):
                probs = probs + torch.softmax(torch.from_numpy(seg.logits(s.image, scale, flip)), 0)
        cm.update(probs.argmax(0).numpy(), s.mask)
    np.testing.assert_array_equal(result.confusion, cm.matrix)
    # the flipped logits are the mirrored logits of the mirrored image
    img = data[0].image
    np.testing.assert_allclose(
        seg.logits(img, flip=True), seg.logits(img[:, ::-1].copy())[..., ::-1], atol=1e-4
    )


def test_oracle_scores_perfectly_under_every_protocol(small_model, tmp_path):
    _, card = small_model
    data = SyntheticShapes("val", length=1, size=40)
    engine = _OracleEngine(5)
    engine.label = data[0].mask
    pre = card.preprocessing.model_copy(update={"resize": "none"})
    seg = Segmenter(engine, card.model_copy(update={"preprocessing": pre}))
    for protocol in ("dataset", "tf-pad513", "per-image"):
        result = evaluate(seg, data, protocol=protocol, progress=False)
        assert result.miou == pytest.approx(1.0), protocol
        assert result.protocol == protocol
    engine.label = np.zeros_like(engine.label)  # everything predicted background
    result = evaluate(seg, data, progress=False)
    assert result.pixel_accuracy == pytest.approx((data[0].mask == 0).mean())
    assert result.per_class_iou[0] == pytest.approx((data[0].mask == 0).mean())
    path = plot_confusion(result, tmp_path / "cm.png")
    assert path.stat().st_size > 1000


def test_unknown_protocol_and_class_mismatch(small_model):
    model, card = small_model
    seg = Segmenter(TorchEngine(model, threads=2), card)
    with pytest.raises(InputError, match="unknown protocol"):
        evaluate(seg, SyntheticShapes("val", 1, 32), protocol="nope")
    with pytest.raises(InputError, match="classes"):
        evaluate(
            Segmenter(seg.engine, card.model_copy(update={"classes": ["a", "b"]})),
            SyntheticShapes("val", 1, 32),
            progress=False,
        )
