"""``atrous predict``: segment files, folders and globs; write palette masks and overlays."""

from __future__ import annotations

import glob
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress

from atrous.cli._app import app, console
from atrous.cli.models import CONTRACT_HELP
from atrous.data.io import read_image, write_mask_png
from atrous.errors import InputError
from atrous.runtimes import load_engine
from atrous.segmenter import Segmenter
from atrous.visualize import save_overlay

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> a de-duplicated list of files."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"{item}: pattern matches no files")
            files += [p for p in matches if p.is_file()]
        else:
            raise InputError(f"{item}: file not found")
    if not files:
        raise InputError(f"no images found in {', '.join(inputs)}")
    return list(dict.fromkeys(files))


@app.command()
def predict(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    inputs: list[str] = typer.Argument(..., help="image files, folders or glob patterns"),
    out: Path = typer.Option(Path("predictions"), "--out", "-o", help="output folder"),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime, openvino or litert"),
    threads: int = typer.Option(None, help="inference threads (default: all cores)"),
    overlay: bool = typer.Option(True, help="also write <name>_overlay.jpg"),
    alpha: float = typer.Option(0.5, help="overlay opacity"),
    contract: list[str] = typer.Option(None, help=CONTRACT_HELP),
) -> None:
    """Segment images; write <name>.png palette masks (and overlays) to --out."""
    files = expand_inputs(inputs)
    segmenter = Segmenter(*load_engine(model, engine, threads, contract=contract))
    card = segmenter.card
    out.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True, disable=len(files) < 2) as progress:
        task = progress.add_task("segmenting", total=len(files))
        for path in files:
            image = read_image(path)
            try:
                result = segmenter.predict(image)
            except InputError as exc:  # the segmenter does not know the file name
                raise InputError(f"{path}: {exc}") from None
            write_mask_png(out / f"{path.stem}.png", result.mask, card.palette)
            if overlay:
                save_overlay(
                    out / f"{path.stem}_overlay.jpg", image, result.mask, card.palette, alpha
                )
            top = ", ".join(
                f"{k} {v:.0%}" for k, v in list(result.class_histogram(card.classes).items())[:4]
            )
            progress.console.print(
                f"{path.name}: {image.shape[1]}x{image.shape[0]} "
                f"{result.timings['total_ms'] - result.timings['decode_ms']:.1f} ms  "
                + escape(f"[{top}]"),
                highlight=False,
            )
            progress.advance(task)
    console.print(f"wrote {len(files)} mask(s) to {out}")
