"""Job specs: one frozen pydantic model per job kind, flowing CLI -> DB -> message -> worker -> checkpoint.

Unknown keys are rejected, every field is validated here, and `parse()` turns pydantic's
multi-line errors into a one-line `SpecError` naming the field and the allowed values.
No torch import: the CLI validates specs before anything is queued.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.complexity import BASE_WIDTH, GN_GROUPS, width_for
from shared.errors import SpecError

ResNetArch = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
OtherArch = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0"]
ARCHS: tuple[str, ...] = get_args(ResNetArch) + get_args(OtherArch)
RESNET_ARCHS: tuple[str, ...] = get_args(ResNetArch)
BOTTLENECK_ARCHS: tuple[str, ...] = ("resnet50", "resnet101", "resnet152")
Norm = Literal["bn", "ln", "in", "gn"]
NORMS: tuple[str, ...] = get_args(Norm)
Stem = Literal["auto", "imagenet", "small"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ScorePrecision = Literal["auto", "fp32", "bf16", "int8"]  # int8: quantized inference on an x86 CPU
SCORE_PRECISIONS: tuple[str, ...] = get_args(ScorePrecision)
Optimizer = Literal["adam", "sgd"]
Schedule = Literal["cosine", "step", "none"]


class Spec(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """Identity of a grid cell: two specs with the same hash are the same experiment."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


class ModelSpec(Spec):
    """What `shared.models.build_model` builds."""

    arch: Literal[ResNetArch, OtherArch] = "resnet18"  # one Literal: errors name the field, not a union branch
    num_classes: int = Field(1000, ge=2, le=100_000)
    groups: int = Field(1, ge=1, le=256)
    width_per_group: int | None = Field(None, ge=1, le=4096)
    norm: Norm | None = None  # None: the architecture's own (bn for ResNets)
    stem: Stem = "auto"
    image_size: int = Field(224, ge=32, le=2048)
    pretrained: str | None = None  # a local torchvision state_dict file; never downloaded

    @model_validator(mode="after")
    def _knobs_apply(self) -> "ModelSpec":
        check_model_knobs(self)
        return self


def check_model_knobs(spec: ModelSpec) -> None:
    """Cross-field rules that need no torch, so the CLI and the worker reject the same specs.

    Raises SpecError naming the field; `spec_error` keeps that field through pydantic.
    """
    if spec.arch not in RESNET_ARCHS:
        _check_other_arch(spec)
        return
    if spec.arch not in BOTTLENECK_ARCHS:
        if spec.groups != 1:
            raise SpecError("groups", f"groups need a bottleneck depth ({', '.join(BOTTLENECK_ARCHS)}); "
                                      f"{spec.arch} uses basic blocks, which torchvision builds with groups=1 only")
        if spec.width_per_group not in (None, BASE_WIDTH):
            raise SpecError("width_per_group", f"width_per_group needs a bottleneck depth "
                                               f"({', '.join(BOTTLENECK_ARCHS)}); {spec.arch} uses basic blocks, "
                                               f"which torchvision builds with width 64 only")
        return
    try:
        width = width_for(spec.groups, spec.width_per_group, bottleneck=True)
    except ValueError as exc:
        raise SpecError("groups", str(exc)) from None
    if spec.norm == "gn" and (spec.groups * width) % GN_GROUPS:
        # layer1's bottleneck width is the smallest channel count; later stages double it.
        raise SpecError("norm", f"gn (GroupNorm with {GN_GROUPS} groups) needs channel counts divisible by "
                                f"{GN_GROUPS}, but groups={spec.groups} x width_per_group={width} gives "
                                f"{spec.groups * width} channels in layer1; use norm bn, ln or in, or a "
                                f"width_per_group that makes groups x width a multiple of {GN_GROUPS}")


def _check_other_arch(spec: ModelSpec) -> None:
    """torchvision's MobileNets and ShuffleNet are built as designed: the ResNet knobs do not apply."""
    family = ", ".join(RESNET_ARCHS)
    if spec.norm is not None:
        raise SpecError("norm", f"norm applies to the ResNet family only ({family}); "
                                f"{spec.arch} keeps its own BatchNorm")
    if spec.groups != 1:
        raise SpecError("groups", f"groups apply to the bottleneck ResNets only ({', '.join(BOTTLENECK_ARCHS)}); "
                                  f"{spec.arch} keeps its own grouped convolutions")
    if spec.width_per_group is not None:
        raise SpecError("width_per_group", f"width_per_group applies to the bottleneck ResNets only "
                                           f"({', '.join(BOTTLENECK_ARCHS)}), not to {spec.arch}")


class TrainSpec(Spec):
    """A training job: the model plus data and optimisation settings."""

    model: ModelSpec
    data: str  # absolute path of the training folder
    val: str | None = None  # absolute path; None: split val_fraction off `data`
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Optimizer = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    schedule: Schedule = "cosine"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    precision: Precision = "auto"
    # torch.compile the training step: pays a compile (minutes on a CPU) for faster steps on a GPU
    compile: bool = False


class ScoreSpec(Spec):
    """A scoring job: a checkpoint applied to a numbered (or labelled) folder."""

    checkpoint: str  # absolute path of a checkpoint written by train()
    data: str  # absolute path of the folder to score
    out: str  # absolute path of the CSV to write
    labels: str | None = None  # an `id,label` CSV
    # 64: on the 2-core EPYC, int8, bf16 and fp32 scoring all ran faster at 64 than at 256 (BENCHMARKS.md)
    batch_size: int = Field(64, ge=1, le=65_536)
    shards: int = Field(1, ge=1, le=1024)
    probs: bool = False
    header: bool = False
    precision: ScorePrecision = "auto"


S = TypeVar("S", bound=Spec)


def parse(cls: type[S], data: dict[str, Any]) -> S:
    """Validate `data` into `cls`, raising a one-line SpecError on the first problem."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc) from None


def spec_error(exc: ValidationError) -> SpecError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "spec"
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, SpecError):  # a cross-field check that already names its field
        prefix = ".".join(str(p) for p in err["loc"])
        return SpecError(f"{prefix}.{inner.field}" if prefix else inner.field, str(inner)[len(inner.field) + 2:])
    if err["type"] == "extra_forbidden":
        return SpecError(field, "unknown field")
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] != "value_error" and not isinstance(value, dict):
        msg = f"got {value!r}: {msg}"
    return SpecError(field, msg)
