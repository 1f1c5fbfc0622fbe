"""Named model configurations that reproduce published DeepLab models, with their published figures.

Each entry stores its source, published mIoU (with the protocol it was measured under) and published
multiply-adds beside the configuration, so ``atrous zoo`` can compare them with measured ones.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from pydantic import ValidationError

from atrous.card import ModelCard, Provenance
from atrous.config import (
    ExperimentConfig,
    ModelConfig,
    ModelSection,
    Preprocessing,
    format_validation_error,
    load_experiment,
)
from atrous.errors import ConfigError, ModelError
from atrous.models.deeplab import DeepLab
from atrous.models.zoo_entry import ZooEntry
from atrous.models.zoo_smp import SMP_ENTRIES
from atrous.palettes import CITYSCAPES_CLASSES, VOC_CLASSES, palette_for
from atrous.weights import TORCHVISION_WEIGHTS, Weights, fetch, read_state_dict

__all__ = [
    "ZooEntry",
    "register",
    "list_models",
    "get_entry",
    "get_model",
    "get_weights",
    "default_card",
    "check_model_section",
    "resolve_experiment",
]

_TF_NORM = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # TF DeepLab scales to [-1, 1]


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry to the zoo; duplicate names are a programming error."""
    if entry.name in _REGISTRY:
        raise ValueError(f"duplicate zoo entry {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(pattern: str = "*") -> list[str]:
    """Names of zoo entries matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name``; ModelError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; known: {', '.join(list_models())}") from None


def get_weights(name: str, weights: str) -> Weights:
    """The published weights called ``weights`` of zoo entry ``name``; one-line ModelError
    naming the ones it has otherwise."""
    entry = get_entry(name)
    for record in entry.weights:
        if record.name == weights:
            return record
    known = ", ".join(w.name for w in entry.weights) or "none published"
    raise ModelError(f"{name}: no weights named '{weights}' (known: {known})")


def get_model(name: str, *, weights: str | None = None, **overrides: object) -> DeepLab:
    """Build a zoo model; random weights unless ``weights`` names published ones (downloaded
    once and cached, see :mod:`atrous.weights`); keyword overrides replace config fields.

    Example: ``get_model("deeplabv3_mnv2_dm05_os16", num_classes=5, output_stride=8)``.
    Weights in a foreign layout load through ``atrous.sources.load_source`` instead.
    """
    entry = get_entry(name)
    config = entry.config.model_copy(update=overrides) if overrides else entry.config
    model = DeepLab(ModelConfig.model_validate(config.model_dump()))
    if weights is not None:
        record = get_weights(name, weights)
        if record.layout != "atrous":
            raise ModelError(
                f"{name}: weights '{weights}' are in {record.layout}'s layout; load them with "
                f"atrous.sources.load_source({name!r}, weights={weights!r}) (converted once)"
            )
        path = fetch(record)
        try:
            model.load_state_dict(read_state_dict(path))
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise ModelError(f"{path}: weights do not fit {name}: {first[0].strip()}") from None
    return model


def default_card(name: str, **overrides: object) -> ModelCard:
    """The card of a zoo entry (dataset classes, palette), with config overrides applied."""
    entry = get_entry(name)
    config = ModelConfig.model_validate({**entry.config.model_dump(), **overrides})
    base = CITYSCAPES_CLASSES if entry.dataset == "cityscapes" else VOC_CLASSES
    classes = list(base[: config.num_classes])
    classes += [f"class_{i}" for i in range(len(classes), config.num_classes)]
    return ModelCard(
        name=name,
        model=config,
        classes=classes,
        palette=palette_for(entry.dataset, config.num_classes),
        preprocessing=entry.preprocessing.model_copy(update={"size": max(entry.input_size)}),
        provenance=Provenance(zoo_name=name, dataset=entry.dataset, source=entry.source),
    )


def check_model_section(section: ModelSection, source: str) -> None:
    """One-line ConfigError naming ``source`` unless ``section`` names a zoo entry whose config
    accepts the overrides (checks across fields included, e.g. width_mult on a ResNet)."""
    try:
        default_card(section.name, **section.overrides)
    except ModelError as exc:  # unknown model name
        raise ConfigError(f"{source}: key 'model': {exc}") from None
    except ValidationError as exc:
        inner = format_validation_error(exc, "overrides")
        raise ConfigError(f"{source}: key 'model': {inner}") from None


def resolve_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """``load_experiment``, then the model section resolved against the zoo (one-line errors
    naming the file), so a bad model name stops a run before it writes anything."""
    config = load_experiment(path, overrides)
    check_model_section(config.model, str(path))
    return config


_TF_ZOO = "TensorFlow DeepLab model zoo (research/deeplab/g3doc/model_zoo.md)"
_VOC_PROTOCOL = "VOC 2012 val, 513x513 pad, dataset-level mIoU, single scale"

register(
    ZooEntry(
        name="deeplabv3_mnv2_dm05_os16",
        config=ModelConfig(
            backbone="mobilenet_v2", width_mult=0.5, channel_divisor=1, head="pooling"
        ),
        input_size=(513, 513),
        dataset="voc",
        source=f"{_TF_ZOO}; NXP eIQ",
        params=697_013,
        macs=867_496_704,
        published={"miou": 70.19, "gmacs": 0.88, "size_mb": 7.6, "protocol": _VOC_PROTOCOL},
        preprocessing=Preprocessing(**_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3_mnv2_os16",
        config=ModelConfig(backbone="mobilenet_v2", width_mult=1.0, head="pooling"),
        input_size=(513, 513),
        dataset="voc",
        source=_TF_ZOO,
        params=2_113_557,
        macs=2_740_709_056,
        published={"miou": 75.32, "gmacs": 2.75, "size_mb": 23.0, "protocol": _VOC_PROTOCOL},
        preprocessing=Preprocessing(**_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3_mnv2_a050_aspp_os16_512",
        config=ModelConfig(backbone="mobilenet_v2", width_mult=0.5, head="aspp"),
        input_size=(512, 512),
        dataset="voc",
        source="ST model zoo (STM32 AI), DeepLabV3 MobileNetV2 a0.50",
        params=2_004_309,
        macs=2_199_920_640,
        published={
            "miou": 73.44,
            "accuracy": 93.29,
            "protocol": "ST: per-image IoU over present classes, 255 as background, 512x512",
        },
        preprocessing=Preprocessing(resize="fixed", **_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3_mnv2_a050_noaspp_257",
        config=ModelConfig(backbone="mobilenet_v2", width_mult=0.5, head="pooling"),
        input_size=(257, 257),
        dataset="voc",
        source="ST model zoo (STM32 AI), per-tensor int8",
        params=700_245,
        macs=239_003_344,
        published={
            "miou": 59.33,
            "accuracy": 88.6,
            "precision": "int8 per-tensor",
            "protocol": "ST: per-image IoU over present classes, 255 as background, 257x257",
        },
        preprocessing=Preprocessing(resize="fixed", **_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3plus_xception65_os16",
        config=ModelConfig(
            backbone="xception65", decoder=True, separable_aspp=True, separable_decoder=True
        ),
        input_size=(513, 513),
        dataset="voc",
        source=_TF_ZOO,
        params=41_055_413,
        macs=54_035_303_024,
        published={"miou": 82.20, "gmacs": 54.17, "size_mb": 439.0, "protocol": _VOC_PROTOCOL},
        preprocessing=Preprocessing(**_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3plus_xception71_os16",
        config=ModelConfig(
            backbone="xception71",
            decoder=True,
            separable_aspp=True,
            separable_decoder=True,
            num_classes=19,
        ),
        input_size=(1025, 2049),
        dataset="cityscapes",
        source=_TF_ZOO,
        params=43_477_323,
        macs=513_037_697_336,
        published={
            "note": "the TF zoo's Xception-71 Cityscapes checkpoint uses a DPC head, not ASPP"
        },
        preprocessing=Preprocessing(resize="none", **_TF_NORM),
    )
)
register(
    ZooEntry(
        name="deeplabv3_resnet50_os8",
        config=ModelConfig(backbone="resnet50", output_stride=8, aux_loss=True),
        input_size=(520, 520),
        dataset="voc",
        source="torchvision deeplabv3_resnet50",
        params=41_413_738,
        macs=166_239_199_488,
        published={
            "miou": 66.4,
            "gflops": 178.7,
            "params_m": 42.0,
            "protocol": "torchvision: COCO val2017 subset in VOC classes, resize 520",
        },
    )
)
register(
    ZooEntry(
        name="deeplabv3_resnet101_os8",
        config=ModelConfig(backbone="resnet101", output_stride=8, aux_loss=True),
        input_size=(520, 520),
        dataset="voc",
        source="torchvision deeplabv3_resnet101",
        params=60_405_866,
        macs=246_260_293_888,
        published={
            "miou": 67.4,
            "gflops": 258.7,
            "params_m": 61.0,
            "protocol": "torchvision: COCO val2017 subset in VOC classes, resize 520",
        },
    )
)

# torchvision's segmentation models, architecture for architecture: DeepLabHead's 3x3 conv after
# ASPP (head_conv), FCNHead aux (in / 4 channels), dropout 0.5, eval resize of the shorter side to
# 520 with no padding. Their state_dicts load through atrous.models.foreign.torchvision. The
# published GFLOPS are multiply-adds counted with the aux head; ``macs`` here is the eval graph's.
_TV = "torchvision 0.28 models.segmentation"
_TV_PROTOCOL = "torchvision: COCO val2017 subset in VOC classes, resize 520"
_TV_PRE = Preprocessing(resize="shorter", size=520, pad_multiple=1)
_TV_HEAD = {"head_conv": True, "aux_loss": True, "dropout": 0.5}
_TV_MNV3 = {"backbone": "mobilenet_v3_large", "aux_stride": 8}

register(
    ZooEntry(
        name="deeplabv3_resnet50_tv",
        config=ModelConfig(backbone="resnet50", output_stride=8, **_TV_HEAD),
        input_size=(520, 520),
        dataset="voc",
        source=f"{_TV} deeplabv3_resnet50",
        weights=(TORCHVISION_WEIGHTS["deeplabv3_resnet50"],),
        params=42_004_074,
        macs=168_731_205_888,
        published={"miou": 66.4, "pixel_acc": 92.4, "gflops": 178.72, "protocol": _TV_PROTOCOL},
        preprocessing=_TV_PRE,
    )
)
register(
    ZooEntry(
        name="deeplabv3_resnet101_tv",
        config=ModelConfig(backbone="resnet101", output_stride=8, **_TV_HEAD),
        input_size=(520, 520),
        dataset="voc",
        source=f"{_TV} deeplabv3_resnet101",
        weights=(TORCHVISION_WEIGHTS["deeplabv3_resnet101"],),
        params=60_996_202,
        macs=248_752_300_288,
        published={"miou": 67.4, "pixel_acc": 92.4, "gflops": 258.74, "protocol": _TV_PROTOCOL},
        preprocessing=_TV_PRE,
    )
)
register(
    ZooEntry(
        name="deeplabv3_mobilenet_v3_large_tv",
        config=ModelConfig(**_TV_MNV3, atrous_rates=(12, 24, 36), aux_channels=10, **_TV_HEAD),
        input_size=(520, 520),
        dataset="voc",
        source=f"{_TV} deeplabv3_mobilenet_v3_large",
        weights=(TORCHVISION_WEIGHTS["deeplabv3_mobilenet_v3_large"],),
        params=11_029_328,
        macs=10_436_350_688,
        published={"miou": 60.3, "pixel_acc": 91.2, "gflops": 10.45, "protocol": _TV_PROTOCOL},
        preprocessing=_TV_PRE,
    )
)
register(
    ZooEntry(
        name="lraspp_mobilenet_v3_large_tv",
        config=ModelConfig(**_TV_MNV3, head="lraspp", head_channels=128),
        input_size=(520, 520),
        dataset="voc",
        source=f"{_TV} lraspp_mobilenet_v3_large",
        weights=(TORCHVISION_WEIGHTS["lraspp_mobilenet_v3_large"],),
        params=3_221_538,
        macs=2_086_219_688,
        published={"miou": 57.9, "pixel_acc": 91.2, "gflops": 2.09, "protocol": _TV_PROTOCOL},
        preprocessing=_TV_PRE,
    )
)

_SHUFFLENET = (
    "atrous: ShuffleNetV2 1.0x (Ma et al. 2018; torchvision's ImageNet layout), separable ASPP "
    "as in Turkmen & Heikkila 2019; no published checkpoint"
)
register(
    ZooEntry(
        name="deeplabv3_shufflenetv2_x1_os16",
        config=ModelConfig(backbone="shufflenet_v2_x1_0", separable_aspp=True),
        input_size=(513, 513),
        dataset="voc",
        source=_SHUFFLENET,
        params=1_721_801,
        macs=1_915_392_160,
    )
)
register(
    ZooEntry(
        name="deeplabv3plus_shufflenetv2_x1_os16",
        config=ModelConfig(
            backbone="shufflenet_v2_x1_0",
            separable_aspp=True,
            decoder=True,
            separable_decoder=True,
        ),
        input_size=(513, 513),
        dataset="voc",
        source=_SHUFFLENET,
        params=1_873_593,
        macs=4_487_694_544,
    )
)
for _entry in SMP_ENTRIES:  # segmentation_models_pytorch's DeepLabs (atrous.models.zoo_smp)
    register(_entry)
