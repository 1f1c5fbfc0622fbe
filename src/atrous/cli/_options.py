"""The options verbs share, each with one meaning, type and default everywhere.

- ``--json``: a flag; print the result as JSON on stdout and nothing else there.
- ``--json-out FILE``: write the same JSON to FILE (with or without ``--json``).
- ``--out/-o``: where the verb's main output goes (a file, or a folder for predict/train/demo);
  files default to beside the input (see :func:`atrous.outputs.beside_input`).
- ``--threads N``: inference threads; default None = the engine's default, the cores this
  process may run on (``benchmark`` takes a list, ``1,2``, with the same default).
- ``--size N`` or ``HxW``: a network input size; square-only verbs refuse H != W in one line.
- ``--engine``: a runtime name (auto, torch, onnxruntime, openvino, litert, ncnn) or fast; auto
  picks the fastest installed one for an exported file, and for a checkpoint (as fast does) the
  fastest verified path: the fast graph ``atrous train`` wrote beside it, else the cached fp32
  fast graph, else torch (see :mod:`atrous.fastpath.deploy`).
- ``--weights NAME|FILE``: published weights (or a weights file) for a zoo name; resolved by
  ``cli._model.with_weights`` to the cached atrous checkpoint, so the verb opens a checkpoint.
- ``--contract key=value``: overrides of the model card (a foreign file's guessed contract),
  on every verb that opens a model; a ``<model file>.card.json`` beside the model is read the
  same way (the overrides apply on top of it).
- ``--output-tensor NAME|INDEX``: the output a multi-output model is read from (the card's
  ``output_tensor``; short for ``--contract output_tensor=...``); default the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from atrous.errors import ConfigError, InputError
from atrous.runtimes import default_threads

__all__ = [
    "CONTRACT_HELP",
    "ContractOpt",
    "EngineOpt",
    "JsonFlag",
    "JsonOut",
    "OutFile",
    "OutFolder",
    "OutputTensorOpt",
    "Size",
    "SizeOpt",
    "ThreadCountsOpt",
    "ThreadsOpt",
    "WeightsOpt",
    "parse_ints",
    "parse_size",
    "resolve_threads",
    "square_side",
    "thread_counts",
    "with_output_tensor",
]

CONTRACT_HELP = (
    "override the model card, key=value, e.g. preprocessing.mean=[0,0,0] "
    "preprocessing.std=[1,1,1] (inputs in [0,1]), preprocessing.resize=letterbox|stretch "
    "(a fixed input), preprocessing.layout=NHWC, output=probability, output_tensor=NAME; "
    "repeatable; a <model>.card.json beside the model is read first"
)
ENGINES = (
    "auto (for a checkpoint: the fastest verified path), fast, torch, onnxruntime, openvino, "
    "litert or ncnn"
)


class Size(NamedTuple):
    """A network input size, (height, width)."""

    height: int
    width: int


def parse_size(text: str) -> Size:
    """'513' or '513x513' (H x W) -> Size; a one-line ConfigError otherwise."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise ConfigError(f"--size '{text}': expected N or HxW, e.g. 513 or 513x513") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"--size '{text}': expected N or HxW with positive sizes")
    return Size(parts[0], parts[1])


def square_side(size: Size | None, verb: str) -> int | None:
    """The side of a square ``size`` for verbs that take one side; H != W refused in one line."""
    if size is None:
        return None
    if size.height != size.width:
        raise ConfigError(
            f"--size {size.height}x{size.width}: {verb} takes a square size (N or NxN)"
        )
    return size.height


def parse_ints(text: str, what: str) -> list[int]:
    """'1,2' -> [1, 2]; a one-line InputError naming ``--what`` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{what}: expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise InputError(f"--{what}: expected positive integers, got '{text}'")
    return values


def _check_threads(threads: int | None) -> int | None:
    """--threads as given; below 1 it is refused in one line before any work."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads: expected a positive number of threads, got {threads}")
    return threads


def resolve_threads(threads: int | None) -> int:
    """The thread count to use: the one asked for, else the engine default (usable cores)."""
    return threads if threads is not None else default_threads()


THREADS_HELP = "inference threads [default: the cores this process may run on]"

JsonFlag = Annotated[
    bool, typer.Option("--json", help="print the result as JSON on stdout (nothing else there)")
]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json-out", metavar="FILE", help="also write the result as JSON to FILE"),
]
OutFile = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="output file [default: beside the input]"),
]
OutFolder = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", help=THREADS_HELP, callback=_check_threads, show_default=False),
]
ThreadCountsOpt = Annotated[
    str | None,
    typer.Option(
        "--threads",
        metavar="N[,N...]",
        help="thread counts to measure, e.g. 1,2 [default: the cores this process may run on]",
        show_default=False,
    ),
]
SizeOpt = Annotated[
    Size | None,
    typer.Option("--size", metavar="N|HxW", parser=parse_size, help="network input size, N or HxW"),
]
EngineOpt = Annotated[str, typer.Option("--engine", help=ENGINES)]
ContractOpt = Annotated[list[str] | None, typer.Option("--contract", help=CONTRACT_HELP)]
OutputTensorOpt = Annotated[
    str | None,
    typer.Option(
        "--output-tensor",
        metavar="NAME|INDEX",
        help="the output of a multi-output model to read, by name or index [default: the first]",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        metavar="NAME|FILE",
        help="for a zoo name: published weights (see 'atrous zoo'; downloaded once, cached) "
        "or a weights file [default: random weights]",
        show_default=False,
    ),
]


def thread_counts(text: str | None) -> list[int]:
    """``benchmark --threads``: '1,2' -> [1, 2]; None -> [the engine default]."""
    return parse_ints(text, "threads") if text else [default_threads()]


def with_output_tensor(contract: list[str] | None, output_tensor: str | None) -> list[str] | None:
    """``--contract`` with ``--output-tensor`` added as ``output_tensor=...`` (its one meaning)."""
    if output_tensor is None:
        return contract
    return [*(contract or []), f"output_tensor={output_tensor}"]
