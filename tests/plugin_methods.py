import torch
import methods


@methods.register_method("tanh-ste")
class TanhSTE(methods.Method):
    """F(x) = tanh(βx), B'(x) = β·(1 − tanh²(βx)); β > 0 from 1 to 10 over training."""

    schedules = {"beta": (1.0, 10.0)}
    bounds = {"beta": methods.positive()}
    formulas = ("tanh(βx)", "β(1 − tanh²(βx))", "—")

    def F(self, x):
        return torch.tanh(self.tensors.beta * x)

    def dB(self, x):
        return self.tensors.beta * (1 - torch.tanh(self.tensors.beta * x) ** 2)
