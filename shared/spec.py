"""Job specs: one frozen pydantic model per job kind, flowing CLI -> DB -> message -> worker -> checkpoint.

Unknown keys are rejected, every field is validated here, and `parse()` turns pydantic's
multi-line errors into a one-line `SpecError` naming the field and the allowed values.
No torch import: the CLI validates specs before anything is queued.

The specs are also the CLI's source: each field's type, default, Literal values and description
become an option of `orch submit` (orchestrator/fields.py), and a field declared with `axis()`
is a grid axis: a comma list in `orch submit ablation` and `orch models`, one value elsewhere.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from shared.archs import (
    ARCH_ALIASES,
    ARCHS,
    BOTTLENECK_ARCHS,
    GROUPED_ARCHS,
    NORMS,
    RESNET_ARCHS,
    WIDTH_MULT_HELP,
    AliasArch,
    Attention,
    Norm,
    OtherArch,
    ResNetArch,
    built_width_mult,
    check_model_knobs,
    check_trainable,
)
from shared.complexity import width_for
from shared.errors import SpecError

# the architecture names are re-exported: callers know them as shared.spec's
__all__ = ["ARCHS", "AXIS", "BOTTLENECK_ARCHS", "NORMS", "PRECISIONS", "RESNET_ARCHS", "RESNEXT_BASE",
           "SCORE_PRECISIONS", "SPEC_FOR_KIND", "STORED", "ModelSpec", "ScoreSpec", "Spec", "TrainSpec", "axis",
           "is_axis", "is_stored", "parse", "read_stored", "spec_error"]

Stem = Literal["auto", "imagenet", "small"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ScorePrecision = Literal["auto", "fp32", "bf16", "int8"]  # int8: quantized inference on an x86 CPU
SCORE_PRECISIONS: tuple[str, ...] = get_args(ScorePrecision)
Optimizer = Literal["adam", "sgd"]
Schedule = Literal["cosine", "step", "none"]
RESNEXT_BASE = "resnet50"  # the ResNeXt paper's base: a grid over groups without a model uses it
AXIS = "ablation_axis"  # json_schema_extra key that marks a grid axis
STORED = {"stored": True}  # validation context of a spec read back from the store


def axis(default: Any, **kwargs: Any) -> Any:
    """A Field that is a grid axis: `orch submit ablation` and `orch models` take it as a comma list."""
    return Field(default, json_schema_extra={AXIS: True}, **kwargs)


def is_axis(info: Any) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(AXIS))


class Spec(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """Identity of a grid cell: two specs with the same hash are the same experiment."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _defaults_given(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a raw model spec whose value is what their default builds, set to the default."""
    same: dict[str, Any] = {}
    if data.get("norm") == "bn":  # every architecture's own norm
        same["norm"] = None
    if data.get("attention", "none") == "none" and "attention_reduction" in data:
        same["attention_reduction"] = ModelSpec.model_fields["attention_reduction"].default
    arch, width = data.get("arch", "resnet18"), data.get("width_per_group")
    if width is not None and arch in RESNET_ARCHS:
        try:
            if int(width) == width_for(int(data.get("groups", 1)), None, bottleneck=arch in BOTTLENECK_ARCHS):
                same["width_per_group"] = None
        except (TypeError, ValueError):
            pass  # not numbers, or groups that do not divide: validation names the field
    return same


