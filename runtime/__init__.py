"""pullback: a differentiable array compiler."""
