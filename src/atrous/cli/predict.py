"""``atrous predict``: segment files, folders and globs; write palette masks and overlays."""

from __future__ import annotations

import glob
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress

from atrous.cli._app import app, check_threads, console
from atrous.cli.models import CONTRACT_HELP
from atrous.data.io import read_image, write_mask_png
from atrous.errors import InputError
from atrous.segmenter import Segmenter
from atrous.sources import load_engine
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
    unique: dict[Path, Path] = {}
    for path in files:  # the same file named twice (a/x.png, a/../a/x.png) is segmented once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_stems(files: list[Path]) -> list[str]:
    """Distinct output names (without suffix), so no input's mask overwrites another's: the stem,
    or for a later input whose stem is taken, stem + extension (same folder, ``a.jpg``) or
    folder_stem (another folder, ``y_a``), then folder_stem + extension, then a ``-N`` suffix."""
    first: dict[str, Path] = {}  # stem -> the first input with it
    taken: set[str] = set()
    names: list[str] = []
    for path in files:
        folder = path.absolute().parent.name or "root"
        same_folder = first.setdefault(path.stem.casefold(), path).parent == path.parent
        tagged = path.name if same_folder else f"{folder}_{path.stem}"
        candidates = [path.stem, tagged, f"{folder}_{path.name}"]
        name = next((c for c in candidates if c.casefold() not in taken), None)
        count = 2
        while name is None or name.casefold() in taken:
            name, count = f"{candidates[-1]}-{count}", count + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def check_out_folder(out: Path) -> None:
    """Refuse an --out that exists but is not a folder, before any model is loaded."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")


@app.command()
def predict(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    inputs: list[str] = typer.Argument(..., help="image files, folders or glob patterns"),
    out: Path = typer.Option(
        Path("predictions"),
        "--out",
        "-o",
        help="output folder; inputs sharing a stem get distinct names: the first (in input order, "
        "folders sorted) a.png, later ones a.jpg.png (same folder) or <folder>_a.png (another)",
    ),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime, openvino or litert"),
    threads: int = typer.Option(None, help="inference threads (default: all cores)"),
    overlay: bool = typer.Option(True, help="also write <name>_overlay.jpg"),
    alpha: float = typer.Option(0.5, help="overlay opacity, 0 to 1"),
    refine: bool = typer.Option(
        False, "--refine", help="snap boundaries to image edges (guided filter; slower)"
    ),
    contract: list[str] = typer.Option(None, help=CONTRACT_HELP),
) -> None:
    """Segment images; write <name>.png palette masks (and overlays) to --out."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--alpha: expected an opacity from 0 to 1, got {alpha:g}")
    check_threads(threads)
    check_out_folder(out)
    files = expand_inputs(inputs)
    segmenter = Segmenter(*load_engine(model, engine, threads, contract=contract))
    card = segmenter.card
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    with Progress(console=console, transient=True, disable=len(files) < 2) as progress:
        task = progress.add_task("segmenting", total=len(files))
        for index, (path, stem) in enumerate(zip(files, output_stems(files), strict=True)):
            image = read_image(path)
            try:
                result = segmenter.predict(image, refine=refine)
            except InputError as exc:  # the segmenter does not know the file name
                raise InputError(f"{path}: {exc}") from None
            write_mask_png(out / f"{stem}.png", result.mask, card.palette)
            if overlay:
                save_overlay(out / f"{stem}_overlay.jpg", image, result.mask, card.palette, alpha)
            top = ", ".join(
                f"{k} {v:.0%}" for k, v in list(result.class_histogram(card.classes).items())[:4]
            )
            renamed = f" -> {stem}.png" if stem != path.stem else ""
            # the first call also opens sessions and compiles kernels: say so beside its time
            first = " (first image: includes warm-up)" if index == 0 and len(files) > 1 else ""
            progress.console.print(
                f"{path.name}{renamed}: {image.shape[1]}x{image.shape[0]} "
                f"{result.timings['total_ms'] - result.timings['decode_ms']:.1f} ms{first}  "
                + escape(f"[{top}]"),
                highlight=False,
            )
            progress.advance(task)
    console.print(f"wrote {len(files)} mask(s) to {out}")
