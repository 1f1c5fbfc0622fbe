"""Memory: a 50-megapixel photo is segmented in bounded memory, or refused with a clear message.

Decoding accepts up to ``MAX_PIXELS`` (60 MP); the network sees the card's resized input; only
the upsampling back to the original size scales with the photo, and it runs in row bands
(``atrous.upsample``), so the scores never exist at full size (4 bytes x classes per pixel).
A card that would feed the photo to the network unresized is refused above ``MAX_INPUT_PIXELS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from atrous.checkpoint import save_checkpoint
from atrous.errors import InputError
from atrous.models.zoo import default_card, get_model
from atrous.segmenter import MAX_INPUT_PIXELS, Segmenter
from atrous.upsample import upsample_argmax


@pytest.mark.parametrize(
    "source, size", [((33, 47), (257, 300)), ((64, 64), (64, 64)), ((40, 30), (17, 23))]
)
def test_banded_upsample_matches_full_interpolation(source, size):
    torch.manual_seed(0)
    logits = torch.randn(7, *source)
    full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    want = full.argmax(0).numpy()
    banded = upsample_argmax(logits, size, budget=7 * size[1] * 5)  # 5 rows per band
    assert banded.shape == size and banded.dtype == np.uint8
    assert (banded == want).mean() > 0.9999
    assert np.array_equal(upsample_argmax(logits, size), want)  # small: the one-shot path


def test_unresized_network_input_over_the_limit_is_refused():
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"resize": "none"})}
    )
    huge = np.zeros((5800, 8700, 3), dtype=np.uint8)  # 50 MP (zero pages: cheap)
    with pytest.raises(InputError, match="over the 17 megapixel limit; downscale it first"):
        Segmenter(None, card).preprocess([huge])  # type: ignore[arg-type]
    assert MAX_INPUT_PIXELS < 5800 * 8700


CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from atrous.data.io import read_image
    from atrous.segmenter import Segmenter

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    segmenter = Segmenter.from_file(sys.argv[1], threads=1)
    image = read_image(sys.argv[2])
    decoded = peak_mb()
    mask = segmenter.predict(image).mask
    print(json.dumps({
        "decoded_mb": decoded, "peak_mb": peak_mb(), "shape": list(mask.shape),
        "values": np.unique(mask).tolist(),
    }))
    """
)


def test_50_megapixel_prediction_stays_in_bounded_memory(tmp_path):
    classes = 8
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=classes)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": 128})}
    )
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=classes).eval()
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, card)
    width, height = 8660, 5774  # 50.0 MP
    photo = tmp_path / "photo.png"
    Image.new("RGB", (width, height), (90, 140, 200)).save(photo, compress_level=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint), str(photo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["shape"] == [height, width]
    assert set(report["values"]) <= set(range(classes))
    # full-size scores alone would be classes x 4 bytes x 50 MP = 1.6 GB (plus int64 argmax);
    # bands keep what prediction adds on top of the decoded photo small
    added = report["peak_mb"] - report["decoded_mb"]
    assert added < 500, report
