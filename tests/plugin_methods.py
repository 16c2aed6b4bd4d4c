"""A third-party method module, as a user would write it outside the project (used with --plugin)."""

import torch

import methods


@methods.register_method("tanh-ste")
class TanhSTE(methods.Method):
    """F(x) = tanh(βx), B = F so B'(x) = β·(1 − tanh²(βx)); β from 1 to 10."""

    schedules = {"beta": (1.0, 10.0)}
    forward_formula, backward_formula = "tanh(βx)", "β(1 − tanh²(βx))"

    def F(self, x):
        return torch.tanh(self.beta * x)

    def B(self, x):
        return torch.tanh(self.beta * x)

    def dB(self, x):
        return self.beta * (1 - torch.tanh(self.beta * x) ** 2)
