"""``atrous predict``: segment files, folders and globs; write palette masks and overlays."""

from __future__ import annotations

import glob
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress

from atrous.cli._app import app
from atrous.cli._options import ContractOpt, EngineOpt, JsonFlag, JsonOut, ThreadsOpt
from atrous.cli._output import Output
from atrous.data.io import read_image, write_mask_png
from atrous.errors import InputError
from atrous.outputs import check_output_folder, output_stems
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


@app.command()
def predict(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    inputs: list[str] = typer.Argument(..., help="image files, folders or glob patterns"),
    out: Path = typer.Option(
        Path("predictions"),
        "--out",
        "-o",
        help="output folder, not one holding the inputs; inputs sharing a stem get distinct "
        "names: the first (in input order, folders sorted) a.png, later ones a.jpg.png (same "
        "folder) or <folder>_a.png (another); names too long are cut and tagged with a hash",
    ),
    engine: EngineOpt = "auto",
    threads: ThreadsOpt = None,
    overlay: bool = typer.Option(True, help="also write <name>_overlay.jpg"),
    alpha: float = typer.Option(0.5, help="overlay opacity, 0 to 1"),
    refine: bool = typer.Option(
        False, "--refine", help="snap boundaries to image edges (guided filter; slower)"
    ),
    contract: ContractOpt = None,
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Segment images; write <name>.png palette masks (and overlays) to --out.

    The summary line names the engine (the one picked, with --engine auto).
    """
    output = Output(as_json, json_out)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--alpha: expected an opacity from 0 to 1, got {alpha:g}")
    files = expand_inputs(inputs)
    check_output_folder(out, files)  # before any model is loaded
    segmenter = Segmenter(*load_engine(model, engine, threads, contract=contract))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    records = _segment_all(output, segmenter, files, out, overlay, alpha, refine)
    output.json({"engine": segmenter.engine.name, "out": str(out), "images": records})
    picked = " (picked by --engine auto)" if engine == "auto" else ""
    output.note(
        f"wrote {len(files)} mask(s) to {escape(str(out))}; engine: {segmenter.engine.name}{picked}"
    )


def _segment_all(
    output: Output,
    segmenter: Segmenter,
    files: list[Path],
    out: Path,
    overlay: bool,
    alpha: float,
    refine: bool,
) -> list[dict]:
    """Segment ``files`` in order, writing masks (and overlays); one line and record per file."""
    card, records = segmenter.card, []
    with Progress(console=output.console, transient=True, disable=len(files) < 2) as progress:
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
            histogram = result.class_histogram(card.classes)
            ms = result.timings["total_ms"] - result.timings["decode_ms"]
            records.append(
                {"input": str(path), "mask": str(out / f"{stem}.png"), "width": image.shape[1],
                 "height": image.shape[0], "ms": round(ms, 2), "classes": histogram}
            )  # fmt: skip
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(histogram.items())[:4])
            renamed = f" -> {stem}.png" if stem != path.stem else ""
            # the first call also opens sessions and compiles kernels: say so beside its time
            first = " (first image: includes warm-up)" if index == 0 and len(files) > 1 else ""
            line = f"{path.name}{renamed}: {image.shape[1]}x{image.shape[0]} {ms:.1f} ms{first}"
            if not output.as_json:
                progress.console.print(escape(f"{line}  [{top}]"), highlight=False, soft_wrap=True)
            progress.advance(task)
    return records
