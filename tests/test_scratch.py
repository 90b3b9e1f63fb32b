"""The from-scratch NumPy CNN: every layer, the optimisers and a whole training step against PyTorch in float64."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from fakescope.models.ela_cnn import ELACNN
from fakescope.models.scratch import backend
from fakescope.models.scratch.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
)
from fakescope.models.scratch.losses import softmax_cross_entropy
from fakescope.models.scratch.module import ScratchCNN
from fakescope.models.scratch.network import build_ela_cnn, train_step
from fakescope.models.scratch.optim import SGD, Adam, ExponentialDecay, clip_grad_norm

RTOL, ATOL = 1e-4, 1e-10


def close(a, b) -> None:
    a, b = (v.detach().numpy() if isinstance(v, torch.Tensor) else v for v in (a, b))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def run_both(layer, module: nn.Module, x: np.ndarray, training: bool = True, seed: int = 1):
    """Forward and backward of a scratch layer and its torch twin (same arrays); returns both sides' results."""
    arrays = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
              for k, v in layer.init(np.random.default_rng(seed), np.float64).items()}
    for k, v in arrays.items():
        if v.dtype.kind == "f":
            arrays[k] = v + np.random.default_rng(seed + 1).normal(0, 0.3, v.shape)  # not the trivial init
    module = module.double().train(training)
    with torch.no_grad():
        for k, v in arrays.items():
            getattr(module, k).copy_(torch.from_numpy(v))
    y, cache = layer.forward(x, arrays, training)
    dy = np.random.default_rng(seed + 2).normal(size=y.shape)
    dx, grads = layer.backward(dy, cache, arrays)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = module(xt)
    yt.backward(torch.from_numpy(dy))
    return (y, dx, grads, arrays), (yt, xt.grad, module)


def compare(layer, module, x, training=True) -> None:
    (y, dx, grads, arrays), (yt, dxt, module) = run_both(layer, module, x, training)
    close(y, yt)
    close(dx, dxt)
    for name in layer.param_names:
        close(grads[name], getattr(module, name).grad)
    for name in layer.buffer_names:
        close(arrays[name], getattr(module, name))


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 2)])
def test_conv2d_matches_torch(stride: int, padding: int) -> None:
    compare(Conv2D(3, 5, 3, stride, padding), nn.Conv2d(3, 5, 3, stride, padding), rand(2, 3, 9, 8))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch_in_train_and_eval(training: bool) -> None:
    compare(BatchNorm2D(4), nn.BatchNorm2d(4), rand(3, 4, 5, 6) * 2 + 1, training)


def test_batchnorm_running_statistics_follow_torch_over_steps() -> None:
    layer, module = BatchNorm2D(3), nn.BatchNorm2d(3).double()
    arrays = layer.init(np.random.default_rng(0), np.float64)
    for step in range(3):
        x = rand(4, 3, 2, 2, seed=step) * (step + 1) + step
        layer.forward(x, arrays, True)
        module(torch.from_numpy(x))
    close(arrays["running_mean"], module.running_mean)
    close(arrays["running_var"], module.running_var)
    assert int(arrays["num_batches_tracked"]) == int(module.num_batches_tracked) == 3


@pytest.mark.parametrize("layer,module,shape", [
    (ReLU(), nn.ReLU(), (2, 3, 4, 4)),
    (MaxPool2D(2), nn.MaxPool2d(2), (2, 3, 7, 6)),  # odd side: floor mode drops the last row
    (MaxPool2D(3, 2), nn.MaxPool2d(3, 2), (1, 2, 9, 9)),  # overlapping windows
    (Flatten(), nn.Flatten(), (2, 3, 4, 5)),
    (Dense(7, 4), nn.Linear(7, 4), (5, 7)),
])
def test_layer_matches_torch(layer, module, shape) -> None:
    compare(layer, module, rand(*shape))


def test_maxpool_gradient_goes_to_first_maximum_on_ties() -> None:
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = 1.0  # second window has a unique max; first window is all ties
    compare(MaxPool2D(2), nn.MaxPool2d(2), x)


