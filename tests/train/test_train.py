"""Training: config errors, losses, schedule, resume, backbone init, DDP, train -> evaluate."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from atrous.config import ExperimentConfig, load_experiment, parse_config
from atrous.errors import ConfigError
from atrous.train import train
from atrous.train.losses import SegmentationLoss, lovasz_softmax, ohem_cross_entropy
from atrous.train.schedules import PolyWarmup

TINY = {
    "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": 48},
    "data": {
        "kind": "synthetic",
        "image_size": 48,
        "crop_size": 48,
        "train_size": 16,
        "val_size": 4,
    },
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "optimizer": "sgd",
        "lr": 0.02,
        "warmup_iters": 1,
        "threads": 2,
        "tensorboard": False,
        "fast_graph": "none",
    },
}


def _write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=0.1"], "exp.yaml: unknown key 'train.lrr'"),
        (["train.epochs=many"], "exp.yaml: key 'train.epochs': Input should be a valid integer"),
        (["data.kind=coco"], "exp.yaml: key 'data.kind': Input should be 'voc'"),
        (["data.kind=voc"], "exp.yaml: key 'data': data kind 'voc' needs a root folder"),
        (["train.loss_stride=2"], "exp.yaml: key 'train': loss_stride must be odd (1, 3, 5 ...)"),
        (["train.loss_stride=5"], "exp.yaml: train.loss_stride 5 must divide data.crop_size"),
    ],
)
def test_config_errors_are_one_line_naming_key_and_file(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, TINY), overrides)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(tmp_path)) and message in text, text


def test_bad_model_override_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml: key 'model': overrides: key 'output_stride'"):
        load_experiment(_write(tmp_path, TINY), ["model.overrides.output_stride=12"])


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    path = _write(tmp_path, TINY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "train", str(path), "train.batchsize=4"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'train.batchsize'" in lines[0], proc.stderr


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[2] / "src" / "atrous" / "configs"
    for path in sorted(root.glob("*.yaml")):
        config = load_experiment(path)
        assert isinstance(config, ExperimentConfig), path


def test_cross_entropy_ignores_255_and_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    target[0, 0] = 255
    loss = SegmentationLoss(class_weights=[1.0, 2.0, 0.5])(logits, target)
    valid = target != 255
    logp = F.log_softmax(logits, 1).permute(0, 2, 3, 1)[valid]
    t = target[valid]
    w = torch.tensor([1.0, 2.0, 0.5])[t]
    expected = -(w * logp[torch.arange(len(t)), t]).sum() / w.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out = {"out": logits, "aux": logits * 2}
    both = SegmentationLoss(aux_weight=0.5)(out, target)
    ref = F.cross_entropy(logits, target, ignore_index=255)
    ref = ref + 0.5 * F.cross_entropy(logits * 2, target, ignore_index=255)
    assert both.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ohem_keeps_only_hard_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 8, 8) * 3
    target = torch.randint(0, 4, (1, 8, 8))
    pixel = F.cross_entropy(logits, target, reduction="none").reshape(-1)
    prob = torch.exp(-pixel)
    loss = ohem_cross_entropy(logits, target, thresh=0.5, min_kept=1)
    assert loss.item() == pytest.approx(pixel[prob < 0.5].mean().item(), rel=1e-5)
    top = ohem_cross_entropy(logits, target, thresh=1e-9, min_kept=10)  # none below: 10 hardest
    assert top.item() == pytest.approx(pixel.sort(descending=True).values[:10].mean().item())


def test_lovasz_on_hard_predictions_is_one_minus_iou_of_present_classes():
    from torchmetrics.functional.classification import multiclass_jaccard_index

    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 9, 9))
    target[target == 3] = 1  # class 3 absent from the labels: not averaged
    target[0, :2] = 255
    pred = torch.randint(0, 4, (2, 9, 9))
    logits = F.one_hot(pred, 4).permute(0, 3, 1, 2).float() * 100.0  # probabilities 0/1
    iou = multiclass_jaccard_index(pred, target, 4, average="none", ignore_index=255)
    present = torch.tensor([0, 1, 2])
    expected = (1 - iou[present]).mean()
    assert lovasz_softmax(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)


def test_lovasz_on_soft_predictions_is_the_choquet_integral_of_the_jaccard_loss():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 5, 6, requires_grad=True)
    target = torch.randint(0, 3, (1, 5, 6))
    probs = logits.detach().softmax(1)[0].reshape(3, -1)
    labels = target.reshape(-1)
    expected = 0.0
    for c in range(3):  # integral over t of |M_t| / |y u M_t|, M_t = {errors > t}
        truth = labels == c
        errors = (truth.float() - probs[c]).abs()
        levels = sorted(set(errors.tolist()) | {0.0})
        for low, high in itertools.pairwise(levels):
            wrong = errors > low
            expected += (high - low) * wrong.sum().item() / (truth | wrong).sum().item() / 3
    loss = lovasz_softmax(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad.abs().sum() > 0
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100.0
    assert lovasz_softmax(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_lovasz_weight_adds_the_term_on_a_pixel_sample():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 16, 16)
    target = torch.randint(0, 3, (2, 16, 16))
    loss = SegmentationLoss(lovasz_weight=0.5)(logits, target)
    sample = lovasz_softmax(logits[..., 1::4, 1::4], target[..., 1::4, 1::4])
    expected = F.cross_entropy(logits, target) + 0.5 * sample
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_stride_scores_exactly_the_full_size_loss_on_every_sth_pixel():
    from atrous.models.zoo import get_model
    from atrous.train.loop import strided_labels, train_one_epoch

    target = torch.arange(12 * 9).reshape(1, 12, 9) % 7
    picked = strided_labels(target, 3)
    assert picked.shape == (1, 4, 3)
    assert picked[0, 2, 1].item() == target[0, 7, 4].item()  # rows 1, 4, 7, 10; columns 1, 4, 7
    assert strided_labels(target, 1).shape == target.shape
    torch.manual_seed(0)
    model = get_model("deeplabv3_mnv2_dm05_os16", num_classes=3).eval()
    x = torch.randn(2, 3, 48, 48)
    full = model(x)
    torch.testing.assert_close(model(x, output_size=(48, 48)), full)
    for stride in (3, 5):  # 48 = 16 x 3; for 5, a 45 px crop
        crop = x[..., : 48 - 48 % stride, : 48 - 48 % stride]
        size = crop.shape[-1] // stride
        sampled = model(crop, output_size=(size, size))
        torch.testing.assert_close(sampled, strided_labels(model(crop), stride))
    seen = []

    def criterion(output, labels):
        seen.append((tuple(output.shape), tuple(labels.shape)))
        return F.cross_entropy(output, labels)

    loader = [(x, torch.randint(0, 3, (2, 48, 48)))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    train_one_epoch(model, loader, criterion, optimizer, scheduler, loss_stride=3)
    train_one_epoch(model, loader, criterion, optimizer, scheduler)
    assert seen == [((2, 3, 16, 16), (2, 16, 16)), ((2, 3, 48, 48), (2, 48, 48))]


def test_poly_warmup_schedule():
    f = PolyWarmup(total_iters=100, power=0.9, warmup_iters=10)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5**0.9)
    assert f(100) == 0.0


def test_resume_matches_uninterrupted_run(tmp_path):
    config = parse_config(ExperimentConfig, TINY)
    full = train(config, tmp_path / "full", progress=False)
    assert full.epochs_run == 2 and not full.interrupted

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cut = train(config, tmp_path / "cut", progress=False, on_epoch_end=stop_after_first)
    assert cut.interrupted and (tmp_path / "cut" / "interrupted.pt").is_file()
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)
    assert resumed.epochs_run == 2
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert _states_equal(a["state_dict"], b["state_dict"])
    assert (
        a["train_state"]["history"][1]["train_loss"] == b["train_state"]["history"][1]["train_loss"]
    )
    assert [h["val_miou"] for h in full.history] == [h["val_miou"] for h in resumed.history]
    rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,train_loss,lr")


def test_time_budget_shortens_run_and_schedule(tmp_path):
    data = {**TINY, "train": {**TINY["train"], "epochs": 5, "val_every": 5, "max_minutes": 1e-4}}
    config = parse_config(ExperimentConfig, data)
    result = train(config, tmp_path / "run", progress=False)
    assert result.epochs_run == 1 and not result.interrupted
    assert result.history[0]["planned_epochs"] == 1
    assert "val_miou" in result.history[0]  # the last epoch is validated: best.pt exists
    assert result.best_checkpoint is not None
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["train_state"]
    # the poly horizon moved to the end of the shortened run (2 iterations of batch 8)
    assert state["scheduler"]["lr_lambdas"][0]["total_iters"] == 2
    # a resume trains on (the run stopped short of train.epochs): the plan is re-planned towards
    # train.epochs and this call's own budget (the same 1e-4 min) stops it one epoch later
    resumed = train(config, tmp_path / "run", resume=True, progress=False)
    assert state["epoch"] == 1 and resumed.epochs_run == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2]


# ~45 s: DDP is covered in the default suite by test_ddp_two_ranks_end_with_identical_weights
@pytest.mark.slow
def test_train_spawns_local_processes_that_agree_on_a_budget(tmp_path):
    train_cfg = {**TINY["train"], "epochs": 3, "max_minutes": 1e-4, "processes": 2}
    config = parse_config(ExperimentConfig, {**TINY, "train": train_cfg})
    result = train(config, tmp_path / "run", progress=False)
    # both ranks stopped after one epoch (rank 0's plan is broadcast; a disagreement hangs)
    assert result.epochs_run == 1 and len(result.history) == 1
    assert result.best_checkpoint is not None and result.model is not None
    assert result.history[0]["images_per_second"] > 0


def test_train_then_evaluate_end_to_end(tmp_path):
    from atrous.data import build_dataset
    from atrous.evaluate import evaluate
    from atrous.segmenter import Segmenter

    config = parse_config(ExperimentConfig, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    result = train(config, tmp_path / "run", progress=False)
    assert result.best_checkpoint is not None and result.best_epoch == 1
    segmenter = Segmenter.from_file(result.best_checkpoint, threads=2)
    assert segmenter.card.classes[1] == "circle" and segmenter.card.metrics["protocol"] == "dataset"
    evaluation = evaluate(segmenter, build_dataset(config.data, "val"), progress=False)
    assert evaluation.miou == pytest.approx(result.best_miou, abs=1e-6)
    assert segmenter.card.metrics["miou"] == pytest.approx(result.best_miou, abs=1e-6)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    config_path = _write(tmp_path, {**TINY, "out_dir": str(tmp_path / "run")})
    proc = subprocess.run(
        [sys.executable, "-m", "atrous", "evaluate", str(result.best_checkpoint), str(config_path),
         "--json", "--threads", "2"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["protocol"] == "dataset" and data["miou"] == pytest.approx(
        evaluation.miou, abs=1e-6
    )


def test_backbone_init_from_torchvision_style_state_dict(tmp_path):
    from atrous.models.zoo import get_model
    from atrous.train.pretrained import load_backbone_weights

    source = get_model("deeplabv3_mnv2_os16", num_classes=3)
    imagenet = {k.removeprefix("backbone."): v for k, v in source.state_dict().items()}
    imagenet = {k: v for k, v in imagenet.items() if k.startswith("features.")}
    imagenet["classifier.1.weight"] = torch.zeros(1000, 1280)  # torchvision's ImageNet head
    imagenet["features.18.0.weight"] = torch.zeros(1280, 320, 1, 1)  # dropped 1280-ch conv
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(imagenet, path)
    target = get_model("deeplabv3_mnv2_os16", num_classes=5)
    report = load_backbone_weights(target, path)
    assert len(report.mapped) == len(imagenet) - 2 and not report.missing
    assert {k for k, _ in report.unmapped} == {"classifier.1.weight", "features.18.0.weight"}
    for key in report.mapped:
        assert torch.equal(target.state_dict()[f"backbone.{key}"], imagenet[key])
    assert "mapped" in report.summary()


def _torchrun(tmp_path, config: dict, nproc: int = 2) -> subprocess.CompletedProcess:
    path = _write(tmp_path, config, "ddp.yaml")
    worker = Path(__file__).with_name("_ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", str(worker), str(path), str(tmp_path / "out")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _ddp_config(epochs: int, train_size: int) -> dict:
    train_cfg = {**TINY["train"], "epochs": epochs, "batch_size": 4, "threads": 1}
    data = {**TINY["data"], "train_size": train_size, "image_size": 32, "crop_size": 32}
    return {**TINY, "data": data, "train": train_cfg}


def _check_ranks_agree(tmp_path) -> None:
    r0 = torch.load(tmp_path / "out" / "rank0.pt")
    r1 = torch.load(tmp_path / "out" / "rank1.pt")
    assert _states_equal(r0, r1)
    start = torch.load(tmp_path / "out" / "last.pt", weights_only=False)["state_dict"]
    assert _states_equal(start, r0)  # rank 0 wrote the checkpoint of the shared weights


def test_ddp_two_ranks_end_with_identical_weights(tmp_path):
    proc = _torchrun(tmp_path, _ddp_config(epochs=1, train_size=16))  # 2 steps per rank
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_ranks_agree(tmp_path)
    # only rank 0 names a checkpoint (what `atrous train` prints from); rank 1 has its scores,
    # not "best val mIoU -1.0000 (epoch -1)"
    r0, r1 = (json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["rank"] == 0 and r0["best_checkpoint"] == str(tmp_path / "out" / "best.pt")
    assert r1["rank"] == 1 and r1["best_checkpoint"] is None
    assert r0["best_epoch"] == r1["best_epoch"] == 1
    assert r1["best_miou"] == r0["best_miou"] >= 0.0


@pytest.mark.slow
def test_ddp_cli_reports_the_best_score_once(tmp_path):
    path = _write(tmp_path, _ddp_config(epochs=1, train_size=16), "ddp.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "atrous", "train", str(path), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "best val mIoU" in line]
    assert len(lines) == 1 and "-1.0000" not in lines[0], proc.stdout


@pytest.mark.slow
def test_ddp_longer_run_matches_across_ranks(tmp_path):
    proc = _torchrun(tmp_path, _ddp_config(epochs=3, train_size=64))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_ranks_agree(tmp_path)
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]


def test_shipped_recipe_name_wins_over_an_output_folder(tmp_path, monkeypatch):
    from atrous.cli.train import _config_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # what `make demo` leaves behind
    assert _config_path("demo").name == "demo.yaml" and _config_path("demo").is_file()


def test_finetune_output_stride_switches_for_the_last_epochs(tmp_path):
    """Train at 16, the last epoch at 8 (DeepLabV3's recipe): the switch happens once, at the
    planned epoch, and the checkpoints (and the model they rebuild) carry output stride 8."""
    from atrous.checkpoint import load_checkpoint

    train_cfg = {**TINY["train"], "epochs": 3, "finetune_output_stride": 8, "finetune_epochs": 1}
    config = parse_config(ExperimentConfig, {**TINY, "train": train_cfg})
    result = train(config, tmp_path / "run", progress=False)
    assert [row["output_stride"] for row in result.history] == [16, 16, 8]
    net, card = load_checkpoint(tmp_path / "run" / "last.pt")
    assert card.model.output_stride == 8 and net.config.output_stride == 8
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["state_dict"]
    assert _states_equal(state, net.state_dict())
    # the rebuilt model is the trained one at 8: the same outputs as the model that trained
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), result.model.eval()(x))
