"""Video and stream segmentation: overlay video shape, masks equal to frame-by-frame prediction,
the pipeline's ordering and error handling, and one-line errors for bad sources."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from atrous._pipeline import run_pipeline
from atrous.errors import InputError
from atrous.segmenter import Segmenter
from atrous.video import (
    _run_stages,
    is_video_source,
    segment_video,
    source_stem,
    stream_benchmark,
)

FRAMES, WIDTH, HEIGHT, FPS = 24, 160, 120, 10.0


def write_clip(path: Path, frames: int = FRAMES) -> Path:
    """A synthetic clip: a moving disc over noise stripes (so masks differ frame to frame)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[::6] = rng.integers(0, 256, frame[::6].shape, dtype=np.uint8)
        cv2.circle(frame, (15 + 5 * i, 60), 30, (40, 180, 250), -1)
        writer.write(frame)
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB, decoded in this process."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def segmenter(small_checkpoint) -> Segmenter:
    return Segmenter.from_file(small_checkpoint, threads=1)


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4")


def read_masks(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_overlay_video_keeps_frame_count_size_and_rate(segmenter, clip, tmp_path):
    summary = segment_video(segmenter, clip, tmp_path / "out", masks=True)
    video = tmp_path / "out" / "clip_overlay.mp4"
    assert summary.video == str(video) and summary.frames == FRAMES
    assert summary.size == (WIDTH, HEIGHT) and summary.fps == FPS
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        WIDTH,
        HEIGHT,
    )
    capture.release()
    back = decoded_frames(video)
    assert len(back) == FRAMES and back[0].shape == (HEIGHT, WIDTH, 3)
    saved = json.loads((tmp_path / "out" / "clip_summary.json").read_text())
    stages = ["decode_ms", "preprocess_ms", "network_ms", "postprocess_ms", "encode_ms"]
    assert saved["frames"] == FRAMES and list(saved["stage_ms"]) == stages
    assert min(saved["stage_ms"].values()) > 0 and saved["cpu_per_second"] > 0
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries left


def test_masks_equal_frame_by_frame_prediction(segmenter, clip, tmp_path):
    segment_video(segmenter, clip, tmp_path / "pipe", masks=True, overlay=False)
    segment_video(segmenter, clip, tmp_path / "seq", masks=True, overlay=False, pipelined=False)
    piped, sequential = (
        read_masks(tmp_path / "pipe" / "clip_masks"),
        read_masks(tmp_path / "seq" / "clip_masks"),
    )
    expected = [segmenter.predict(frame).mask for frame in decoded_frames(clip)]
    assert len(piped) == len(sequential) == len(expected) == FRAMES
    for got, seq, want in zip(piped, sequential, expected, strict=True):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(seq, want)
    assert len({m.tobytes() for m in expected}) > 1  # the frames differ: order is tested
    assert not (tmp_path / "pipe" / "clip_overlay.mp4").exists()


def test_max_frames_bounds_a_source(segmenter, clip, tmp_path):
    summary = segment_video(segmenter, clip, tmp_path, max_frames=5)
    assert summary.frames == 5 and len(decoded_frames(tmp_path / "clip_overlay.mp4")) == 5


def test_pipeline_keeps_order_and_overlaps_stages():
    active, peak, lock = [0], [0], threading.Lock()

    def stage(value):  # sleeps release the GIL, as the engine's run does
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(random.uniform(0, 0.004))
        with lock:
            active[0] -= 1
        return value

    seen: list[int] = []
    run_pipeline(iter(range(50)), stage, lambda v: seen.append(stage(v)), depth=2)
    assert seen == list(range(50))
    assert peak[0] >= 2  # two stages ran at the same time


def test_pipeline_error_stops_every_stage():
    def infer(value):
        if value == 7:
            raise ValueError("bad frame 7")
        return value

    seen: list[int] = []
    before = threading.active_count()
    with pytest.raises(ValueError, match="bad frame 7"):
        run_pipeline(iter(range(10_000)), infer, seen.append, depth=2)
    assert seen == list(range(len(seen))) and len(seen) <= 7  # in order, none past the error
    assert threading.active_count() == before  # no stage thread left blocked on a queue