def test_dropout_scales_kept_values_and_routes_gradient_through_mask() -> None:
    layer = Dropout(0.5, seed=3)
    x = rand(200, 50)
    y, mask = layer.forward(x, {}, True)
    keep = mask > 0
    assert 0.45 < keep.mean() < 0.55
    close(y, x * keep / 0.5)  # torch's formula: input * bernoulli mask / (1 - p)
    dy = rand(200, 50, seed=1)
    dx, _ = layer.backward(dy, mask, {})
    close(dx, dy * keep / 0.5)
    y_eval, _ = layer.forward(x, {}, False)
    assert y_eval is x


def test_softmax_cross_entropy_matches_torch() -> None:
    logits, labels = rand(6, 3) * 4, np.array([0, 2, 1, 1, 0, 2])
    loss, grad = softmax_cross_entropy(logits, labels)
    lt = torch.from_numpy(logits).requires_grad_(True)
    ref = nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    ref.backward()
    close(loss, ref)
    close(grad, lt.grad)


def _optimiser_pair(kind: str, params: dict[str, np.ndarray]):
    tparams = [torch.from_numpy(v.copy()).requires_grad_(True) for v in params.values()]
    if kind == "adam":
        return Adam(params, lr=0.01, weight_decay=0.1), torch.optim.Adam(tparams, lr=0.01, weight_decay=0.1), tparams
    return (SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
            torch.optim.SGD(tparams, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True), tparams)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimisers_with_clipping_and_decay_match_torch(kind: str) -> None:
    params = {"a": rand(4, 3), "b": rand(5, seed=1)}
    opt, topt, tparams = _optimiser_pair(kind, params)
    decay, tdecay = ExponentialDecay(opt, 0.9), torch.optim.lr_scheduler.ExponentialLR(topt, 0.9)
    for step in range(4):
        grads = {"a": rand(4, 3, seed=10 + step) * 3, "b": rand(5, seed=20 + step) * 3}
        for t, g in zip(tparams, grads.values()):
            t.grad = torch.from_numpy(g.copy())
        norm = clip_grad_norm(grads, 2.0)
        tnorm = nn.utils.clip_grad_norm_(tparams, 2.0)
        close(norm, tnorm)
        opt.step(grads)
        topt.step()
        decay.step()
        tdecay.step()
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        for v, t in zip(params.values(), tparams):
            close(v, t)


def test_exponential_decay_staircase() -> None:
    opt = SGD({}, lr=1.0)
    decay = ExponentialDecay(opt, 0.5, decay_steps=2, staircase=True)
    assert [decay.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]


def _shared_dropout(mask: np.ndarray) -> nn.Module:
    class MaskDropout(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.from_numpy(mask)

    return MaskDropout()


def test_full_training_step_matches_torch() -> None:
    """Same init, same batch, Adam + clipping + decay: same losses and weights after two steps."""
    size, batch = 20, 4
    net = build_ela_cnn(3, size, seed=0, dtype=np.float64)
    ref = ELACNN(3, size).double()
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    dict(net.layers)["head.3"].rng = np.random.default_rng(7)
    twin_rng = np.random.default_rng(7)  # replays the scratch dropout masks for the torch network
    opt = Adam(net.parameters(), lr=1e-3)
    decay = ExponentialDecay(opt, 0.95)
    topt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    tdecay = torch.optim.lr_scheduler.ExponentialLR(topt, 0.95)
    for step in range(2):
        x, y = rand(batch, 3, size, size, seed=step), np.array([0, 1, 1, 0])
        loss = train_step(net, opt, x, y, grad_clip=1.0)
        ref.head[3] = _shared_dropout((twin_rng.random((batch, 128)) >= 0.5) / 0.5)
        ref.train()
        tloss = nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        topt.step()
        decay.step()
        tdecay.step()
        close(loss, tloss)
    state, tstate = net.state_dict(), ref.state_dict()
    for key, value in state.items():
        close(value, tstate[key])


def test_scratch_module_training_step_matches_torch_elacnn() -> None:
    """The registered nn.Module path: torch autograd through the hand-written backward, torch's Adam."""
    torch.manual_seed(0)
    model = ScratchCNN(3, 20, seed=0).double()
    ref = ELACNN(3, 20).double()
    ref.load_state_dict(model.state_dict())
    (drop,) = model.dropout_layers()
    drop.rng = np.random.default_rng(7)
    ref.head[3] = _shared_dropout((np.random.default_rng(7).random((4, 128)) >= 0.5) / 0.5)
    x, y = torch.from_numpy(rand(4, 3, 20, 20)), torch.tensor([1, 0, 0, 1])
    losses, grads = [], []
    for m in (model, ref):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        m.train()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        losses.append(loss)
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
        opt.step()
    close(losses[0], losses[1])
    for name, g in grads[0].items():
        close(g, grads[1][name])
    tstate = ref.state_dict()
    for key, value in model.state_dict().items():
        close(value, tstate[key])


def test_network_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3, 16, 16)).astype(np.float32)
    y = (np.arange(32) % 2).astype(np.int64)
    x[y == 1, 0] += 1.5  # class 1 has a brighter first channel
    net = build_ela_cnn(3, 16, seed=0)
    opt = Adam(net.parameters(), lr=3e-3)
    losses = [train_step(net, opt, x, y, grad_clip=5.0) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0]
    logits = net.eval().forward(x)
    assert (logits.argmax(1) == y).mean() >= 0.9


