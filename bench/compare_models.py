"""Layer × layer CKA of two randomly initialised copies of a wide model, by reprsim.torch.compare and
by the alternatives, with time and peak memory.

    python bench/compare_models.py [--quick] [--only resnet18,bert,vit]

Models (built from configurations with random weights; nothing is downloaded):
- resnet18: a ResNet-18-like convolutional network (BasicBlocks [2, 2, 2, 2], 3×3 stem without
  pooling), 500 images of 32 × 32 pixels; layer1-layer4 flattened (65 536, 32 768, 16 384, 8 192
  features).
- bert: BERT-small (4 layers, hidden 128, 2 heads; transformers' BertConfig), 500 sequences of 32
  random tokens; each layer's output flattened (4 096 features).
- vit: ViT-tiny (12 blocks, hidden 192, 3 heads, 32 px images in 4 × 4 patches: 65 tokens; transformers'
  ViTConfig), 500 images; each block's output flattened (12 480 features).

Candidates, each in a fresh process (peak RSS above the process's size before the call):
- forward passes alone (both models over the loader, batches of 100);
- reprsim.torch.compare(metric="cka"), full-data linear CKA, streamed over the batches;
- pytorch-cka (compute_cka) and torch-cka (CKA.compare): their minibatch estimator (debiased HSIC
  summed over minibatches) with one batch of 500, which is the full-data debiased CKA;
- stored activations, then reprsim.pairwise (Gram route), and a numpy Gram route (each layer's
  centred Gram once, then an inner product per pair), activations collection included;
- the forward passes alone and reprsim.torch.compare again with batches of 1 (the cost of an update
  whatever its size: rows are buffered before they reach the statistics).
A candidate that refuses (e.g. not enough memory for its statistics) or fails is recorded as such.
Results: bench/results/compare-models-<date>-<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
N_SAMPLES = 500
BATCH = 100


def _status_mb(name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------
# Models


def _resnet18(seed: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(out)) + self.skip(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            chans, cin = [64, 128, 256, 512], 64
            for i, c in enumerate(chans):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(Block(cin, c, stride), Block(c, c, 1)))
                cin = c
            self.head = nn.Linear(512, 10)

        def forward(self, x: Any) -> Any:
            x = self.stem(x)
            for i in range(4):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.head(x.mean(dim=(2, 3)))

    return Net().eval()


def _bert(seed: int) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=64)
    return BertModel(cfg).eval()


def _vit(seed: int) -> Any:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                    intermediate_size=768)
    return ViTModel(cfg, add_pooling_layer=False).eval()


def setup(model: str, quick: bool) -> dict[str, Any]:
    """Two models (seeds 0 and 1), the inputs, the layer names and a loader factory."""
    import torch

    n = 40 if quick else N_SAMPLES
    g = torch.Generator().manual_seed(123)
    if model == "resnet18":
        a, b = _resnet18(0), _resnet18(1)
        inputs = torch.randn(n, 3, 32, 32, generator=g)
        layers = ["layer1", "layer2", "layer3", "layer4"]
    elif model == "bert":
        a, b = _bert(0), _bert(1)
        inputs = torch.randint(0, 1000, (n, 32), generator=g)
        layers = [f"encoder.layer.{i}" for i in range(4)]
    elif model == "vit":
        a, b = _vit(0), _vit(1)
        inputs = torch.randn(n, 3, 32, 32, generator=g)
        # The blocks' module names differ between transformers versions (encoder.layer.i, layers.i).
        layers = [name for name, _ in a.named_modules() if re.fullmatch(r"(encoder\.)?layers?\.\d+", name)]
    else:
        raise ValueError(model)

    def loader(batch: int = BATCH) -> list[Any]:
        return [inputs[i : i + batch] for i in range(0, n, batch)]

    def torch_loader(batch: int) -> Any:
        # (inputs, labels) batches, the form the peers' loops unpack.
        data = torch.utils.data.TensorDataset(inputs, torch.zeros(n, dtype=torch.long))
        return torch.utils.data.DataLoader(data, batch_size=batch)

    return {"a": a, "b": b, "inputs": inputs, "layers": layers, "loader": loader, "torch_loader": torch_loader,
            "n": n}


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def collect(models: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every named layer's output, flattened to (n, features) float32, for both models."""
    import torch

    acts: dict[str, dict[str, list[Any]]] = {"a": {}, "b": {}}
    handles = []
    for side in ("a", "b"):
        mods = dict(models[side].named_modules())
        for name in models["layers"]:
            acts[side][name] = []

            def hook(_m: Any, _i: Any, out: Any, side: str = side, name: str = name) -> None:
                acts[side][name].append(_first(out).detach().reshape(_first(out).shape[0], -1))

            handles.append(mods[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in models["loader"]():
                models["a"](batch)
                models["b"](batch)
    finally:
        for h in handles:
            h.remove()
    out = tuple([torch.cat(acts[side][n]).numpy() for n in models["layers"]] for side in ("a", "b"))
    return out  # type: ignore[return-value]


def _numpy_gram_route(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    def gram(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=0)
        return a @ a.T

    kx, ky = [gram(a) for a in xs], [gram(b) for b in ys]
    nx, ny = [np.linalg.norm(k) for k in kx], [np.linalg.norm(k) for k in ky]
    return np.array([[np.vdot(k, l) / (s * t) for l, t in zip(ky, ny)] for k, s in zip(kx, nx)])


def run_candidate(model: str, candidate: str, quick: bool, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    m = setup(model, quick)
    gc.collect()
    base = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    value: Any = None
    if candidate in ("forward passes alone", "forward passes alone, batches of 1"):
        with torch.no_grad():
            for batch in m["loader"](1 if candidate.endswith("of 1") else BATCH):
                m["a"](batch)
                m["b"](batch)
    elif candidate in ("reprsim.torch.compare", "reprsim.torch.compare, batches of 1"):
        import reprsim.torch as rt

        batches = m["loader"](1 if candidate.endswith("of 1") else BATCH)
        res = rt.compare(m["a"], m["b"], batches, m["layers"], m["layers"], metric="cka", pool="flatten",
                         progress=False)
        value = np.asarray(res.matrix if hasattr(res, "matrix") else res.values)
    elif candidate == "pytorch-cka (one batch)":
        import cka

        value = cka.compute_cka(m["a"], m["b"], m["torch_loader"](m["n"]), layers=m["layers"], device="cpu",
                                progress=False)[0].numpy()
    elif candidate == "torch-cka (one batch)":
        from torch_cka import CKA

        c = CKA(m["a"], m["b"], model1_layers=m["layers"], model2_layers=m["layers"], device="cpu")
        c.compare(m["torch_loader"](m["n"]))
        value = c.export()["CKA"].numpy()
    elif candidate == "stored activations + reprsim.pairwise":
        import reprsim

        xs, ys = collect(m)
        value = np.asarray(reprsim.pairwise(xs, ys, metric="cka"))
    elif candidate == "stored activations + numpy Gram route":
        xs, ys = collect(m)
        value = _numpy_gram_route(xs, ys)
    else:
        raise ValueError(candidate)
    elapsed = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    return {"time_s": elapsed, "rss_before_mb": base, "peak_rss_mb": peak,
            "peak_above_start_mb": None if (peak is None or base is None) else peak - base,
            "value": None if value is None else np.asarray(value, dtype=np.float64).tolist()}


CANDIDATES = ["forward passes alone", "reprsim.torch.compare", "pytorch-cka (one batch)", "torch-cka (one batch)",
              "stored activations + reprsim.pairwise", "stored activations + numpy Gram route",
              "forward passes alone, batches of 1", "reprsim.torch.compare, batches of 1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="resnet18,bert,vit")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--probe", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        try:
            print(json.dumps(run_candidate(args.probe[0], args.probe[1], args.quick, args.threads)))
        except Exception as exc:  # a refusal or failure is a result
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:400]}))
        return 0
    sys.path.insert(0, str(HERE))
    from run import load_average, machine_tag

    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    res: dict[str, Any] = {"date": date, "machine": machine_tag(), "threads": args.threads, "quick": args.quick,
                           "load_start": load_average(), "models": {}}
    for model in [s.strip() for s in args.only.split(",") if s.strip()]:
        res["models"][model] = {}
        for cand in CANDIDATES:
            cmd = [sys.executable, __file__, "--probe", model, cand, "--threads", str(args.threads)]
            if args.quick:
                cmd.append("--quick")
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                rec = json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines()
                                                                     or ["no output"])[-1][:400]}
            except subprocess.TimeoutExpired:
                rec = {"error": f"did not finish within {args.timeout:g} s"}
            res["models"][model][cand] = rec
            shown = rec.get("error") or f"{rec['time_s']:.2f} s, peak +{rec.get('peak_above_start_mb') or 0:.0f} MB"
            print(f"{model:9s} {cand:42s} {shown}", flush=True)
    res["load_end"] = load_average()
    stem = f"{'quick-' if args.quick else ''}compare-models-{date}-{res['machine']}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"# Layer × layer CKA of wide models — {date} — {res['machine']}", "",
             f"{args.threads} thread(s), n = {40 if args.quick else N_SAMPLES} samples; load average at the start "
             f"{res['load_start']}, at the end {res['load_end']}. Peak: RSS high-water mark above the process's "
             "size before the call (models and inputs built before it).", "",
             "| model | candidate | time | peak memory above start | result |", "|---|---|---|---|---|"]
    for model, cands in res["models"].items():
        for cand, rec in cands.items():
            if "error" in rec:
                lines.append(f"| {model} | {cand} | — | — | {rec['error']} |")
            else:
                peak = rec.get("peak_above_start_mb")
                lines.append(f"| {model} | {cand} | {rec['time_s']:.2f} s | "
                             f"{'—' if peak is None else f'{peak:.0f} MB'} | "
                             f"{'' if rec.get('value') is None else 'matrix'} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / stem}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
