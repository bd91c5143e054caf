"""Presets and config.json: the same answer as the same sizes given by hand; bad input named."""

import json

import pytest

from symmem import Config, ConfigError, build_report
from symmem.cli import main
from symmem.presets import PRESETS, from_hf_config, preset


def test_gpt2_presets_as_nanogpt_are_its_from_pretrained_sizes():
    # nanoGPT's from_pretrained: GPT-2 124M has 124,439,808 parameters (the 1,024-row wpe
    # counted, lm_head tied), biases on.
    config = preset("gpt2").config(B=8, S=1024)
    assert config == Config(B=8, S=1024, D=768, NH=12, V=50257, L=12, bias=True)
    assert build_report("cuda").at(config).param_count == 124_439_808


def test_size_flags_override_a_preset(capsys):
    assert main(["estimate", "--model", "gpt2-medium", "--L", "2", "--B", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_hand = Config(B=1, S=1024, D=1024, NH=16, V=50257, L=2, bias=True)
    assert data["config"] == by_hand.as_dict()
    assert data["totals"] == dict(build_report("cuda").at(by_hand).totals)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "gpt-2"], "unknown preset 'gpt-2' (did you mean gpt2?)"),
        (["--model", "gpt2", "--hf-config", "x.json"], "give --model or --hf-config, not both"),
        (["--hf-config", "/no/such/config.json"], "/no/such/config.json: no such file"),
    ],
)
def test_bad_preset_or_file_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_config_json_of_an_unmodelled_architecture_names_it_and_the_modelled_ones(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    with pytest.raises(ConfigError, match="model_type 'bert' is not modelled \\(modelled: gpt2"):
        from_hf_config(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_hf_config(path)


def test_every_preset_names_where_its_sizes_come_from():
    assert all(p.source for p in PRESETS.values())
    assert all(p.architectures for p in PRESETS.values())
