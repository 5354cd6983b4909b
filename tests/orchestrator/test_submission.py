"""Grid expansion for `orch submit ablation`: the cross product, validated, before anything is queued."""
from __future__ import annotations

import pytest

from orchestrator.submission import grid_specs
from shared.errors import SpecError

BASE = {"data": "/d/train", "val": "/d/val", "model": "resnet50", "image_size": 32, "stem": None,
        "pretrained": None, "epochs": 1}


def test_grid_is_the_cross_product_of_every_list_including_seeds() -> None:
    specs = grid_specs({**BASE, "norm": "bn,ln,in", "groups": "1,8,32", "seeds": "0,1,2"})
    assert len(specs) == 27
    cells = {(s.model.norm, s.model.groups, s.seed) for s in specs}
    assert cells == {(n, g, seed) for n in ("bn", "ln", "in") for g in (1, 8, 32) for seed in (0, 1, 2)}
    assert len({s.spec_hash() for s in specs}) == 27


def test_repeated_values_give_one_cell_each() -> None:
    specs = grid_specs({**BASE, "norm": "bn,bn", "lr": "0.01,0.010", "seeds": "0"})
    assert [(s.model.norm, s.lr, s.seed) for s in specs] == [("bn", 0.01, 0)]


def test_one_unbuildable_cell_refuses_the_grid_naming_the_option() -> None:
    with pytest.raises(SpecError, match=r"^--groups: .*resnet18"):
        grid_specs({**BASE, "model": "resnet50,resnet18", "groups": "1,8", "seeds": "0"})
    with pytest.raises(SpecError, match=r"^--seeds: .*'0,x'"):
        grid_specs({**BASE, "seeds": "0,x"})
