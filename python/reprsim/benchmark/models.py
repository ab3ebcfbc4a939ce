"""Small ReLU networks and linear probes in plain numpy, deterministic given a seed.

The local benchmark trains its models here in seconds: multilayer perceptrons (ReLU hidden layers and a
softmax head) fitted with minibatch Adam on a softmax cross-entropy, and linear probes (L2-regularised
multinomial logistic regression fitted with L-BFGS). Everything runs in float64; the only randomness is
a ``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MLP", "load_digits_data", "probe_accuracy", "train_mlp"]


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The scikit-learn digits (1797 images of 8 × 8 pixels), pixels scaled to [0, 1].

    Returns
    -------
    x : ndarray of shape (1797, 64), float64
    y : ndarray of shape (1797,), int64 labels 0–9

    Raises
    ------
    ImportError
        When scikit-learn is missing, naming the extra that installs it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError(
            'the benchmark needs scikit-learn for its data set; install it with pip install ".[benchmark]" in the '
            'reprsim source folder (or pip install scikit-learn)'
        ) from exc
    data = load_digits()
    return np.asarray(data.data, dtype=np.float64) / 16.0, np.asarray(data.target, dtype=np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class MLP:
    """A ReLU multilayer perceptron: ``weights[i]`` of shape (in, out) and ``biases[i]`` of shape (out,).

    The last layer is the linear head (logits); every earlier layer is followed by a ReLU.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def init(cls, sizes: list[int], rng: np.random.Generator) -> "MLP":
        """He-normal weights, zero biases; ``sizes`` = [inputs, hidden..., outputs]."""
        weights = [rng.standard_normal((a, b)) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])]
        biases = [np.zeros(b) for b in sizes[1:]]
        return cls(weights, biases)

    @property
    def n_hidden(self) -> int:
        return len(self.weights) - 1

    def copy(self) -> "MLP":
        return MLP([w.copy() for w in self.weights], [b.copy() for b in self.biases], dict(self.meta))

    def hidden(self, x: np.ndarray) -> list[np.ndarray]:
        """The post-ReLU activations of every hidden layer, each of shape (n, width)."""
        h = np.asarray(x, dtype=np.float64)
        out = []
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
            out.append(h)
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = self.hidden(x)[-1] if self.n_hidden else np.asarray(x, dtype=np.float64)
        return h @ self.weights[-1] + self.biases[-1]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of samples whose largest logit is the label."""
        return float(np.mean(np.argmax(self.logits(x), axis=1) == y))


def _loss_and_grads(model: MLP, x: np.ndarray, y: np.ndarray, weight_decay: float) -> tuple[float, list, list]:
    acts = [x]
    h = x
    for w, b in zip(model.weights[:-1], model.biases[:-1]):
        h = np.maximum(h @ w + b, 0.0)
        acts.append(h)
    p = _softmax(h @ model.weights[-1] + model.biases[-1])
    n = x.shape[0]
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-300)))
    delta = p
    delta[np.arange(n), y] -= 1.0
    delta /= n
    gw: list[np.ndarray] = [None] * len(model.weights)  # type: ignore[list-item]
    gb: list[np.ndarray] = [None] * len(model.weights)  # type: ignore[list-item]
    for i in range(len(model.weights) - 1, -1, -1):
        gw[i] = acts[i].T @ delta + weight_decay * model.weights[i]
        gb[i] = delta.sum(axis=0)
        if i:
            delta = (delta @ model.weights[i].T) * (acts[i] > 0)
    return loss, gw, gb


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    hidden: tuple[int, ...] = (64, 64, 64, 64),
    seed: int,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    init: MLP | None = None,
) -> MLP:
    """Train a ReLU MLP with minibatch Adam on the softmax cross-entropy.

    Parameters
    ----------
    x, y : training inputs (n, d) and integer labels (n,)
    n_classes : number of outputs of the head
    hidden : widths of the hidden layers (ignored when ``init`` is given)
    seed : seeds the initialisation (of the head, when ``init`` is given) and the minibatch order
    epochs, batch_size, lr, weight_decay : optimisation settings (Adam with β = (0.9, 0.999))
    init : start from a copy of this network's hidden layers with a fresh head (fine-tuning)

    Returns
    -------
    MLP
        The trained network; deterministic given the arguments.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if init is None:
        model = MLP.init([x.shape[1], *hidden, n_classes], rng)
    else:
        model = init.copy()
        width = model.weights[-1].shape[0]
        model.weights[-1] = rng.standard_normal((width, n_classes)) * np.sqrt(1.0 / width)
        model.biases[-1] = np.zeros(n_classes)
    params = model.weights + model.biases
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    n = x.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            _, gw, gb = _loss_and_grads(model, x[idx], y[idx], weight_decay)
            step += 1
            for p, g, mi, vi in zip(params, gw + gb, m, v):
                mi *= b1
                mi += (1 - b1) * g
                vi *= b2
                vi += (1 - b2) * g * g
                p -= lr * (mi / (1 - b1**step)) / (np.sqrt(vi / (1 - b2**step)) + eps)
    return model


def probe_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    l2: float = 1e-3,
    max_iter: int = 300,
) -> float:
    """Test accuracy of a linear probe: L2-regularised multinomial logistic regression.

    The features are centred with the training mean and divided by one scalar (the training RMS), so the
    penalty ``l2 · ‖W‖²_F`` (on the mean loss) means the same for every representation. Fitted by
    L-BFGS (scipy) from zero, hence deterministic.
    """
    from scipy.optimize import minimize

    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    mu = x_train.mean(axis=0)
    scale = np.sqrt(np.mean((x_train - mu) ** 2)) or 1.0
    a = np.hstack([(x_train - mu) / scale, np.ones((x_train.shape[0], 1))])
    t = (x_test - mu) / scale
    n, d = a.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y_train] = 1.0

    def fun(wflat: np.ndarray) -> tuple[float, np.ndarray]:
        w = wflat.reshape(d, n_classes)
        z = a @ w
        z -= z.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(z).sum(axis=1))
        loss = float(np.mean(logsum - (z * onehot).sum(axis=1))) + l2 * float(np.sum(w[:-1] ** 2))
        p = np.exp(z - logsum[:, None])
        g = a.T @ (p - onehot) / n
        g[:-1] += 2 * l2 * w[:-1]
        return loss, g.ravel()

    res = minimize(fun, np.zeros(d * n_classes), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    w = res.x.reshape(d, n_classes)
    pred = np.argmax(t @ w[:-1] + w[-1], axis=1)
    return float(np.mean(pred == np.asarray(y_test)))
