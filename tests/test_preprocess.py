"""Pre/post-processing as plain functions: the same batches and masks as the Segmenter's."""

from __future__ import annotations

import numpy as np

from atrous.config import Preprocessing
from atrous.export.parity import synthetic_image
from atrous.models import default_card, get_model
from atrous.preprocess import Pipeline, image_of, predict_masks, preprocess, target_size
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter

NAME = "deeplabv3_mnv2_dm05_os16"


def test_target_size_follows_the_resize_policy():
    assert target_size(Preprocessing(resize="longest", size=100), 50, 200) == (25, 100)
    assert target_size(Preprocessing(resize="fixed", size=64), 50, 200) == (64, 64)
    assert target_size(Preprocessing(resize="none"), 50, 201, scale=0.5) == (25, 100)


def test_functions_give_what_the_segmenter_gives():
    card = default_card(NAME, num_classes=5)
    card.preprocessing = card.preprocessing.model_copy(update={"size": 65})
    engine = TorchEngine(get_model(NAME, num_classes=5).eval(), 1)
    images = [synthetic_image(40, 90, seed=1), synthetic_image(77, 50, seed=2)]
    seg = Segmenter(engine, card)
    batch, metas = preprocess(card, images)
    seg_batch, seg_metas = seg.preprocess(images)
    np.testing.assert_array_equal(batch, seg_batch)
    assert metas == seg_metas and metas[0].original == (40, 90)
    masks = predict_masks(engine, card, images)
    for image, mask in zip(images, masks, strict=True):
        np.testing.assert_array_equal(mask, seg.predict(image).mask)
    assert Pipeline(engine, card).card is card
    assert image_of((images[0], None)) is images[0]
