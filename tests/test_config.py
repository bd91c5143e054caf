import pytest
import sympy

from symmem import Config, ConfigError, SymmemError
from symmem.symbols import LATEX_NAMES, NH, SYMBOLS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"B": 0}, "B must be positive, got 0"),
        ({"S": -3}, "S must be positive, got -3"),
        ({"D": 2.5}, "D must be a whole number, got 2.5"),
        ({"L": True}, "L must be a whole number, got True"),
        ({"D": 10, "NH": 3}, "D=10 is not divisible by NH=3"),
        ({"amp": 1}, "amp must be True or False, got 1"),
    ],
)
def test_bad_config_is_a_config_error(changes, message):
    base = {"B": 1, "S": 2, "D": 12, "NH": 3, "V": 5, "L": 1}
    with pytest.raises(ConfigError) as info:
        Config(**(base | changes))
    assert str(info.value) == message
    assert isinstance(info.value, SymmemError)


def test_partial_config_stays_symbolic_and_says_what_is_missing():
    config = Config(D=12, NH=3)
    assert config.missing == ("B", "S", "V", "L")
    with pytest.raises(ConfigError, match="missing sizes: B, S, V, L"):
        config.require_complete()


def test_notebook_config_is_calc_all():
    assert Config.notebook().as_dict() == {
        "model": "nanogpt",
        "B": 24,
        "S": 1024,
        "D": 384,
        "NH": 4,
        "V": 8192,
        "L": 4,
        "amp": True,
        "dropout": True,
        "bias": False,
    }


def test_symbols_parse_and_print():
    expr = sympy.parse_expr("B*S*NH", local_dict=dict(SYMBOLS))
    assert expr == SYMBOLS["B"] * SYMBOLS["S"] * NH
    assert sympy.latex(NH, symbol_names=dict(LATEX_NAMES)) == r"n_{\mathrm{head}}"
