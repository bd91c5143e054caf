"""The architecture as a value: the registry, configs checked against it, reports built for it."""

import pytest

from symmem import Config, ConfigError, build_report
from symmem.model import MODELS, get_model


def test_registry_names_every_model_and_suggests_the_closest():
    assert get_model("nanogpt") is MODELS["nanogpt"]
    with pytest.raises(ConfigError, match="did you mean nanogpt"):
        get_model("nanogtp")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"NKV": 2}, "--NKV does not apply to nanogpt"),
        ({"F": 96}, "--F does not apply to nanogpt"),
        ({"SMAX": 64}, "--SMAX does not apply to nanogpt"),
        ({"tied": False}, "--no-tied does not apply to nanogpt"),
        ({"model": "gpt-5"}, "unknown architecture 'gpt-5'"),
    ],
)
def test_a_config_sets_only_what_its_architecture_has(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(B=1, S=8, D=24, NH=3, V=10, L=1, **changes)


def test_a_report_refuses_a_config_of_another_architecture():
    report = build_report("cpu")
    assert report.model is MODELS["nanogpt"]
    other = next((m for m in MODELS if m != "nanogpt"), None)
    if other is None:
        pytest.skip("one architecture only")
    sizes = {name: 8 for name in MODELS[other].size_names}
    with pytest.raises(ConfigError, match="the config is for"):
        report.at(Config(model=other, **sizes))


def test_the_evaluator_takes_the_model_sizes_in_order():
    report = build_report("cpu")
    sizes = (2, 40, 64, 4, 101, 1)
    config = Config(**dict(zip(report.model.size_names, sizes, strict=True)))
    assert report.compiled.totals(*sizes) == report.compiled(config)
    with pytest.raises(ConfigError, match="nanogpt takes 6 sizes"):
        report.compiled.totals(2, 40, 64)