def test_failure_mid_video_leaves_no_partial_output(segmenter, clip, tmp_path, monkeypatch):
    calls = [0]
    real = segmenter.engine.run

    def failing(batch):
        calls[0] += 1
        if calls[0] == 10:
            raise RuntimeError("engine died")
        return real(batch)

    monkeypatch.setattr(segmenter.engine, "run", failing)
    with pytest.raises(RuntimeError, match="engine died"):
        segment_video(segmenter, clip, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no video, no temporary, no summary


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.mp4", "missing.mp4: file not found"),
        ("text.mp4", "text.mp4: cannot open as a video"),
        ("empty.mp4", "empty.mp4: cannot open as a video"),
        ("rtsp://127.0.0.1:9/none", "rtsp://127.0.0.1:9/none: cannot open as a stream"),
    ],
)
def test_bad_source_is_one_line_naming_it(segmenter, tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    Path("text.mp4").write_text("not a video")
    cv2.VideoWriter("empty.mp4", cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT)).release()
    with pytest.raises(InputError) as info:
        segment_video(segmenter, source, tmp_path / "out")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_zero_frames_is_an_input_error(segmenter, clip, tmp_path):
    with pytest.raises(InputError, match=r"clip.mp4: no frames could be decoded"):
        segment_video(segmenter, clip, tmp_path / "out", max_frames=0)
    assert not list((tmp_path / "out").iterdir())


def test_stream_benchmark_reports_both_loops(segmenter, clip):
    result = stream_benchmark(segmenter, clip, repeats=1, max_frames=8)
    assert result.frames == 8 and result.size == (WIDTH, HEIGHT)
    assert len(result.sequential_fps) == len(result.pipelined_fps) == len(result.ratios) == 1
    assert min(result.sequential_fps + result.pipelined_fps) > 0
    assert result.ratio == pytest.approx(result.pipelined_fps[0] / result.sequential_fps[0])


def test_source_kinds_and_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_video_source("clip.MP4") and is_video_source("rtsp://cam/stream")
    assert is_video_source("0") and not is_video_source("photo.jpg")
    Path("0").write_bytes(b"")  # a file named 0 is a file, not camera 0
    assert not is_video_source("0")
    assert source_stem(0) == "camera0" and source_stem("http://h/live/cam1.m3u8?t=1") == "cam1"
    assert source_stem("a/b/clip.mp4") == "clip"


def test_cli_predict_video_and_benchmark_stream(small_checkpoint, clip, tmp_path):
    from typer.testing import CliRunner

    from atrous.cli import app

    out = tmp_path / "o"
    args = ["predict", str(small_checkpoint), str(clip), "--out", str(out), "--frame-masks"]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"{clip}: {FRAMES} frames at 10 fps" in " ".join(result.output.split())
    assert len(decoded_frames(out / "clip_overlay.mp4")) == FRAMES
    assert len(list((out / "clip_masks").glob("*.png"))) == FRAMES
    mixed = CliRunner().invoke(app, ["predict", str(small_checkpoint), str(clip), "x.png"])
    assert isinstance(mixed.exception, InputError)
    assert str(mixed.exception).startswith("x.png: not a video")
    bench = ["benchmark", str(small_checkpoint), "--stream", str(clip), "--threads", "1"]
    result = CliRunner().invoke(app, bench)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"stream {clip} (3 interleaved pairs)" in text


def test_video_overlay_matches_the_image_overlay(rng):
    from atrous.data.palettes import palette_array
    from atrous.video import overlay_bgr
    from atrous.visualize import overlay

    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (30, 40), dtype=np.uint8)
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    luts = [np.ascontiguousarray(palette_array(palette)[:, c]) for c in (2, 1, 0)]
    got = overlay_bgr(image, mask, luts, 0.4)[..., ::-1].astype(int)
    want = overlay(image, mask, palette, 0.4).astype(int)
    assert np.abs(got - want).max() <= 1  # rounding only
    np.testing.assert_array_equal(got[mask == 0], image[mask == 0])


def test_ctrl_c_ends_a_live_source_but_not_a_file():
    def interrupt_at_three(item: int) -> None:
        if item == 3:
            raise KeyboardInterrupt

    for pipelined in (True, False):
        _run_stages(iter(range(10)), lambda v: v, interrupt_at_three, pipelined, 2, live=True)
        with pytest.raises(KeyboardInterrupt):
            _run_stages(iter(range(10)), lambda v: v, interrupt_at_three, pipelined, 2, live=False)
