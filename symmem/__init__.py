"""symmem: symbolic, byte-exact formulas for the memory of training nanoGPT with PyTorch.

>>> from symmem import Config, build_report
>>> report = build_report("cpu")
>>> report.at(Config(B=2, S=40, D=64, NH=4, V=101, L=1)).totals["activations"]
372160
"""

from symmem.config import Config
from symmem.errors import (
    BudgetError,
    ConfigError,
    KernelError,
    MeasurementError,
    OutputError,
    SymmemError,
)
from symmem.report import CATEGORIES, TOTALS, Estimate, Report, Term, build_report
from symmem.symbols import AMP, BIAS, DROPOUT, NH, SYMBOLS, B, D, L, S, V

__version__ = "0.1.0"

__all__ = [
    "AMP",
    "BIAS",
    "CATEGORIES",
    "DROPOUT",
    "NH",
    "SYMBOLS",
    "TOTALS",
    "B",
    "BudgetError",
    "Config",
    "ConfigError",
    "D",
    "Estimate",
    "KernelError",
    "L",
    "MeasurementError",
    "OutputError",
    "Report",
    "S",
    "SymmemError",
    "Term",
    "V",
    "__version__",
    "build_report",
]
