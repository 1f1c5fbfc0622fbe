"""``atrous predict``: segment files, folders and globs; write palette masks and overlays."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress

from atrous.batch import segment_dataset
from atrous.cli._app import app
from atrous.cli._model import open_segmenter, path_line, with_weights
from atrous.cli._options import (
    ContractOpt,
    EngineOpt,
    JsonFlag,
    JsonOut,
    OutputTensorOpt,
    ThreadsOpt,
    WeightsOpt,
    with_output_tensor,
)
from atrous.cli._output import Output
from atrous.data.io import fast_read_image
from atrous.errors import ConfigError, InputError
from atrous.outputs import (
    IMAGE_SUFFIXES,
    check_output_folder,
    expand_inputs,
    output_stems,
    write_prediction,
)
from atrous.segmenter import Segmenter
from atrous.video import is_video_source, segment_video

__all__ = ["IMAGE_SUFFIXES", "expand_inputs", "output_stems", "predict"]


def _predict_on_ray(
    output: Output,
    model: str,
    inputs: list[str],
    out: Path,
    address: str,
    engine: str,
    threads: int | None,
    actors: int,
    overlay: bool,
    alpha: float,
) -> None:
    """``--ray``: the images on a Ray cluster (or a local instance) via atrous.batch."""
    kw = {"engine": engine, "threads": threads or 1, "actors": actors, "alpha": alpha}
    address_ = None if address == "local" else address
    summary = segment_dataset(model, inputs, out, address=address_, overlay=overlay, **kw)
    output.json(summary.to_dict())
    output.note(" ".join(f"{k}={v}" for k, v in summary.to_dict().items()))


def _predict_videos(
    output: Output,
    segmenter: Segmenter,
    sources: list[str],
    out: Path,
    overlay: bool,
    masks: bool,
    alpha: float,
    max_frames: int | None,
) -> None:
    """Videos, cameras and stream URLs: overlay video, masks and summary via atrous.video."""
    images = [source for source in sources if not is_video_source(source)]
    if images:
        raise InputError(f"{images[0]}: not a video; segment videos and images in separate runs")
    records = []
    for source in sources:
        kw = {"overlay": overlay, "masks": masks, "alpha": alpha, "max_frames": max_frames}
        summary = segment_video(segmenter, source, out, **kw)
        records.append({"source": source, "frames": summary.frames, "fps": summary.fps,
                        "frames_per_second": summary.frames_per_second,
                        "stage_ms": summary.stage_ms})  # fmt: skip
        stages = ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in summary.stage_ms.items())
        output.note(
            f"{source}: {summary.frames} frames at {summary.fps:g} fps, "
            f"{summary.frames_per_second:.1f} frames/s ({stages}) -> {out}"
        )
    output.json(
        {"engine": segmenter.engine.name, "path": segmenter.path_used, "out": str(out),
         "videos": records}
    )  # fmt: skip
    output.note(escape(path_line(segmenter)))


@app.command()
def predict(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    inputs: list[str] = typer.Argument(
        ..., help="image files, folders or glob patterns; or videos, camera indexes, stream URLs"
    ),
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
    output_tensor: OutputTensorOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    frame_masks: bool = typer.Option(False, help="videos: also write <name>_masks/NNNNNN.png"),
    max_frames: int = typer.Option(None, help="videos, cameras, streams: stop after N frames"),
    ray: str = typer.Option(None, help="run on Ray: 'local' (a local instance) or an address"),
    actors: int = typer.Option(2, help="with --ray: engines (actors) to run, --threads each"),
) -> None:
    """Segment images (or videos, cameras, stream URLs); write <name>.png palette masks (and
    overlays; for a video <name>_overlay.mp4 and a summary) to --out.

    The summary line names the engine (the one picked, with --engine auto).
    """
    contract = with_output_tensor(contract, output_tensor)
    output = Output(as_json, json_out)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--alpha: expected an opacity from 0 to 1, got {alpha:g}")
    if ray is not None:
        if contract:
            raise ConfigError("--contract and --output-tensor apply to a local run, not --ray")
        local = [item for item in inputs if Path(item).exists()]  # URLs are Ray's to read
        check_output_folder(out, expand_inputs(local) if local else [])
        source = with_weights(model, weights)
        return _predict_on_ray(
            output, source, inputs, out, ray, engine, threads, actors, overlay, alpha
        )
    if any(is_video_source(item) for item in inputs):
        check_output_folder(out, [])
        segmenter = open_segmenter(model, engine, threads, contract, weights)
        return _predict_videos(
            output, segmenter, inputs, out, overlay, frame_masks, alpha, max_frames
        )
    files = expand_inputs(inputs)
    check_output_folder(out, files)  # before any model is loaded
    segmenter = open_segmenter(model, engine, threads, contract, weights)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    records = _segment_all(output, segmenter, files, out, overlay, alpha, refine)
    output.json(
        {"engine": segmenter.engine.name, "path": segmenter.path_used, "out": str(out),
         "images": records}
    )  # fmt: skip
    picked = " (picked by --engine auto)" if engine == "auto" else ""
    output.note(
        f"wrote {len(files)} mask(s) to {escape(str(out))}; engine: {segmenter.engine.name}{picked}"
    )
    output.note(escape(path_line(segmenter)))


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
            image = fast_read_image(path)
            try:
                result = segmenter.predict(image, refine=refine)
            except InputError as exc:  # the segmenter does not know the file name
                raise InputError(f"{path}: {exc}") from None
            write_prediction(out, stem, image, result.mask, card.palette, overlay, alpha)
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
