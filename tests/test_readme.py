"""README.md works as written: every ```python block and every command line of the ```bash blocks.

The README is parsed when the tests run, so the README as it stands is what is tested. Its lines
run in one sandbox folder holding the files they name (``readme_fixtures``); ``atrous ...`` runs
as ``python -m atrous ...`` with this checkout's sources. A line that cannot run here is in
``SKIP`` with its reason; a line that runs long is in ``SLOW`` (run with ``-m slow``) or
``SHORTENED`` (run with a tiny-data override appended); ``test_every_line_is_accounted_for``
fails on a README line none of them covers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from readme_fixtures import TINY_DEMO, build_sandbox

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# lines that cannot run here, with the reason
SKIP = {
    "make demo": "CI's own: sets up .venv and trains for ~9 minutes",
    "make test": "CI's own: sets up .venv and runs this very suite",
    "atrous train configs/voc.yaml --resume": "needs PASCAL VOC on disk and an interrupted run",
    "atrous train configs/voc.yaml train.finetune_output_stride=8 train.finetune_epochs=3": (
        "needs PASCAL VOC on disk and hours of training"
    ),
    "torchrun --nproc_per_node 2 -m atrous train configs/voc.yaml": (
        "needs PASCAL VOC on disk; DDP is tested in tests/train"
    ),
    "torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d "
    "--rdzv_endpoint node0:29500 -m atrous train configs/voc.yaml train.device=cuda": (
        "needs two machines with 8 GPUs each"
    ),
    "atrous predict deeplabv3_resnet50_tv photo.jpg --weights coco_with_voc_labels": (
        "downloads 168 MB from download.pytorch.org (no internet in tests); the same path runs "
        "against a local server in tests/weights/test_torchvision_weights.py"
    ),
    "atrous evaluate selfie.tflite data/ --contract preprocessing.mean=[0,0,0] "
    "--contract preprocessing.std=[1,1,1]": (
        "a foreign MediaPipe file atrous does not ship; --contract on evaluate is tested in "
        "tests/weights/test_convert_contract.py"
    ),
}

# training lines that would run for minutes: run with TINY_DEMO appended (the line must parse and
# the recipe train), writing under runs/
SHORTENED = {
    "atrous train demo train.epochs=20": "20 epochs of the demo: ~9 minutes",
    "atrous train demo train.max_minutes=5": "a 5-minute budget",
    "atrous train demo train.device=cpu train.amp=bf16": "the whole demo recipe",
    "atrous train demo --qat --from demo/best.pt": "QAT on the whole demo set",
}

# lines that run as written (or SHORTENED) but take long; run with -m slow (the default suite keeps
# one line of each kind: `quantize demo/best.pt --calib synthetic` for int8 calibration)
SLOW = {
    "atrous zoo": "measures every zoo model's multiply-adds at full size: minutes",
    "atrous benchmark demo/best.pt demo/best-fast-int8-s2.xml --sizes 257,513 --threads 1,2": (
        "times 2 models x 2 sizes x 2 thread counts (after the --fast export line): ~40 s"
    ),
    "atrous optimize demo/best.pt --data synthetic --latency-budget 40ms --report optimize.html": (
        "scores and times every candidate: ~40 s of CPU"
    ),
    "atrous prune model.pt --ratio 0.5 --data synthetic --finetune-steps 300": (
        "300 fine-tuning steps: ~50 s of CPU"
    ),
    "atrous export demo/best.pt --fast --calib synthetic": "NNCF calibration: ~15 s",
    "atrous quantize model.pt --calib synthetic": "the same as the demo/best.pt line",
    "atrous quantize model.pt --calib data/ --granularity per-tensor": "calibration: ~15 s",
    "atrous quantize model.pt --calib data/ --mixed auto --max-drop 0.5": (
        "a sensitivity sweep: one int8 model per layer group, ~35 s"
    ),
    "atrous quantize model.onnx --calib data/ --engine openvino --out model.int8.xml": (
        "NNCF calibration and OpenVINO compilation: ~20 s"
    ),
    "atrous quantize model.pt --calib data/ --engine litert": "two .tflite conversions: ~12 s",
    "atrous train demo --qat --from demo/best.pt": "QAT and an int8 export: ~15 s even shortened",
}

# lines that fail today for a known reason another change is fixing
XFAIL: dict[str, str] = {}

# the Python API's known failures (#24): the message in its error, and the reason
API_XFAIL = {
    "export it first": "#24: Segmenter.from_file(checkpoint, engine='onnxruntime') not supported",
    "need logits": "#24: evaluate(..., flip=True, refine=True) on a default ONNX export",
}


def fenced_blocks(language: str, text: str | None = None) -> list[str]:
    """The bodies of README's ```language fenced blocks, in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def block_lines(block: str) -> list[str]:
    """A bash block's command lines, each without its trailing ``# comment``."""
    lines = (re.sub(r"(^|\s+)#(\s.*)?$", "", line).strip() for line in block.splitlines())
    return [line for line in lines if line]


def command_lines() -> list[str]:
    """Every command line of every ```bash block."""
    return [line for block in fenced_blocks("bash") for line in block_lines(block)]


def _is_served(line: str) -> bool:
    return line.startswith(("atrous serve ", "curl "))