def test_backend_picks_cupy_only_with_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_cupy(devices: int) -> types.ModuleType:
        mod = types.ModuleType("cupy")
        mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: devices))
        return mod

    monkeypatch.delenv("FAKESCOPE_SCRATCH_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # not installed: import fails
    assert backend._usable_cupy() is None
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(0))
    assert backend._usable_cupy() is None
    gpu = fake_cupy(1)
    monkeypatch.setitem(sys.modules, "cupy", gpu)
    assert backend._usable_cupy() is gpu
    monkeypatch.setenv("FAKESCOPE_SCRATCH_BACKEND", "numpy")
    assert backend._usable_cupy() is None
    assert backend.array_module(np.zeros(2)) is np


def test_registry_meta_device_and_size_override() -> None:
    from fakescope.inference.catalog import count_params
    from fakescope.registry import create_detector

    model, pre = create_detector("scratch-cnn", size=32)
    assert pre.size == 32 and model.num_features == 64 * 6 * 6
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    assert count_params("scratch-cnn") == 7_392_770 + 192  # the ELA-CNN's count at 128 px


def test_train_cli_checkpoint_scan_and_evaluate(tmp_path: Path, tiny_images) -> None:
    from fakescope.cli import app
    from fakescope.evaluation.evaluate import evaluate_detector
    from fakescope.inference.detector import Detector
    from fakescope.inference.scan import scan

    for label in ("real", "fake"):
        tiny_images(6, folder=f"data/{label}", prefix=label, seed=int(label == "fake"))
    data, out = tmp_path / "data", tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--model", "scratch-cnn", "--epochs", "1",
                                      "--batch-size", "4", "--out", str(out), "--model.size", "24",
                                      "--data.workers", "0", "--data.cache", "false"])
    assert result.exit_code == 0, result.output
    detector = Detector.load(str(out / "best.safetensors"), device="cpu")
    assert isinstance(detector.model, ScratchCNN) and detector.preprocess.size == 24
    paths = sorted(data.rglob("*.jpg"))
    results = list(scan(paths, detector, batch_size=5, workers=0))
    assert len(results) == 12 and all(r.error is None and 0.0 <= r.fake_probability <= 1.0 for r in results)
    # The same weights in the PyTorch ELA-CNN give the same probabilities: the scratch maths is the real thing.
    ref = ELACNN(3, 24).eval()
    ref.load_state_dict(detector.model.state_dict())
    twin = Detector(ref, detector.meta, "twin", device="cpu")
    from fakescope.forensics.io import load_image

    images = [load_image(p) for p in paths[:4]]
    np.testing.assert_allclose(detector.predict_images(images), twin.predict_images(images), rtol=1e-4, atol=1e-6)
    metrics = evaluate_detector(detector, data, workers=0)
    assert metrics["n"] == 12 and metrics["n_errors"] == 0
