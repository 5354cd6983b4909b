"""torchvision's MobileNet v2/v3 and ShuffleNet v2, with their width multipliers and norms, and the
small stem for tiny images (which all the non-ResNets share, ShuffleNet v1 included)."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models as tvm

from shared.archs import built_width_mult
from shared.models.norms import NORM_LAYERS, init_norms
from shared.spec import ModelSpec

SHUFFLENET_V2: dict[float, Callable[..., nn.Module]] = {
    0.5: tvm.shufflenet_v2_x0_5, 1.0: tvm.shufflenet_v2_x1_0, 1.5: tvm.shufflenet_v2_x1_5, 2.0: tvm.shufflenet_v2_x2_0}


def build_mobile(spec: ModelSpec) -> nn.Module:
    """A MobileNet or ShuffleNet v2 as torchvision builds it; ln and in replace the MobileNets' own
    BatchNorm (whose eps and momentum torchvision tunes per net, so bn keeps theirs)."""
    width = built_width_mult(spec.arch, spec.width_mult)
    if spec.arch == "shufflenet_v2":
        return SHUFFLENET_V2[width or 1.0](weights=None, num_classes=spec.num_classes)
    options: dict[str, object] = {"width_mult": width} if width is not None else {}
    if spec.norm_name != "bn":
        options["norm_layer"] = NORM_LAYERS[spec.norm_name]
    model: nn.Module = getattr(tvm, spec.arch)(weights=None, num_classes=spec.num_classes, **options)
    init_norms(model)
    return model


def small_stem(model: nn.Module) -> None:
    """Small stem for MobileNet/ShuffleNet: the first conv at stride 1 and no max-pool.

    Same idea as the ResNet small stem (no early downsampling for tiny images); the weights keep
    their shapes, so torchvision checkpoints still load.
    """
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.stride = (1, 1)
    if hasattr(model, "maxpool"):  # the ShuffleNets
        model.maxpool = nn.Identity()
