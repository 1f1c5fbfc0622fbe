"""TF DeepLab zoo .tflite files -> atrous checkpoints (atrous.models.foreign.tflite).

Two independent writers make the files: atrous's own TFLite exporter (ONNX -> TFLite, float and
full-integer int8) and ``tf_style_tflite`` (TF's layout written by hand: SAME padding, TF names,
full-window AVERAGE_POOL_2D, concat with the image pooling first, align-corners resizes). LiteRT
runs each file; the converted checkpoint runs in torch; masks and logits are compared, and the
converted model is compared with the model the file was written from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (the [tflite] extra) is missing")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from tf_style_tflite import write_tf_style, write_unrelated  # noqa: E402

from atrous.checkpoint import load_checkpoint  # noqa: E402
from atrous.cli import app  # noqa: E402
from atrous.config import ModelConfig  # noqa: E402
from atrous.errors import ModelError  # noqa: E402
from atrous.export.tflite import export_tflite  # noqa: E402
from atrous.inspection import inspect_model  # noqa: E402
from atrous.models.deeplab import DeepLab  # noqa: E402
from atrous.models.foreign.tflite import from_tflite  # noqa: E402
from atrous.models.zoo import default_card  # noqa: E402

SIZE = 129  # odd at every stride-2 input: TF's SAME padding is symmetric
# int8 masks, LiteRT vs the converted checkpoint: measured 0.908 (4 images, 129 px, 5 classes,
# random weights whose median top-2 logit margin is ~0.3 of the logits' spread, so activation
# quantization flips many pixels; the weights themselves are checked to 0.5 LSB below)
INT8_FLOOR = 0.88


def _randomise_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so folding them is tested."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
    return model.eval()


def _spread_classes(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """Centre the logits on the features' mean, so that masks hold several classes: a random
    network otherwise predicts one class everywhere and any importer would agree with it."""
    seen = {}
    hook = model.classifier.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    _torch(model, _images(2, size, seed=11))
    hook.remove()
    with torch.no_grad():
        weight = model.classifier.weight[:, :, 0, 0]
        model.classifier.bias.copy_(-weight @ seen["x"].mean((0, 2, 3)))
    return model


def _classes_present(logits: np.ndarray) -> int:
    """Classes covering at least 5% of the pixels."""
    share = np.bincount(logits.argmax(-1).ravel(), minlength=logits.shape[-1]) / logits[..., 0].size
    return int((share >= 0.05).sum())


def _tf_config(width: float, stride: int) -> ModelConfig:
    """The atrous config of a TF DeepLab zoo MobileNetV2 (TF rounds channels to 8 at dm 1.0
    only; its resizes align corners)."""
    return ModelConfig(
        backbone="mobilenet_v2",
        width_mult=width,
        channel_divisor=1 if width != 1.0 else 8,
        output_stride=stride,
        head="pooling",
        align_corners=True,
    )


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB images in [-1, 1] (NHWC float32): blobs, not pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=gen) * 2 - 1
    return (
        F.interpolate(coarse, size=(size, size), mode="bicubic")
        .clamp(-1, 1)
        .permute(0, 2, 3, 1)
        .numpy()
    )


def _litert(path, images: np.ndarray) -> np.ndarray:
    """Logits (NHWC float) of the .tflite at ``path`` under LiteRT, quantizing int8 inputs."""
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        x = image[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    return np.stack(results)


def _torch(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An atrous dm0.5 OS8 model (5 classes) exported by atrous's TFLite writer, float + int8."""
    torch.manual_seed(0)
    overrides = {"num_classes": 5, "output_stride": 8}
    model = _randomise_bn(DeepLab(default_card("deeplabv3_mnv2_dm05_os16", **overrides).model), 1)
    model = _spread_classes(model, SIZE)
    card = default_card("deeplabv3_mnv2_dm05_os16", **overrides)
    folder = tmp_path_factory.mktemp("tflite_import")
    float_path = export_tflite(model, card, folder / "float.tflite", size=(SIZE, SIZE))
    calibration = [((im + 1) * 127.5).astype(np.uint8) for im in _images(4, SIZE, seed=7)]
    int8_path = export_tflite(
        model,
        card,
        folder / "int8.tflite",
        size=(SIZE, SIZE),
        precision="int8",
        calibration=calibration,
    )
    return model, float_path, int8_path


