"""Edge-aware refinement: the guided filter against a per-window ridge fit, and what it buys."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from atrous.data.synthetic import SyntheticShapes
from atrous.errors import InputError
from atrous.evaluate import evaluate
from atrous.models.zoo import default_card
from atrous.refine import guided_filter, refine_probabilities, refine_radius
from atrous.segmenter import Segmenter


def _reference_guided_filter(guide, src, r, eps):
    """He et al.'s definition written out: a ridge fit of src on the RGB guide in every
    (2r+1)^2 window (edges mirrored), the fits covering a pixel averaged."""
    h, w = src.shape
    n = (2 * r + 1) ** 2
    gp = np.pad(guide.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    sp = np.pad(src.astype(np.float64), r, mode="symmetric")
    a = np.zeros((h, w, 3))
    b = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            g = gp[y : y + 2 * r + 1, x : x + 2 * r + 1].reshape(-1, 3)
            p = sp[y : y + 2 * r + 1, x : x + 2 * r + 1].ravel()
            gc, pc = g - g.mean(0), p - p.mean()
            a[y, x] = np.linalg.solve(gc.T @ gc / n + eps * np.eye(3), gc.T @ pc / n)
            b[y, x] = p.mean() - a[y, x] @ g.mean(0)
    ap = np.pad(a, ((r, r), (r, r), (0, 0)), mode="symmetric")
    bp = np.pad(b, r, mode="symmetric")
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            mean_a = ap[y : y + 2 * r + 1, x : x + 2 * r + 1].reshape(-1, 3).mean(0)
            out[y, x] = mean_a @ guide[y, x] + bp[y : y + 2 * r + 1, x : x + 2 * r + 1].mean()
    return out


@pytest.mark.parametrize("radius,eps", [(1, 1e-3), (3, 1e-2)])
def test_guided_filter_matches_per_window_ridge_fit(rng, radius, eps):
    guide = rng.random((11, 13, 3)).astype(np.float32)
    src = rng.random((2, 11, 13)).astype(np.float32)
    out = guided_filter(guide, src, radius, eps)
    for c in range(2):
        ref = _reference_guided_filter(guide, src[c], radius, eps)
        np.testing.assert_allclose(out[c], ref, atol=2e-4)


def test_guided_filter_keeps_constants_and_linear_functions_of_the_guide(rng):
    guide = rng.random((20, 24, 3)).astype(np.float32)
    constant = np.full((1, 20, 24), 0.3, np.float32)
    np.testing.assert_allclose(guided_filter(guide, constant, 4), constant, atol=1e-5)
    linear = (guide @ np.array([0.5, -0.2, 0.1], np.float32) + 0.2)[None]
    np.testing.assert_allclose(guided_filter(guide, linear, 4, eps=1e-7), linear, atol=1e-3)


def test_subsampled_fit_keeps_constants_and_approximates_the_full_fit_on_a_non_square_image():
    # a smooth colour ramp with one sharp edge (the fast guided filter assumes smooth fits)
    yy, xx = np.mgrid[0:37, 0:53] / 50.0
    guide = np.stack([0.2 + 0.5 * yy, 0.3 + 0.4 * xx, 0.5 + 0.2 * np.sin(3 * xx)], -1)
    guide[:, 30:] = guide[:, 30:, ::-1]
    guide = guide.astype(np.float32)
    maps = np.stack([0.5 + 0.4 * np.sin(3 * yy + 2 * xx), np.cos(2 * xx) ** 2]).astype(np.float32)
    full = guided_filter(guide, maps, 8)
    for step, tolerance in ((2, 0.006), (4, 0.015)):
        coarse = guided_filter(guide, maps, 8, subsample=step)
        assert coarse.shape == maps.shape
        assert np.abs(coarse - full).mean() < tolerance, step
    constant = np.full((1, 37, 53), 0.3, np.float32)
    np.testing.assert_allclose(guided_filter(guide, constant, 8, subsample=4), constant, atol=1e-5)


def test_more_maps_than_opencv_takes_at_once_are_filtered_independently(rng):
    guide = rng.random((9, 11, 3)).astype(np.float32)
    maps = rng.random((130, 9, 11)).astype(np.float32)  # over OpenCV's 128 channels
    out = guided_filter(guide, maps, 2)
    np.testing.assert_allclose(out[:5], guided_filter(guide, maps[:5], 2), atol=1e-6)
    np.testing.assert_allclose(out[-5:], guided_filter(guide, maps[-5:], 2), atol=1e-6)


def _edge_scene(edge: int = 21, size: int = 48):
    """Two flat colours split at column ``edge``, and the probabilities a network at output
    stride 8 would give: the true split averaged over 8x8 cells, upsampled bilinearly."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, :edge] = (200, 60, 40)
    image[:, edge:] = (40, 90, 210)
    right = np.zeros((size, size), np.float32)
    right[:, edge:] = 1.0
    coarse = cv2.resize(right, (size // 8, size // 8), interpolation=cv2.INTER_AREA)
    up = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
    return image, np.stack([1 - up, up]), (right > 0.5).astype(np.uint8)


def test_refinement_snaps_a_coarse_boundary_to_the_image_edge():
    image, probs, truth = _edge_scene()
    assert (probs.argmax(0) != truth).sum() > 0  # the coarse map misplaces the edge
    refined = refine_probabilities(image, probs, refine_radius(8))
    np.testing.assert_array_equal(refined.argmax(0), truth)
    assert refined.min() >= 0
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-5)


def test_refine_radius_is_two_output_cells_in_image_pixels():
    assert refine_radius(16) == 32
    assert refine_radius(8) == 16
    assert refine_radius(16, scale=0.5) == 64  # the network saw the image at half size
    assert refine_radius(16, scale=80) == 1


def test_refinement_refuses_mismatched_sizes_and_float_images():
    image, probs, _ = _edge_scene()
    with pytest.raises(InputError, match="one size"):
        refine_probabilities(image[:40], probs, 4)
    with pytest.raises(InputError, match="uint8"):
        refine_probabilities(image / 255.0, probs, 4)


def test_segmenter_sizes_the_window_by_its_cells_in_the_original_image(rng):
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=2)
    fixed = card.preprocessing.model_copy(update={"resize": "fixed", "size": 512})
    seg = Segmenter(_CoarseOracle(2), card.model_copy(update={"preprocessing": fixed}))
    assert seg.output_stride == 16
    image = rng.integers(0, 256, (100, 400, 3), dtype=np.uint8)
    probs = rng.random((2, 100, 400)).astype(np.float32)
    # 400 px shrink to 512 / 400 = 1.28x along x (100 px grow 5.12x): a cell spans 12.5 px
    # of the original's width, so two cells are 25 px
    np.testing.assert_allclose(
        seg.refine(image, probs), refine_probabilities(image, probs, 25), atol=1e-6
    )
    plus = Segmenter(_CoarseOracle(2), default_card("deeplabv3plus_xception65_os16"))
    assert plus.output_stride == 4  # the V3+ decoder's logits are at 1/4


