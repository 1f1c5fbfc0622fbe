"""Segmenter.from_file on a checkpoint with an exported-file engine: exported once, cached."""

from __future__ import annotations

import numpy as np

from atrous.config import DataConfig
from atrous.data import build_dataset
from atrous.evaluate import evaluate
from atrous.export.parity import synthetic_image
from atrous.segmenter import Segmenter


def test_checkpoint_on_onnxruntime_is_exported_once_into_the_cache(
    small_checkpoint, private_engine_cache
):
    seg = Segmenter.from_file(small_checkpoint, engine="onnxruntime", threads=1)
    cached = sorted((private_engine_cache / "export").iterdir())
    assert [p.suffix for p in cached] == [".onnx"] and seg.card.output == "logits"
    stamp = cached[0].stat().st_mtime_ns
    again = Segmenter.from_file(small_checkpoint, engine="onnxruntime", threads=1)
    assert cached[0].stat().st_mtime_ns == stamp and again.engine.name == seg.engine.name
    image = synthetic_image(90, 120, seed=3)
    torch_seg = Segmenter.from_file(small_checkpoint, engine="torch", threads=1)
    assert (seg.predict(image).mask == torch_seg.predict(image).mask).mean() > 0.995


def test_flip_and_refine_evaluate_on_the_cached_export(small_checkpoint, private_engine_cache):
    seg = Segmenter.from_file(small_checkpoint, engine="onnxruntime", threads=1)
    dataset = build_dataset(DataConfig(kind="synthetic", val_size=2, image_size=64), "val")
    result = evaluate(seg, dataset, flip=True, refine=True)
    assert 0.0 <= result.miou <= 1.0 and np.isfinite(result.miou)