def test_atrous_export_float_round_trip(exported):
    model, path, _ = exported
    found = from_tflite(path)
    config = found.model.config
    assert (config.width_mult, config.output_stride, config.head) == (0.5, 8, "pooling")
    assert (config.num_classes, config.channel_divisor, config.upsampling) == (5, 1, "bilinear")
    images = _images(4, SIZE)
    lite, converted = _litert(path, images), _torch(found.model, images)
    agreement = (lite.argmax(-1) == converted.argmax(-1)).mean()
    assert agreement >= 0.999, agreement
    assert _classes_present(lite) >= 3
    np.testing.assert_allclose(converted, lite, atol=1e-3)
    np.testing.assert_allclose(converted, _torch(model, images), atol=1e-3)  # the source model
    assert found.card.classes[:2] == ["background", "aeroplane"]  # the atrous card inside


def test_atrous_export_int8_round_trip(exported):
    """The int8 file's weights are dequantized exactly; the checkpoint computes in float, so
    its masks differ from LiteRT's int8 arithmetic by the activations' quantization only."""
    model, float_path, path = exported
    found = from_tflite(path)
    assert found.model.config.width_mult == 0.5 and found.model.config.num_classes == 5
    exact = from_tflite(float_path).model.state_dict()
    for key, value in found.model.state_dict().items():
        if value.dim() == 4:  # per-channel int8 kernels: within half a quantization step
            step = exact[key].abs().flatten(1).amax(1) / 127
            error = (value - exact[key]).abs().flatten(1).amax(1)
            assert (error <= step * 0.5001 + 1e-7).all(), key
    images = _images(4, SIZE)
    lite, converted, source = (
        _litert(path, images),
        _torch(found.model, images),
        _torch(model, images),
    )
    assert _classes_present(lite) >= 3
    agreement = (lite.argmax(-1) == converted.argmax(-1)).mean()
    weights_only = (converted.argmax(-1) == source.argmax(-1)).mean()  # int8 weights, float maths
    lite_vs_source = (lite.argmax(-1) == source.argmax(-1)).mean()
    print(
        f"int8 masks: LiteRT vs converted {agreement:.4%}, converted vs source model "
        f"{weights_only:.4%}, LiteRT vs source model {lite_vs_source:.4%}"
    )
    assert agreement >= INT8_FLOOR, agreement


@pytest.mark.parametrize("width, stride, size", [(0.5, 8, SIZE), (1.0, 16, 65)])
def test_tf_style_file_round_trip(tmp_path, width, stride, size):
    config = _tf_config(width, stride)
    model = _spread_classes(_randomise_bn(DeepLab(config), 2), size)
    path = write_tf_style(model, size, tmp_path / "deeplabv3_mnv2.tflite")
    found = from_tflite(path)
    assert found.model.config == config
    assert found.layout == f"TF DeepLab zoo (MobileNetV2 dm{width:g})"
    images = _images(2, size, seed=3)
    lite, converted = _litert(path, images), _torch(found.model, images)
    assert (lite.argmax(-1) == converted.argmax(-1)).mean() >= 0.999
    assert _classes_present(lite) >= 3
    np.testing.assert_allclose(converted, lite, atol=1e-3)
    np.testing.assert_allclose(converted, _torch(model, images), atol=1e-3)
    assert found.card.assumed["normalisation"].startswith("[-1, 1]")
    assert len(found.mapping["reshaped"]) == len(found.mapping["mapped"])  # kernel, bias per conv


@pytest.mark.parametrize("weights", ["uint8", "int8"])
def test_quantized_kernels_dequantized_as_litert_does(tmp_path, weights):
    """uint8 per-tensor (zero points) and int8 per-channel kernels behind DEQUANTIZE: LiteRT
    dequantizes them and computes in float, so the converted checkpoint must match it."""
    config = _tf_config(0.5, 16)
    model = _spread_classes(_randomise_bn(DeepLab(config), 7), 65)
    path = write_tf_style(model, 65, tmp_path / f"{weights}.tflite", weights=weights)
    found = from_tflite(path)
    assert found.model.config == config
    images = _images(2, 65, seed=5)
    lite, converted = _litert(path, images), _torch(found.model, images)
    assert (lite.argmax(-1) == converted.argmax(-1)).mean() >= 0.999
    np.testing.assert_allclose(converted, lite, atol=1e-4)


