"""reprsim.torch on real architectures, built from configs with random weights (nothing is downloaded).

Thirteen Hugging Face transformers models (the ``models`` extra): BERT, GPT-2, a Llama decoder, the T5 encoder,
ViT, the CLIP text and vision towers, the Whisper encoder, ResNet, MobileNetV2, ConvNeXt, EfficientNet and Swin.
Each is tiny (two blocks, widths of 8–32, 8 tokens or 32 × 32 images) and float64, so that a model compared
with itself gives a diagonal of 1 to 1e-12: both sides see bit-identical activations, and the float64
cross-products of the accumulators agree to rounding (float32 activations would give products rounded at
~1e-7). For each: the blocks found without naming layers, every pooling strategy of its output kind, and
no hook left behind, also after an exception in the middle of a forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import reprsim.torch as rt  # noqa: E402

transformers.logging.set_verbosity_error()

TEXT, VISION_TOKENS, MAPS = "text", "vision tokens", "maps"
BATCH, STEPS, BATCHES = 6, 8, 3
SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
IDS = dict(vocab_size=50, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _t5(t):
    return t.T5EncoderModel(t.T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, **IDS))


def _whisper(t):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(t.WhisperConfig(num_mel_bins=8, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                                          encoder_ffn_dim=32, max_source_positions=STEPS, decoder_start_token_id=1,
                                          **IDS))


def _conv_net_weights(model, batch):
    # Some of these configs initialise convolutions and BatchNorm scales with N(0, 0.02²), and BatchNorm in
    # eval mode keeps its initial running variance of 1: activations shrink ~1e4-fold per block, to 1e-64
    # by EfficientNet's last block (trained weights do not). torch's default initialisation and running
    # statistics from one batch (as training would leave them) keep them of order one.
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.modules.batchnorm._BatchNorm)):
            m.reset_parameters()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average: the running statistics become the batch's
    model.train()
    with torch.no_grad():
        model(**batch)
    return model


# name: (builder, output kind, class of the blocks found without naming layers)
ARCHITECTURES = {
    "bert": (lambda t: t.BertModel(t.BertConfig(max_position_embeddings=16, **SMALL, **IDS)), TEXT, "BertLayer"),
    "gpt2": (lambda t: t.GPT2Model(t.GPT2Config(n_positions=16, n_embd=16, n_layer=2, n_head=2, **IDS)), TEXT,
             "GPT2Block"),
    "llama": (lambda t: t.LlamaModel(t.LlamaConfig(num_key_value_heads=1, max_position_embeddings=16, **SMALL,
                                                   **IDS)), TEXT, "LlamaDecoderLayer"),
    "t5-encoder": (_t5, TEXT, "T5Block"),
    "clip-text": (lambda t: t.CLIPTextModel(t.CLIPTextConfig(max_position_embeddings=16, **SMALL, **IDS)), TEXT,
                  "CLIPEncoderLayer"),
    "vit": (lambda t: t.ViTModel(t.ViTConfig(image_size=32, patch_size=8, **SMALL)), VISION_TOKENS, "ViTLayer"),
    "clip-vision": (lambda t: t.CLIPVisionModel(t.CLIPVisionConfig(image_size=32, patch_size=8, **SMALL)),
                    VISION_TOKENS, "CLIPEncoderLayer"),
    "whisper-encoder": (_whisper, VISION_TOKENS, "WhisperEncoderLayer"),
    "swin": (lambda t: t.SwinModel(t.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1],
                                                num_heads=[1, 1], window_size=2)), VISION_TOKENS, "SwinStage"),
    "resnet": (lambda t: t.ResNetModel(t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                      layer_type="basic")), MAPS, "ResNetStage"),
    "mobilenet-v2": (lambda t: t.MobileNetV2Model(t.MobileNetV2Config(image_size=32, depth_multiplier=0.1,
                                                                      min_depth=4, expand_ratio=2,
                                                                      finegrained_output=False)),
                     MAPS, "MobileNetV2InvertedResidual"),
    "convnext": (lambda t: t.ConvNextModel(t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                                            image_size=32)), MAPS, "ConvNextStage"),
    "efficientnet": (lambda t: t.EfficientNetModel(t.EfficientNetConfig(image_size=32, width_coefficient=0.1,
                                                                        depth_coefficient=0.1, hidden_dim=128,
                                                                        expand_ratios=[1, 2, 2, 2, 2, 2, 2])),
                     MAPS, "EfficientNetBlock"),
}

STRATEGIES = {
    TEXT: ["mean", "last", "first", "max", "tokens", "flatten", lambda out, batch: out[:, 1:3].mean(1)],
    VISION_TOKENS: ["mean", "last", "first", "max", "tokens", "flatten"],
    MAPS: ["gap", "flatten", ("adaptive", 2, 2), "spatial", ("spatial", 40)],
}


def _batches(name, kind):
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(BATCHES):
        if kind == TEXT:
            ids = torch.randint(3, 50, (BATCH, STEPS), generator=g)
            mask = torch.ones(BATCH, STEPS, dtype=torch.long)
            lengths = torch.randint(2, STEPS + 1, (BATCH,), generator=g)
            for i, n in enumerate(lengths.tolist()):
                if name in ("gpt2", "llama"):  # decoders: left padding
                    mask[i, :STEPS - n] = 0
                else:
                    mask[i, n:] = 0
            out.append({"input_ids": ids, "attention_mask": mask})
        elif name == "whisper-encoder":
            out.append({"input_features": torch.randn(BATCH, 8, 2 * STEPS, generator=g, dtype=torch.float64)})
        else:
            out.append({"pixel_values": torch.randn(BATCH, 3, 32, 32, generator=g, dtype=torch.float64),
                        "labels": torch.zeros(BATCH)})
    return out


_CACHE: dict[str, torch.nn.Module] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Models this small gain nothing from intra-op threads, and float64 depthwise convolutions (one call per
    # group) run ~10x slower with two threads on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name):
    if name not in _CACHE:
        torch.manual_seed(0)
        model = ARCHITECTURES[name][0](transformers).to(torch.float64)
        if ARCHITECTURES[name][1] == MAPS:
            g = torch.Generator().manual_seed(1)
            _conv_net_weights(model, {"pixel_values": torch.randn(16, 3, 32, 32, generator=g, dtype=torch.float64)})
        _CACHE[name] = model.eval()
    return _CACHE[name]


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _strategy_id(s):
    return s if isinstance(s, str) else ("callable" if callable(s) else "-".join(map(str, s)))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_blocks_are_found_and_a_model_against_itself_gives_one(name):
    model = _model(name)
    kind, block_class = ARCHITECTURES[name][1:]
    batches = _batches(name, kind)
    found = rt.layers(model, batches[0])
    assert len(found) >= 2 and {i.type for i in found} == {block_class}, str(found)
    assert all(i.shape is not None and i.shape[0] == BATCH and i.calls == 1 for i in found), str(found)
    pool = "gap" if kind == MAPS else "mean"
    res = rt.compare(model, model, batches, pool=pool, names=(name, name), progress=False)
    assert res.layers_a == found.names and res.n_samples == BATCH * BATCHES
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(res.values)) and np.all(res.values <= 1 + 1e-12)
    assert _no_hooks(model)
    # The same layer of the same model is the identity by definition; a copy of the model runs separately
    # and its diagonal is computed (float64 models: 1 to 1e-12 as well).
    import copy

    twin = rt.compare(model, copy.deepcopy(model), batches, pool=pool, progress=False)
    np.testing.assert_allclose(np.diag(twin.values), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(twin.values, res.values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_strategy_of_the_output_kind_runs(name):
    model = _model(name)
    kind = ARCHITECTURES[name][1]
    batches = _batches(name, kind)
    blocks = rt.layers(model).names
    for strategy in STRATEGIES[kind]:
        # Positions as samples need one grid: the last block against itself.
        layers = blocks[-1:] if _strategy_id(strategy).startswith("spatial") else blocks
        res = rt.compare(model, model, batches, layers, layers, pool=strategy, progress=False)
        np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=0, atol=1e-12, err_msg=_strategy_id(strategy))
        if strategy == "tokens" and kind == TEXT:
            assert res.n_samples == sum(int(b["attention_mask"].sum()) for b in batches)
        if strategy == ("spatial", 40):
            assert res.n_samples <= 40 * BATCHES
    assert _no_hooks(model)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_hooks_are_removed_after_an_exception_mid_forward(name):
    model = _model(name)
    kind = ARCHITECTURES[name][1]
    blocks = rt.layers(model).names
    last = dict(model.named_modules())[blocks[-1]]

    def fail(module, inputs, output):
        raise RuntimeError("failure inside the forward pass")

    injected = last.register_forward_hook(fail)  # runs after reprsim's hooks on the earlier blocks
    try:
        with pytest.raises(RuntimeError, match="failure inside the forward pass"):
            rt.compare(model, model, _batches(name, kind), pool="gap" if kind == MAPS else "mean", progress=False)
        with pytest.raises(RuntimeError, match="failure inside the forward pass"):
            rt.layers(model, _batches(name, kind)[0], kind="all")
    finally:
        injected.remove()
    assert _no_hooks(model) and not model.training


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_float32_models_give_one_on_the_cpu_path(name):
    # A model against a copy of itself in float32: identical activations on both sides. Kept as moments, the
    # batches are centred and multiplied in float64 (1 to 1e-12); kept as rows (few samples, wide layers) the
    # value is the in-memory one, whose products run in float32 as reprsim.pairwise's do (1 to ~1e-7). (On
    # a GPU, CKA's products run in the input dtype: float32 gives ~1e-7 there, float64 models 1e-12.)
    import copy

    model = copy.deepcopy(_model(name)).float()
    kind = ARCHITECTURES[name][1]
    batches = [{k: v.float() if v.is_floating_point() else v for k, v in b.items()} for b in _batches(name, kind)]
    pool = "gap" if kind == MAPS else "tokens"
    res = rt.compare(model, copy.deepcopy(model), batches, pool=pool, progress=False)
    np.testing.assert_allclose(np.diag(res.values), 1.0, rtol=0, atol=1e-6)
    res = rt.compare(model, model, batches, pool=pool, progress=False)
    np.testing.assert_array_equal(np.diag(res.values), 1.0)