def _runnable() -> list:
    """pytest params of the ``atrous`` lines run by ``test_command``, marked slow / xfail."""
    params = []
    for line in command_lines():
        if line in SKIP or _is_served(line) or not line.startswith("atrous "):
            continue
        marks = [pytest.mark.slow] if line in SLOW else []
        if line in XFAIL:
            marks.append(pytest.mark.xfail(reason=XFAIL[line], strict=False))
        params.append(pytest.param(line, marks=marks, id=line[:70]))
    return params


def _serve_blocks() -> list:
    """(serve line, the curl lines after it in the same block) for every ``atrous serve``."""
    found = []
    for block in fenced_blocks("bash"):
        lines = block_lines(block)
        for i, line in enumerate(lines):
            if line.startswith("atrous serve "):
                curls = [c for c in lines[i + 1 :] if c.startswith("curl ")]
                found.append(pytest.param(line, curls, id=line))
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The folder the README's lines run in, holding every file they name."""
    return build_sandbox(tmp_path_factory.mktemp("readme"))


@pytest.fixture(scope="module")
def env(sandbox) -> dict[str, str]:
    """This checkout's sources first; engine-auto measurements cached inside the sandbox."""
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "ATROUS_CACHE": str(sandbox / ".engine-cache")}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 900):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])


def as_argv(line: str) -> list[str]:
    """``atrous ...`` as ``python -m atrous ...`` (this interpreter)."""
    tokens = shlex.split(line)
    assert tokens[0] == "atrous", line
    return [sys.executable, "-m", "atrous", *tokens[1:]]


def test_parser_reads_lines_and_strips_comments():
    text = "x\n```bash\natrous zoo   # list them\n\n# a comment line\ncurl a#b\n```\n"
    assert [block_lines(b) for b in fenced_blocks("bash", text)] == [["atrous zoo", "curl a#b"]]


def test_every_line_is_accounted_for():
    """Each README command line runs here (as written, shortened or served) or is in SKIP."""
    lines = command_lines()
    assert len(lines) >= 30 and fenced_blocks("python"), "README parsing found too little"
    unknown = [
        line
        for line in lines
        if line not in SKIP and not line.startswith("atrous ") and not _is_served(line)
    ]
    assert not unknown, f"README lines neither run nor in SKIP: {unknown}"
    tables = {**SKIP, **SHORTENED, **SLOW, **XFAIL}
    stale = [line for line in tables if line not in lines]
    assert not stale, f"SKIP/SHORTENED/SLOW/XFAIL entries no longer in README.md: {stale}"


def test_skipped_lines_name_files_that_exist():
    """The recipes the skipped lines train (configs/*.yaml) ship with the repository."""
    for line in SKIP:
        for name in re.findall(r"configs/\w+\.yaml", line):
            assert (REPO / name).is_file(), f"{line}: {name} does not exist"


@pytest.mark.parametrize("line", _runnable())
def test_command(line, sandbox, env):
    """An ``atrous`` line of the README exits 0 in the sandbox (shortened if in SHORTENED)."""
    argv = as_argv(line)
    if line in SHORTENED:
        argv += [*TINY_DEMO, "out_dir=runs/" + re.sub(r"\W+", "_", line)]
    proc = _run(argv, sandbox, env)
    assert proc.returncode == 0, f"{line}\nexit {proc.returncode}:\n{_tail(proc)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"server exited {server.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url}/healthz did not answer in {seconds:.0f} s")


@pytest.mark.parametrize(("serve", "curls"), _serve_blocks())
def test_serve_and_curl(serve, curls, sandbox, env):
    """``atrous serve`` starts (on a free port instead of 8000) and the curl lines after it work."""
    port = _free_port()
    argv = as_argv(serve.replace("--port 8000", f"--port {port}"))
    assert f"--port {port}" in " ".join(argv), "the serve line no longer says --port 8000"
    server = subprocess.Popen(argv, cwd=sandbox, env=env, stdout=subprocess.DEVNULL)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}", server)
        assert health, "empty /healthz"
        for curl in curls:
            argv = ["curl", "-sS", "--fail", *shlex.split(curl.replace(":8000", f":{port}"))[1:]]
            proc = _run(argv, sandbox, env, timeout=120)
            assert proc.returncode == 0, f"{curl}\nexit {proc.returncode}: {proc.stderr}"
            if "format=json" in curl:
                assert "classes" in json.loads(proc.stdout), proc.stdout[:200]
            if "-o " in curl:
                written = sandbox / shlex.split(curl)[-1]
                magic = b"\x89PNG" if written.suffix == ".png" else b"\xff\xd8"
                assert written.read_bytes().startswith(magic), curl
    finally:
        server.terminate()
        server.wait(30)


def test_python_api(sandbox, env):
    """The README's Python blocks run as written, one after the other, in the sandbox."""
    script = "\n".join(fenced_blocks("python"))
    proc = _run([sys.executable, "-c", script], sandbox, env)
    if proc.returncode != 0:
        for message, reason in API_XFAIL.items():
            if message in proc.stderr:
                pytest.xfail(reason)
    assert proc.returncode == 0, f"README Python API exit {proc.returncode}:\n{_tail(proc)}"
