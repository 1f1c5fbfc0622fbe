"""Peak memory of segmenting a 50-megapixel photo: banded upsampling vs upsampling in one shot.

Writes a uniform 8660x5774 PNG (cheap), then in fresh processes decodes it and predicts with a
random dm0.5 model of ``--classes`` classes, once with the default banded upsample+argmax and once
with the band budget set to infinity (the whole C x H x W score tensor at once). Prints peak RSS
after decoding and after predicting, in MB. Run:

    python benchmarks/hardening_memory.py [--classes 21]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
import torch
torch.set_num_threads(1)
if sys.argv[3] == "one-shot":
    import atrous.upsample as u
    u.upsample_argmax.__defaults__ = (1 << 62,)
from atrous.data.io import read_image
from atrous.segmenter import Segmenter

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

segmenter = Segmenter.from_file(sys.argv[1], threads=1)
image = read_image(sys.argv[2])
decoded = peak_mb()
segmenter.predict(image)
print(json.dumps({"decoded_mb": round(decoded), "peak_mb": round(peak_mb())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=21)
    args = parser.parse_args()
    from PIL import Image

    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    with tempfile.TemporaryDirectory() as tmp:
        card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=args.classes)
        model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=args.classes).eval()
        checkpoint = save_checkpoint(Path(tmp) / "m.pt", model, card)
        photo = Path(tmp) / "photo.png"
        Image.new("RGB", (8660, 5774), (90, 140, 200)).save(photo, compress_level=1)
        for mode in ("banded", "one-shot"):
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(checkpoint), str(photo), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{mode:9s} {args.classes} classes: {report}")


if __name__ == "__main__":
    main()