def test_convert_and_inspect_cli(tmp_path):
    model = _randomise_bn(DeepLab(_tf_config(0.5, 16)), 4)
    path = write_tf_style(model, 65, tmp_path / "zoo.tflite")
    out = tmp_path / "zoo.pt"
    result = CliRunner().invoke(app, ["convert", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "TF DeepLab zoo (MobileNetV2 dm0.5)" in result.output
    assert "unmapped: ResizeBilinear/size, ResizeBilinear_2/size" in result.output
    loaded, card = load_checkpoint(out)
    assert card.weights.licence == "unknown" and card.weights.source == str(path)
    assert card.preprocessing.mean == (0.5, 0.5, 0.5) and card.preprocessing.size == 65
    images = _images(1, 65)
    np.testing.assert_allclose(_torch(loaded.eval(), images), _torch(model, images), atol=1e-3)
    info = inspect_model(path)
    assert info["layout"] == "TF DeepLab zoo (MobileNetV2 dm0.5)"
    assert info["architecture"]["output_stride"] == 16


def test_uint8_input_contract_read_from_the_file(tmp_path):
    """A uint8 input's quantization is the file's own normalisation: no guess is announced."""
    config = ModelConfig(backbone="mobilenet_v2", width_mult=0.5, channel_divisor=1)
    model = _randomise_bn(DeepLab(config.model_copy(update={"head": "pooling"})), 6)
    path = write_tf_style(model, 65, tmp_path / "uint8.tflite", uint8_input=True)
    card = from_tflite(path).card
    assert "normalisation" not in card.assumed
    assert card.preprocessing.mean == pytest.approx((128 / 255,) * 3)
    assert card.preprocessing.std == pytest.approx((128 / 255,) * 3)  # 1 / (255 / 128)


def test_asymmetric_same_padding_is_refused(tmp_path):
    model = _randomise_bn(
        DeepLab(ModelConfig(backbone="mobilenet_v2", width_mult=0.5, head="pooling")), 5
    )
    path = write_tf_style(model, 64, tmp_path / "even.tflite")
    with pytest.raises(ModelError) as err:
        from_tflite(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "'MobilenetV2/Conv/Relu6'" in message and "asymmetric SAME padding" in message


def test_bad_files_one_line(tmp_path, exported):
    _, good, _ = exported
    content = good.read_bytes()
    cases = {f"cut{n}.tflite": content[:n] for n in (8, 64, 4096, len(content) - 64)}
    cases |= {
        "truncated.tflite": content[: len(content) // 3],
        "garbage.tflite": bytes(range(256)) * 8,
        "empty.tflite": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError) as err:
            from_tflite(tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and message.startswith(str(tmp_path / name)), message
    unrelated = write_unrelated(tmp_path / "classifier.tflite")
    with pytest.raises(ModelError) as err:
        from_tflite(unrelated)
    message = str(err.value)
    assert "\n" not in message and "not a TF DeepLab zoo layout" in message
    assert "looks like: input [[1, 8, 8, 3]]" in message and "LOGISTIC" in message
    result = CliRunner().invoke(app, ["convert", str(unrelated), "-o", str(tmp_path / "x.pt")])
    assert isinstance(result.exception, ModelError)  # __main__ prints it as one line
    assert "not a TF DeepLab zoo layout" in str(result.exception)
    assert not (tmp_path / "x.pt").exists()


def test_damaged_flatbuffer_never_escapes_as_another_error(tmp_path):
    """Byte flips anywhere in a small .tflite: it imports or is refused in one ModelError line."""
    content = bytearray(write_unrelated(tmp_path / "small.tflite").read_bytes())
    rng = np.random.default_rng(0)
    for i, position in enumerate(rng.integers(0, len(content), 40)):
        damaged = bytearray(content)
        damaged[position] ^= int(rng.integers(1, 256))
        path = tmp_path / f"flip{i}.tflite"
        path.write_bytes(bytes(damaged))
        with pytest.raises(ModelError) as err:  # it was never a DeepLab; damage cannot make one
            from_tflite(path)
        assert "\n" not in str(err.value)
