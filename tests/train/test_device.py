"""train.device / train.amp: resolution, refusals, autocast in the loop and in validation,
CPU checkpoints, resume onto the device. Everything runs on CPU (bf16); CUDA paths skip here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from atrous.checkpoint import load_checkpoint, read_checkpoint
from atrous.config import ExperimentConfig, load_experiment, parse_config
from atrous.data import build_dataset
from atrous.errors import ConfigError
from atrous.evaluate import evaluate
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.train import build_run, train, train_one_epoch
from atrous.train.device import (
    Placement,
    loader_settings,
    move_optimizer_state,
    resolve_device,
    resolve_placement,
    to_device,
)
from atrous.train.distributed import DistInfo, backend_for
from atrous.train.resume import restore, to_cpu
from atrous.train.validation import DeviceEngine

NO_CUDA = "needs a CUDA GPU (none visible to this process)"
ACCELERATOR = torch.cuda.is_available() or torch.backends.mps.is_available()


def _config(**train: object) -> ExperimentConfig:
    """8 synthetic 64 px scenes, one step of 8 per epoch."""
    data = {
        "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 64},
        "data": {
            "kind": "synthetic",
            "image_size": 64,
            "crop_size": 64,
            "train_size": 8,
            "val_size": 2,
        },
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "lr": 0.02,
            "threads": 2,
            "tensorboard": False,
            "fast_graph": "none",
            **train,
        },
    }
    return parse_config(ExperimentConfig, data)


# --- config and resolution ---------------------------------------------------------------


def test_amp_off_reads_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_config().model_dump(mode="json")) + "")
    raw = yaml.safe_load(path.read_text())
    raw["train"]["amp"] = False  # what a bare `amp: off` parses to
    path.write_text(yaml.safe_dump(raw))
    assert load_experiment(path).train.amp == "off"
    assert load_experiment(path, ["train.amp=off"]).train.amp == "off"
    assert load_experiment(path, ["train.amp=bf16", "train.device=cpu"]).train.amp == "bf16"
    assert load_experiment(path, ["train.device=cuda:3"]).train.device == "cuda:3"
    defaults = load_experiment(path)
    assert (defaults.train.device, defaults.train.channels_last) == ("auto", True)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"amp": "fp16", "device": "cpu"}, "amp fp16 needs a GPU (cuda, mps); on device cpu use"),
        (
            {"device": "gpu"},
            "key 'train.device': must be auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        ),
        ({"device": "cuda:x"}, "must be auto, cpu, cuda, cuda:N or mps"),
        ({"amp": "fp32"}, "key 'train.amp': Input should be 'off', 'bf16' or 'fp16'"),
    ],
)
def test_bad_device_or_amp_is_one_config_line(train, message):
    with pytest.raises(ConfigError) as info:
        _config(**train)
    assert "\n" not in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.skipif(ACCELERATOR, reason="an accelerator is present: auto picks it")
def test_auto_resolves_to_cpu_without_accelerator():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_placement("auto", "bf16") == Placement(torch.device("cpu"), "bf16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_one_line(name):
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"train.device={name}: no CUDA GPU is visible to this process")
    assert "use train.device=cpu or train.device=auto" in text


@pytest.mark.skipif(ACCELERATOR, reason="an accelerator is present: auto picks it")
def test_fp16_on_auto_resolving_to_cpu_is_refused():
    with pytest.raises(ConfigError, match=r"^train.amp=fp16 on auto \(cpu\): fp16 autocast needs"):
        resolve_placement("auto", "fp16")


def test_cuda_names_map_to_each_rank_gpu(monkeypatch):
    """The CUDA branches of the resolver, on a machine faking two GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=2) == torch.device("cuda", 0)
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"train.device=cuda:2: this process sees 2 CUDA GPU"):
        resolve_device("cuda:2")
    assert backend_for(torch.device("cuda", 1)) == "nccl"
    assert backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cli_refuses_cuda_without_gpu_in_one_line_exit_2(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_config().model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "train", str(path), "train.device=cuda", "--out",
         str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.device=cuda: no CUDA GPU is visible" in lines[0], lines
    assert not (tmp_path / "run").exists()


# --- the pieces the loop uses --------------------------------------------------------------


def test_loader_settings_follow_the_device():
    cpu, gpu = Placement(), Placement(torch.device("cuda", 0), "fp16")
    assert loader_settings(cpu, 0, False, cores=2) == (0, False)
    assert loader_settings(cpu, 3, True, cores=2) == (3, False)
    assert loader_settings(gpu, 0, False, cores=32) == (8, True)  # default: one per core, <= 8
    assert loader_settings(gpu, 0, False, cores=3) == (3, True)
    assert loader_settings(gpu, 0, True, cores=32) == (0, True)  # an explicit data.workers wins


def test_to_device_keeps_values_and_makes_channels_last():
    batch, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    moved, labels = to_device(batch, target, Placement(), channels_last=True)
    assert moved.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved, batch) and labels is target


def test_scaler_only_for_fp16_and_autocast_only_with_amp():
    assert not Placement(torch.device("cpu"), "bf16").grad_scaler().is_enabled()
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with Placement(torch.device("cpu"), "bf16").autocast():
        assert conv(x).dtype == torch.bfloat16
    with Placement().autocast():
        assert conv(x).dtype == torch.float32


def test_move_optimizer_state_follows_the_parameters():
    """A resumed state (CPU tensors, as checkpoints hold) lands on each parameter's device."""
    param = nn.Parameter(torch.empty(3, device="meta"))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    optimizer.state[param] = {"momentum_buffer": torch.zeros(3), "step": torch.tensor(4.0)}
    move_optimizer_state(optimizer)
    assert {v.device.type for v in optimizer.state[param].values()} == {"meta"}