class ModelSpec(Spec):
    """What `shared.models.build_model` builds."""

    # one Literal: errors name the field, not a union branch
    arch: Literal[ResNetArch, OtherArch, AliasArch] = axis(
        "resnet18", description="Architecture: the ResNets of the ResNet paper's Table 1, ShuffleNet v1 as in "
        "its paper's Table 1, torchvision's MobileNets and ShuffleNet v2 (shufflenet_v2_x0_5 .. x2_0 are "
        "shufflenet_v2 at that --width-mult).")
    num_classes: int = Field(1000, ge=2, le=100_000, description="Classes of the final layer.")
    norm: Norm | None = axis(  # None: the architecture's own (BatchNorm everywhere)
        None, description="Norm layers: bn (BatchNorm), ln (GroupNorm(1, C): LayerNorm over C,H,W), in "
        "(InstanceNorm, affine), gn (GroupNorm(32, C)). ResNets take all four (gn where every layer's "
        "channels divide by 32), shufflenet_v1 and the MobileNets bn, ln or in, shufflenet_v2 bn only. "
        "Default: bn.")
    groups: int = axis(1, ge=1, le=256, description="Cardinality (ResNeXt) on the bottleneck depths "
                       f"({', '.join(BOTTLENECK_ARCHS)}); shufflenet_v1's group count (1, 2, 3, 4, 8).")
    width_per_group: int | None = axis(
        None, ge=1, le=4096, description="Channels per group. Default: chosen to keep the groups=1 "
        "multiply-adds, as in the ResNeXt paper's Table 2 (32x4d, 8x14d, 4x24d, 2x40d, 1x64d).")
    width_mult: float | None = axis(
        None, gt=0.0, le=4.0, description="Width multiplier of mobilenet_v2 and the ShuffleNets (not the "
        f"ResNets or mobilenet_v3): {WIDTH_MULT_HELP}. Default: 1.0.")
    attention: Attention = axis(
        "none", description="Attention on each residual branch of the ResNets, before the addition: se "
        "(squeeze-and-excitation) or cbam (channel, then 7x7 spatial attention).")
    attention_reduction: int = axis(16, ge=1, le=1024, description="Reduction ratio of the se/cbam MLP "
                                                                   "(channels / R hidden units).")
    stem: Stem = Field("auto", description="imagenet (7x7 stride 2 + max-pool), small (3x3 stride 1, "
                                           "no max-pool), auto (small for images of 64 px or less).")
    image_size: int = Field(224, ge=32, le=2048, description="Square input size in pixels (at least 32).")
    pretrained: str | None = Field(None, description="A local torchvision state_dict file (never downloaded).")

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        """One network, one spec: torchvision's shufflenet_v2_x0_5 .. x2_0 are shufflenet_v2 at that
        width, and a value given that is what the default builds (width_mult 1.0, norm bn, the width
        per group the group count gives, a reduction without attention) is the default, so their runs
        are one grid cell and one config (`--norm bn` and no --norm made two rows named norm=bn)."""
        if not isinstance(data, dict):
            return data
        data = {**data, **_defaults_given(data)}
        if data.get("arch") in ARCH_ALIASES:
            width = ARCH_ALIASES[data["arch"]]
            if data.get("width_mult") not in (None, width):
                raise SpecError("width_mult", f"{data['arch']} is shufflenet_v2 at width_mult {width}; for "
                                              f"width_mult {data['width_mult']} use arch shufflenet_v2")
            data = {**data, "arch": "shufflenet_v2", "width_mult": width}
        if data.get("width_mult") == 1.0:  # every network's own width, whether or not it has the knob: a grid
            data = {**data, "width_mult": None}  # of resnet18,mobilenet_v2 at --width-mult 1.0 was refused
        return data

    @model_validator(mode="after")
    def _knobs_apply(self, info: ValidationInfo) -> ModelSpec:
        if not is_stored(info):  # a spec read back was valid when written; a newer rule must not hide it
            check_model_knobs(self)
        return self

    @property
    def norm_name(self) -> str:
        """The norm the network is built with: every architecture's own is BatchNorm."""
        return self.norm or "bn"

    def as_built(self) -> ModelSpec:
        """This spec with the defaults that depend on other fields filled in, as the network is built,
        and the knobs that do not apply (a reduction without attention) empty; for showing only."""
        return self.model_copy(update={
            "norm": self.norm_name, "groups": self.groups if self.arch in GROUPED_ARCHS else None,
            "width_per_group": self.built_width,
            "width_mult": built_width_mult(self.arch, self.width_mult),
            "attention_reduction": None if self.attention == "none" else self.attention_reduction})

    @property
    def built_width(self) -> int | None:
        """The width per group the network is built with; None where the knob does not apply."""
        if self.arch not in RESNET_ARCHS:
            return None
        return width_for(self.groups, self.width_per_group, bottleneck=self.arch in BOTTLENECK_ARCHS)


def is_stored(info: ValidationInfo) -> bool:
    """True while validating a spec read back from the store (`read_stored`)."""
    return isinstance(info.context, dict) and bool(info.context.get("stored"))


