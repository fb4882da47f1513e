"""relutrap: how often, and why, SGD-type methods fail to train ReLU networks.

See :func:`relutrap.study` to run a study from Python, and ``relutrap --help`` for the
command line.
"""

from relutrap.api import rate_fits, study, summary
from relutrap.experiment import ExperimentSpec, SpecError, load_spec, parse_spec

__all__ = [
    "ExperimentSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "rate_fits",
    "study",
    "summary",
]
__version__ = "0.1.0"