def test_to_cpu_copies_nested_tensors_and_keeps_the_rest():
    state = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": "x", "c": {"d": torch.ones(1)}}
    moved = to_cpu(state)
    assert moved["b"] == "x" and moved["a"][1][1] == 3 and isinstance(moved["a"][1], tuple)
    assert torch.equal(moved["a"][0], torch.ones(2)) and moved["c"]["d"].device.type == "cpu"


def test_bf16_step_computes_the_loss_in_float32():
    """Under bf16 autocast the network's logits are bf16; the criterion sees float32."""
    run, _ = build_run(_config(amp="bf16", device="cpu"), Path("unused"), DistInfo())
    seen: dict[str, torch.dtype] = {}
    run.net.classifier.register_forward_hook(lambda m, i, o: seen.__setitem__("logits", o.dtype))

    def criterion(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen["loss_input"] = output.dtype
        return run.criterion(output, target)

    before = [p.detach().clone() for p in run.net.parameters()]
    stats = train_one_epoch(
        run.model, run.loader, criterion, run.optimizer, run.scheduler,
        channels_last=True, placement=run.placement, scaler=run.scaler,
    )  # fmt: skip
    assert seen == {"logits": torch.bfloat16, "loss_input": torch.float32}
    assert np.isfinite(stats.loss) and stats.images == 8
    assert all(p.dtype == torch.float32 for p in run.net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, run.net.parameters(), strict=True))


def test_validation_engine_runs_under_autocast_and_returns_float32():
    run, _ = build_run(_config(amp="bf16", device="cpu"), Path("unused"), DistInfo())
    net = run.net.eval()
    batch = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    seen = []
    hook = net.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    low = DeviceEngine(net, run.placement, threads=2).run(batch)
    full = DeviceEngine(net, Placement(), threads=2).run(batch)
    hook.remove()
    assert seen == [torch.bfloat16, torch.float32]
    assert low.dtype == np.float32 and low.shape == full.shape == (1, 5, 64, 64)
    assert np.abs(low - full).max() <= 0.05 * np.abs(full).max() + 1e-3


# --- whole runs ----------------------------------------------------------------------------


def test_bf16_run_trains_saves_float32_cpu_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    result = train(_config(amp="bf16", device="cpu"), out, progress=False)
    assert result.epochs_run == 1 and np.isfinite(result.history[0]["train_loss"])
    assert 0.0 <= result.best_miou <= 1.0
    data = read_checkpoint(out / "last.pt")
    tensors = [t for t in data["state_dict"].values() if t.is_floating_point()]
    assert tensors and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
    momenta = [v for s in data["train_state"]["optimizer"]["state"].values() for v in s.values()]
    assert momenta and all(v.device.type == "cpu" for v in momenta)
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (saved["device"], saved["amp"]) == ("cpu", "bf16")

    # the bf16-trained checkpoint evaluates in float32 on the plain eager engine
    model, card = load_checkpoint(out / "best.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    val = build_dataset(_config().data, "val")
    scored = evaluate(Segmenter(TorchEngine(model, threads=2), card), val, progress=False)
    assert 0.0 <= scored.miou <= 1.0 and np.asarray(scored.confusion).sum() == 2 * 64 * 64

    # resume onto the device: optimizer state on the parameters' device, one more epoch trained
    again = _config(amp="bf16", device="cpu", epochs=2)
    run, _ = build_run(again, out, DistInfo(), resume=True)
    restore(run, out / "last.pt")
    params = {p: p.device for g in run.optimizer.param_groups for p in g["params"]}
    for param, state in run.optimizer.state.items():
        assert all(v.device == params[param] for v in state.values() if torch.is_tensor(v))
    resumed = train(again, out, resume=True, progress=False)
    assert resumed.epochs_run == 2 and [h["epoch"] for h in resumed.history] == [1, 2]


# ~45 s: DDP is covered in the default suite by test_ddp_two_ranks_end_with_identical_weights
@pytest.mark.slow
def test_two_local_processes_train_with_bf16(tmp_path):
    result = train(_config(amp="bf16", device="cpu", processes=2, batch_size=4, threads=1),
                   tmp_path / "ddp", progress=False)  # fmt: skip
    assert result.epochs_run == 1 and result.last_checkpoint is not None
    state = read_checkpoint(result.last_checkpoint)["state_dict"]
    assert all(t.device.type == "cpu" for t in state.values())


# --- CUDA only: written to run unchanged on a GPU machine ----------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("amp", ["fp16", "bf16", "off"])
def test_cuda_run_saves_cpu_checkpoints_that_load_anywhere(tmp_path, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    out = tmp_path / amp
    result = train(_config(amp=amp, device="cuda"), out, progress=False)
    assert np.isfinite(result.history[0]["train_loss"])
    assert next(result.model.parameters()).device.type == "cuda"
    data = read_checkpoint(out / "last.pt")
    assert all(t.device.type == "cpu" for t in data["state_dict"].values())
    assert all(
        t.dtype == torch.float32 for t in data["state_dict"].values() if t.is_floating_point()
    )
    run, _ = build_run(_config(amp=amp, device="cuda", epochs=2), out, DistInfo(), resume=True)
    assert run.loader.pin_memory and run.loader.num_workers >= 1
    restore(run, out / "last.pt")
    for state in run.optimizer.state.values():
        assert all(v.device.type == "cuda" for v in state.values() if torch.is_tensor(v))
    model, _ = load_checkpoint(out / "best.pt")
    assert next(model.parameters()).device.type == "cpu"
