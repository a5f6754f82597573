"""beniful.notebook.prefetch: the reversed grid a second kernel runs beside a notebook.

The second kernel must run exactly the kept notebook's cases (else it computes entries nobody
reads, or misses some) in the opposite order (else the two kernels wait on each other's locks
instead of splitting the work), and bad values must fail before any kernel starts.
"""
from __future__ import annotations

import json

import pytest

from beniful import notebook as nb
from beniful.notebook import prefetch
from beniful.notebook.run import resolve_datasets


def test_reversed_params_reverse_every_axis_of_the_same_cases() -> None:
    p = prefetch.reversed_params("quick", "mnist5k,fashion-mnist", "badnets,wanet,sig", "0,1,2")
    assert p == {"profile": "quick", "dataset": ["fashion-mnist", "mnist5k"],
                 "attacks": ["sig", "wanet", "badnets"], "seed": [2, 1, 0]}


def test_defaults_are_the_notebooks_defaults_reversed() -> None:
    p = prefetch.reversed_params("quick")
    on_disk, _ = resolve_datasets("quick")
    assert p["dataset"] == on_disk[::-1]  # a missing default data set stays out of both runs
    assert p["attacks"] == nb.choose("attacks")[::-1] and p["seed"] == [0]


@pytest.mark.parametrize("kwargs, needle", [
    ({"attacks": "badnets,bogus"}, "'bogus'"),
    ({"dataset": "cifar100"}, "valid names"),
    ({"seed": "-1"}, "non-negative integer"),
    ({"profile": "papr"}, "valid profiles"),
])
def test_bad_values_fail_naming_them(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        prefetch.reversed_params(**kwargs)


def test_main_prints_json_that_papermill_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert prefetch.main(["--profile", "smoke", "--dataset", "cifar10", "--attacks", "badnets,blended",
                          "--seed", "3,4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"profile": "smoke", "dataset": ["cifar10"], "attacks": ["blended", "badnets"], "seed": [4, 3]}