def test_refinement_needs_a_model_that_outputs_logits():
    from atrous.errors import ModelError

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=2)
    seg = Segmenter(_CoarseOracle(2), card.model_copy(update={"output": "labels"}))
    with pytest.raises(ModelError, match="outputs logits"):
        seg.predict(np.zeros((16, 16, 3), np.uint8), refine=True)


class _CoarseOracle:
    """An engine giving the true labels as one-hot scores averaged over 16x16 cells: what a
    perfect network at output stride 16 outputs."""

    name, threads = "coarse-oracle", 1

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.label: np.ndarray | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        n, _, h, w = batch.shape
        onehot = np.stack([(self.label == c).astype(np.float32) for c in range(self.num_classes)])
        cells = onehot.reshape(self.num_classes, h // 16, 16, w // 16, 16).mean((2, 4))
        return np.repeat(8.0 * cells[None], n, 0)

    def describe(self) -> dict:
        return {"engine": self.name}


def test_evaluate_with_refinement_recovers_boundaries_of_an_output_stride_16_oracle():
    data = SyntheticShapes("val", length=4, size=96)
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"resize": "none"})}
    )
    engine = _CoarseOracle(5)

    class _PerSample(list):  # feeds each sample's label to the oracle as it is read
        def __getitem__(self, i):
            engine.label = data[i].mask
            return data[i]

    dataset = _PerSample(data)
    dataset.classes, dataset.ignore_index, dataset.name = data.classes, 255, data.name
    seg = Segmenter(engine, card)
    plain = evaluate(seg, dataset, progress=False)
    refined = evaluate(seg, dataset, refine=True, progress=False)
    assert refined.refine and refined.to_dict()["refine"] is True
    assert refined.miou > plain.miou + 0.03, (plain.miou, refined.miou)
    assert refined.pixel_accuracy > plain.pixel_accuracy


def test_predict_and_cli_refine_give_the_refined_argmax_at_the_original_size(
    tmp_path, tiny_checkpoint, rng
):
    from PIL import Image
    from typer.testing import CliRunner

    from atrous.cli import app

    path, *_ = tiny_checkpoint
    seg = Segmenter.from_file(path, engine="torch", threads=2)
    # the card resizes the longest side to 513: 600 -> 513, so two cells are 37 px here
    image = cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (600, 400))
    plain = seg.probabilities(image)
    probs = seg.probabilities(image, refine=True)
    assert probs.shape == (len(seg.card.classes), 400, 600)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, refine_probabilities(image, plain, 37), atol=1e-5)
    result = seg.predict(image, refine=True, probabilities=True)
    np.testing.assert_array_equal(result.mask, probs.argmax(0))
    assert set(result.timings) == {"decode_ms", "infer_ms", "refine_ms", "total_ms"}
    Image.fromarray(image).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["predict", str(path), str(tmp_path / "a.png"), "-o", str(out), "--refine"]
    run = CliRunner().invoke(app, [*args, "--threads", "2", "--no-overlay"])
    assert run.exit_code == 0, run.output
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), result.mask)


def test_evaluate_cli_refine_scores_the_refined_argmax(small_checkpoint):
    import json

    from typer.testing import CliRunner

    from atrous.cli import app
    from atrous.data import open_dataset

    args = ["evaluate", str(small_checkpoint), "synthetic", "--limit", "2", "--json"]
    run = CliRunner().invoke(app, [*args, "--refine", "--threads", "2"])
    assert run.exit_code == 0, run.output
    reported = json.loads(run.stdout)
    seg = Segmenter.from_file(small_checkpoint, engine="torch", threads=2)
    data = open_dataset("synthetic", "val", card=seg.card)
    expected = evaluate(seg, data, refine=True, limit=2, progress=False)
    assert reported["refine"] is True
    assert reported["miou"] == pytest.approx(expected.miou, abs=1e-6)
