"""Random DSL programs checked against numpy, finite differences and another device.

`programs` generates a program (Python source over the DSL) from a stream of choices,
evaluating every step with numpy as it goes so that each op is applied where it is
smooth and defined; `checks` compiles it and compares value, gradient, forward-mode
derivative and Hessian with independent references.
"""

from benchmarks.fuzzing.checks import Failure, Outcome, check_program
from benchmarks.fuzzing.programs import (
    Chooser,
    Program,
    RandomChooser,
    generate,
    numpy_namespace,
)

__all__ = ["Chooser", "Failure", "Outcome", "Program", "RandomChooser", "check_program",
           "generate", "numpy_namespace"]
