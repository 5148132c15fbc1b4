"""Polynomial fit, form 3: a custom nn.Module trained with SGD."""
import math
import sys

import rbe


class Polynomial3(rbe.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = rbe.nn.Parameter(rbe.randn(()))
        self.b = rbe.nn.Parameter(rbe.randn(()))
        self.c = rbe.nn.Parameter(rbe.randn(()))
        self.d = rbe.nn.Parameter(rbe.randn(()))

    def forward(self, x):
        return self.a + self.b * x + self.c * x**2 + self.d * x**3

    def string(self):
        return f"y = {self.a.item()} + {self.b.item()} x + {self.c.item()} x^2 + {self.d.item()} x^3"


def main(steps: int = 2000, quiet: bool = False) -> float:
    rbe.manual_seed(0)
    x = rbe.linspace(-math.pi, math.pi, 2000)
    y = rbe.sin(x)
    model = Polynomial3()
    criterion = rbe.nn.MSELoss(reduction="sum")
    optimizer = rbe.optim.SGD(model.parameters(), lr=1e-6)
    for t in range(steps):
        loss = criterion(model(x), y)
        if not quiet and t % 500 == 499:
            print(t, loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if not quiet:
        print(f"Result: {model.string()}")
    return loss.item()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
