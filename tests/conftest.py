"""Shared fixtures: small images on disk and a tiny trained-free checkpoint."""

from __future__ import annotations

import os

import atrous  # noqa: F401  (before torch: it picks OpenMP's wait policy from the machine's load)

# Under pytest-xdist (`make test`: -n 2) each of the two workers gets one core; alone, both.
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """A session-wide $ATROUS_CACHE in a temporary folder: tests (and the CLI processes they
    start) never read or write the user's cache, and share what they build in one session."""
    previous = os.environ.get("ATROUS_CACHE")
    os.environ["ATROUS_CACHE"] = str(tmp_path_factory.mktemp("atrous-cache"))
    yield
    if previous is None:
        os.environ.pop("ATROUS_CACHE", None)
    else:
        os.environ["ATROUS_CACHE"] = previous


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A dm0.5 checkpoint with 5 classes and random weights, with its card."""
    from atrous.checkpoint import save_checkpoint
    from atrous.models.zoo import default_card, get_model

    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval()
    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    path = save_checkpoint(tmp_path / "tiny.pt", model, card)
    return path, model, card


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory):
    """A 5-class dm0.5 checkpoint with a 64-pixel input (fast to serve) predicting several classes.

    Built once per session; treat it as read-only.
    """
    from atrous.checkpoint import save_checkpoint
    from atrous.export.parity import diversify
    from atrous.models.zoo import default_card, get_model

    card = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": 64})}
    )
    model = diversify(get_model("deeplabv3_mnv2_dm05_os16", num_classes=5).eval(), card)
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "small.pt", model, card)


@pytest.fixture
def live_server():
    """Start an ASGI app with uvicorn on a free loopback port; yields a function app -> URL."""
    import socket
    import threading
    import time

    import uvicorn

    servers = []

    def start(app) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=256)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        servers.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def private_engine_cache(tmp_path, monkeypatch):
    """Engine-auto measurements go to a temporary cache ($ATROUS_CACHE), never the user's."""
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "engine-cache"))
    return tmp_path / "engine-cache"
