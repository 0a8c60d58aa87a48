"""Central finite differences: the independent reference for derivatives in these tests."""

import numpy as np


def central_difference(f, x, h=1e-6):
    """d f / d x of a scalar function of one array, one central difference per element."""
    g = np.zeros(np.shape(x))
    for i in np.ndindex(np.shape(x)):
        e = np.zeros(np.shape(x))
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g