class TrainSpec(Spec):
    """A training job: the model plus data and optimisation settings."""

    # field order is the order of `orch submit train --help`; the JSON (and the hash) sorts its keys
    data: str = Field(description="Training folder: ImageFolder (train/<class>/*.jpg) or flat (cat.1.jpg) "
                                  "layout.")  # stored as an absolute path
    val: str | None = Field(None, description="Validation folder (default: split --val-fraction off --data).")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of --data held out when --val "
                                                                 "is not given.")
    model: ModelSpec
    epochs: int = Field(10, ge=1, le=100_000, description="Epochs.")
    lr: float = axis(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    batch_size: int = axis(64, ge=1, le=65_536, description="Images per training step.")
    optimizer: Optimizer = Field("adam", description="Optimizer (sgd uses --momentum).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Weight decay.")
    schedule: Schedule = Field("cosine", description="Learning-rate schedule over the steps.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing.")
    seed: int = axis(0, ge=0, le=2**31 - 1, description="Random seed: weights, augmentation and batch "
                                                        "order (the val split does not depend on it).")
    precision: Precision = Field("auto", description="auto: bf16 on CUDA, and on a CPU with AMX/AVX512-BF16 "
                                                     "where it measures at least 1.05x as fast as fp32 "
                                                     "(timed once a machine), else fp32.")
    # torch.compile the training step: pays a compile for faster steps on a GPU. On a 2-core AVX2 CPU
    # (bench/compile_cpu.py, BENCHMARKS.md) resnet18's compile took 90 s and its steps were no faster.
    compile: bool = Field(False, description="torch.compile the training step: faster steps on a GPU after a "
                                             "compile of minutes (on a CPU measured no faster).")

    @model_validator(mode="after")
    def _trainable(self, info: ValidationInfo) -> TrainSpec:
        if not is_stored(info):
            check_trainable(self)
        return self

    def model_for_classes(self, count: int) -> ModelSpec:
        """The model for the `count` classes the data has. `orch submit` records the data's count in
        model.num_classes; specs stored before it did say 1000, so the data decides for those."""
        if self.model.num_classes == count:
            return self.model
        return self.model.model_copy(update={"num_classes": count})


SHA256 = r"^[0-9a-f]{64}$"


class ScoreInputs(Spec):
    """What a scoring run was submitted against, pinned by `orch submit score` (shared/scoring/inputs.py):
    a shard that finds another checkpoint or folder fails the run, and the assembly checks the CSV holds
    exactly the pinned ids. Digests and a count, not the names: a folder may hold 100,000 images."""

    checkpoint_sha256: str = Field(pattern=SHA256)
    files: int = Field(ge=1)  # images in the folder
    files_sha256: str = Field(pattern=SHA256)  # over (id, relative name, size) in id order
    ids_sha256: str = Field(pattern=SHA256)  # over the ids in order: what the CSV's id column must be


class ScoreSpec(Spec):
    """A scoring job: a checkpoint applied to a numbered (or labelled) folder."""

    checkpoint: str = Field(description="A checkpoint file written by orch.")  # absolute path
    data: str = Field(description="Folder to score: numbered (0.jpg, 1.jpg...) or labelled.")
    out: str = Field(description="CSV to write (atomically, when every shard is done).")
    labels: str | None = Field(None, description="An id,label CSV: the test accuracy is recorded and "
                                                 "shown by orch report.")
    # 64: on the 2-core EPYC, int8, bf16 and fp32 scoring all ran faster at 64 than at 256 (BENCHMARKS.md)
    batch_size: int = Field(64, ge=1, le=65_536, description="Images per forward pass; a GPU may like more.")
    shards: int = Field(1, ge=1, le=1024, description="Split the folder into N tasks for N workers.")
    probs: bool = Field(False, description="Add one probability column per class.")
    header: bool = Field(False, description="Start the CSV with a header row.")
    names: bool = Field(False, description="Add a file column after the label: each image's path in the folder "
                        "(a labelled folder's ids are positions in its sorted listing).")
    precision: ScorePrecision = Field(
        "auto", description="auto: int8 on an x86 CPU, checked against fp32 on 16 of the images first "
        "(if they disagree: the precision the job trained in); bf16 on a GPU.")
    # set by `orch submit score`, never by hand; None only in specs stored before inputs were pinned
    inputs: ScoreInputs | None = None


SPEC_FOR_KIND: dict[str, type[Spec]] = {"train": TrainSpec, "score": ScoreSpec, "score_shard": ScoreSpec}


S = TypeVar("S", bound=Spec)


def parse(cls: type[S], data: dict[str, Any]) -> S:
    """Validate `data` into `cls`, raising a one-line SpecError on the first problem."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc) from None


def read_stored(cls: type[S], data: dict[str, Any]) -> S:
    """A job's spec as the store holds it, typed (SPEC_FOR_KIND[job.kind]): readers resolve defaults
    here and nowhere else. Cross-field rules added since the job was submitted are not applied."""
    try:
        return cls.model_validate(data, context=STORED)
    except ValidationError as exc:
        raise spec_error(exc) from None


def spec_error(exc: ValidationError) -> SpecError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "spec"
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, SpecError):  # a cross-field check that already names its field
        prefix = ".".join(str(p) for p in err["loc"])
        return SpecError(f"{prefix}.{inner.field}" if prefix else inner.field, inner.message)
    if err["type"] == "extra_forbidden":
        return SpecError(field, "unknown field")
    value = err.get("input")
    bound = BOUNDS.get(err["type"])
    if bound is not None:  # pydantic's "Input should be greater than or equal to 1", in plain words
        words, key = bound
        if isinstance(value, float) and not math.isfinite(value):  # "must be at most 10.0, got nan" misled
            return SpecError(field, f"must be a finite number ({words} {err['ctx'][key]}), got {value!r}")
        return SpecError(field, f"must be {words} {err['ctx'][key]}, got {value!r}")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] != "value_error" and not isinstance(value, dict):
        msg = f"got {value!r}: {msg}"
    return SpecError(field, msg)


# pydantic's error types for Field(ge=..., gt=..., le=..., lt=...): (the words, the ctx key of the bound)
BOUNDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
          "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
