"""The README's compare() example: two MLPs trained on scikit-learn's digits from different seeds,
compared layer by layer with linear CKA; writes bench/results/compare-heatmap.png.

    python bench/compare_example.py
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import reprsim.torch as rt  # noqa: E402


def trained_mlp(seed: int, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def main() -> None:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    net_a, net_b = trained_mlp(0, x, y), trained_mlp(1, x, y)
    layers = ["0", "2", "4", "6"]
    loader = torch.utils.data.DataLoader(x, batch_size=256)
    res = rt.compare(net_a, net_b, loader, layers, layers, metric="cka", progress=False)
    print(res.to_pandas().round(3))
    out = os.path.join(os.path.dirname(__file__), "results", "compare-heatmap.png")
    ax = res.plot(annotate=True)
    ax.set_title("linear CKA, two seeds (digits)")
    ax.figure.tight_layout()
    ax.figure.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
