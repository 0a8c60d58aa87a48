"""Every DSL function as a test case: (function of its inputs, number of inputs, domain).

Shared by the compiled first-order tests and the second-order (Hessian) tests.
"""

import numpy as np

import pullback as pb

POS = (0.2, 2.0)       # domain of log, sqrt, ...
UNIT = (-0.9, 0.9)     # arcsin, arccos
ANY = (-2.0, 2.0)

# name -> (function of the inputs, number of inputs, domain)
UNARY = {
    name: (getattr(pb, name), 1, dom) for name, dom in [
        ("exp", ANY), ("log", POS), ("log1p", POS), ("expm1", ANY), ("sqrt", POS),
        ("sin", ANY), ("cos", ANY), ("tan", UNIT), ("tanh", ANY), ("sinh", ANY),
        ("cosh", ANY), ("arcsin", UNIT), ("arccos", UNIT), ("arctan", ANY),
        ("abs", POS), ("sign", POS), ("square", ANY), ("negative", ANY),
    ]
}
BINARY = {
    name: (getattr(pb, name), 2, dom) for name, dom in [
        ("add", ANY), ("subtract", ANY), ("multiply", ANY), ("divide", POS),
        ("power", POS), ("maximum", ANY), ("minimum", ANY), ("arctan2", POS),
    ]
}
OTHER = {
    "sum_axis": (lambda x: pb.sum(x, axis=-1, keepdims=True), 1, ANY),
    "prod": (lambda x: pb.prod(x, axis=0), 1, POS),
    "max": (lambda x: pb.max(x, axis=0), 1, ANY),
    "min": (lambda x: pb.min(x), 1, ANY),
    "mean": (lambda x: pb.mean(x, axis=0), 1, ANY),
    "logsumexp": (lambda x: pb.logsumexp(x, axis=-1), 1, ANY),
    "softmax": (lambda x: pb.softmax(x, axis=-1), 1, ANY),
    "cumsum": (lambda x: pb.cumsum(x), 1, ANY),
    "clip": (lambda x: pb.clip(x, -0.5, 0.7), 1, ANY),
    "where": (lambda x, y: pb.where(x > y, x * y, x - y), 2, ANY),
    "transpose": (lambda x: pb.transpose(x), 1, ANY),
    "reshape": (lambda x: pb.reshape(x, (-1,)), 1, ANY),
    "broadcast": (lambda x: pb.broadcast_to(x, (2, *np.shape(x))), 1, ANY),
    "stack": (lambda x, y: pb.stack([x, x * y], axis=0), 2, ANY),
    "slice": (lambda x: pb.reshape(x, (-1,))[::-2], 1, ANY),
    "gather": (lambda x: pb.reshape(x, (-1,))[np.array([0, -1, 0])], 1, ANY),
    "pow3": (lambda x: x ** 3, 1, ANY),
    "matmul": (lambda x: x @ pb.transpose(x) * 0.5, 1, ANY),
    "concatenate": (lambda x, y: pb.concatenate([x, x * y], axis=-1), 2, ANY),
    "rpow": (lambda x: 2.0 ** x, 1, ANY),
}
SHAPES = [(), (1,), (3,), (2, 3), (1, 3)]
ALL = {**UNARY, **BINARY, **OTHER}
NEEDS_AXIS = {"prod", "max", "mean", "stack", "matmul", "concatenate", "logsumexp", "softmax",
              "sum_axis"}
