"""Reproducibility: the same seed gives the same bits, with one thread or all of them."""
import rbe
import rbe.nn as nn


def train(seed: int, threads: int, steps: int = 5):
    rbe.set_num_threads(threads)
    rbe.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 4))
    opt = rbe.optim.AdamW(model.parameters(), lr=1e-3)
    x = rbe.randn(256, 32)
    y = rbe.randint(0, 4, (256,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().numpy().tobytes() for p in model.parameters()]


def main(quiet: bool = False) -> bool:
    all_threads = rbe.get_num_threads()
    try:
        a = train(42, 1)
        b = train(42, max(2, all_threads))
        c = train(43, 1)
    finally:
        rbe.set_num_threads(all_threads)
    same = a == b
    if not quiet:
        print(f"seed 42, 1 thread vs {max(2, all_threads)} threads: {'bit-identical' if same else 'DIFFERENT'}")
        print(f"seed 42 vs seed 43: {'different, as expected' if a != c else 'identical?!'}")
    return same and a != c


if __name__ == "__main__":
    main()
