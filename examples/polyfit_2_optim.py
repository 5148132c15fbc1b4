"""Polynomial fit, form 2: parameters updated by an optimizer (RMSprop)."""
import math
import sys

import rbe


def main(steps: int = 2000, quiet: bool = False) -> float:
    rbe.manual_seed(0)
    x = rbe.linspace(-math.pi, math.pi, 2000)
    y = rbe.sin(x)
    # powers of x as features: (2000, 3)
    xx = x.unsqueeze(-1).pow(rbe.tensor([1, 2, 3]))
    model = rbe.nn.Sequential(rbe.nn.Linear(3, 1), rbe.nn.Flatten(0, 1))
    loss_fn = rbe.nn.MSELoss(reduction="sum")
    optimizer = rbe.optim.RMSprop(model.parameters(), lr=1e-3)
    for t in range(steps):
        loss = loss_fn(model(xx), y)
        if not quiet and t % 500 == 499:
            print(t, loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lin = model[0]
    if not quiet:
        print(f"Result: y = {lin.bias.item()} + {lin.weight[:, 0].item()} x + {lin.weight[:, 1].item()} x^2 + {lin.weight[:, 2].item()} x^3")
    return loss.item()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
