"""Polynomial fit, form 4: mini-batches from a DataLoader over a TensorDataset, Adam."""
import math
import sys

import rbe
from rbe.utils.data import DataLoader, TensorDataset


def main(epochs: int = 60, quiet: bool = False) -> float:
    rbe.manual_seed(0)
    x = rbe.linspace(-math.pi, math.pi, 2000)
    y = rbe.sin(x)
    features = x.unsqueeze(-1).pow(rbe.tensor([1, 2, 3]))
    loader = DataLoader(TensorDataset(features, y), batch_size=100, shuffle=True)
    model = rbe.nn.Linear(3, 1)
    optimizer = rbe.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = rbe.nn.MSELoss()
    for epoch in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb).squeeze(-1), yb)
            loss.backward()
            optimizer.step()
        if not quiet and epoch % 20 == 19:
            print(epoch, loss.item())
    with rbe.no_grad():
        full = loss_fn(model(features).squeeze(-1), y).item()
    if not quiet:
        w = model.weight.detach()[0]
        print(f"Result: y = {model.bias.item()} + {w[0].item()} x + {w[1].item()} x^2 + {w[2].item()} x^3 (mean squared error {full:.5f})")
    return full


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
