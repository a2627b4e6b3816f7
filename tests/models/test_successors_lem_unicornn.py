from __future__ import annotations

import math
import pickle

import pytest
import torch

from arnn.errors import UsageError
from arnn.models._registry import count_parameters, create_model, validate_model_options
from arnn.models.lem import LEMEncoder, LEMScan
from arnn.models.unicornn import UnICORNNEncoder, UnICORNNScan
from tests.buffers import assert_kept_buffers_change_nothing

F64 = torch.float64


@pytest.mark.parametrize(
    ("name", "options", "m", "n", "expected"),
    [
        ("lem", {}, 1, 128, 67_850),
        ("lem", {"two_biases": True}, 1, 128, 68_362),
        ("lem", {}, 96, 128, 116_490),
        ("lem", {"two_biases": True}, 96, 128, 117_002),
        ("unicornn", {"layers": 3}, 1, 256, 136_202),
        ("unicornn", {"layers": 3}, 96, 128, 47_498),
    ],
)
def test_parameter_counts_match_the_table(name, options, m, n, expected):
    model = create_model(name, input_size=m, output_size=10, hidden=n, model_options=options)
    assert count_parameters(model) == expected


# ---- the equations, written out by hand in float64 ----


def _lem_reference(enc: LEMEncoder, x, y0, dt):
    n = enc.hidden
    v, b = enc.input.weight, enc.input.bias
    w1, w2, wz = enc.recurrent.weight.split(n)
    wy = enc.transform_z.weight
    v1, v2, vz, vy = v.split(n)
    b1, b2, bz, by = b.split(n)
    if enc.two_biases:
        c1, c2, cz = enc.recurrent.bias.split(n)
        b1, b2, bz, by = b1 + c1, b2 + c2, bz + cz, by + enc.transform_z.bias
    y, z, out = y0, torch.zeros_like(y0), []
    for u in x.unbind(1):
        gate_y = dt * torch.sigmoid(y @ w1.T + u @ v1.T + b1)  # Δ̄
        gate_z = dt * torch.sigmoid(y @ w2.T + u @ v2.T + b2)  # Δ
        z = (1 - gate_z) * z + gate_z * torch.tanh(y @ wz.T + u @ vz.T + bz)
        y = (1 - gate_y) * y + gate_y * torch.tanh(z @ wy.T + u @ vy.T + by)
        out.append(y)
    return torch.stack(out, 1)


def _unicornn_reference(enc: UnICORNNEncoder, x, y0=None, masks=None):
    u = x
    for index, layer in enumerate(enc.layers):
        last = index == len(enc.layers) - 1
        y = y0 if (last and y0 is not None) else x.new_zeros(x.shape[0], enc.hidden)
        z, out = torch.zeros_like(y), []
        delta = layer.dt * torch.sigmoid(layer.c)
        for u_t in u.unbind(1):
            x_t = u_t @ layer.input.weight.T + layer.input.bias
            z = z - delta * (torch.tanh(layer.w * y + x_t) + layer.alpha * y)
            y = y + delta * z
            out.append(y)
        u = torch.stack(out, 1)
        if masks is not None and not last:
            u = u * masks[index][:, None, :]  # the same mask at every step
    return u


def _randomise_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("two_biases", [False, True])
@pytest.mark.parametrize("steps", [1, 5])
def test_lem_steps_equal_the_equations(two_biases, steps):
    torch.manual_seed(0)
    enc = LEMEncoder(3, 6, dt=0.4, two_biases=two_biases).to(F64)
    _randomise_(enc)
    x, y0 = torch.randn(4, steps, 3, dtype=F64), torch.randn(4, 6, dtype=F64)
    expected = _lem_reference(enc, x, y0, 0.4)
    torch.testing.assert_close(enc.states(x, y0), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(enc(x, y0), expected[:, -1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 5])
def test_unicornn_steps_equal_the_equations(steps):
    torch.manual_seed(0)
    enc = UnICORNNEncoder(3, 6, dt=0.3, alpha=2.5, layers=2, dropout=0.1).to(F64).eval()
    _randomise_(enc)
    x, y0 = torch.randn(4, steps, 3, dtype=F64), torch.randn(4, 6, dtype=F64)
    expected = _unicornn_reference(enc, x, y0)
    torch.testing.assert_close(enc.states(x, y0), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(enc(x, y0), expected[:, -1], rtol=1e-12, atol=1e-12)


# ---- initialisation ----


def test_lem_initialisation():
    torch.manual_seed(0)
    n = 64
    for two_biases in (False, True):
        model = create_model(
            "lem", input_size=5, output_size=10, hidden=n, model_options={"two_biases": two_biases}
        )
        bound = 1 / math.sqrt(n)
        for name, p in model.encoder.named_parameters():
            assert p.abs().max() <= bound, name
            assert p.abs().max() > 0.9 * bound, name  # uniform over the whole interval
            if p.numel() > 1000:
                assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name
        # Kaiming-normal: std sqrt(2 / fan_in)
        assert model.head.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.2)


def test_unicornn_initialisation():
    torch.manual_seed(0)
    n = 128
    model = create_model("unicornn", input_size=7, output_size=10, hidden=n)
    for layer, fan_in in zip(model.encoder.layers, (7, n, n), strict=True):
        bound = math.sqrt(2 / (1 + 8**2)) * math.sqrt(3 / fan_in)
        assert layer.input.weight.abs().max() <= bound
        assert layer.input.weight.abs().max() > 0.9 * bound
        assert layer.input.bias.abs().sum() == 0
        assert layer.w.min() >= 0 and layer.w.max() < 1 and layer.w.max() > 0.9
        assert layer.c.abs().max() <= 0.1 and layer.c.abs().max() > 0.08
    assert model.head.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.2)
    assert model.head.bias.abs().sum() == 0


# ---- dropout ----


def test_unicornn_dropout_one_mask_per_sequence_and_unit_shared_over_time():
    torch.manual_seed(0)
    enc = UnICORNNEncoder(2, 16, dt=0.3, alpha=2.0, layers=3, dropout=0.5).to(F64)
    masks = []
    make_mask = enc.dropout_mask

    def record(like):
        mask = make_mask(like)
        masks.append(mask)
        return mask

    enc.dropout_mask = record
    x = torch.randn(8, 7, 2, dtype=F64)
    got = enc.states(x)
    assert len(masks) == 2  # between layers only
    for mask in masks:
        assert mask.shape == (8, 16)
        assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(masks[0], masks[1])
    torch.testing.assert_close(
        got, _unicornn_reference(enc, x, masks=masks), rtol=1e-12, atol=1e-12
    )

    masks.clear()
    enc.eval()
    got = enc.states(x)
    assert masks == [None, None]
    torch.testing.assert_close(got, _unicornn_reference(enc, x), rtol=1e-12, atol=1e-12)


# ---- gradients ----


@pytest.fixture
def retained(monkeypatch):
    """gradcheck calls the backward many times: let it work on copies."""
    monkeypatch.setattr(LEMScan, "retain_activations", True)
    monkeypatch.setattr(UnICORNNScan, "retain_activations", True)


@pytest.mark.parametrize("two_biases", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_lem_backward_against_finite_differences(retained, two_biases, keep):
    torch.manual_seed(0)
    n, m = 3, 2

    def r(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    b3, by = (r(3 * n), r(n)) if two_biases else (None, None)
    inputs = (r(2, 4, m), r(4 * n, m), r(4 * n), r(3 * n, n), b3, r(n, n), by, r(2, n))
    assert torch.autograd.gradcheck(lambda *t: LEMScan.apply(*t, 0.5, keep), inputs)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize(
    ("layers", "chunk", "steps"),
    [(1, 32, 4), (2, 3, 7), (3, 3, 7), (3, 2, 3), (2, 1, 3)],
    ids=["one-layer-one-chunk", "two-layers-last-chunk-short", "three-layers", "short", "unit"],
)
def test_unicornn_backward_against_finite_differences(
    retained, monkeypatch, masked, keep, layers, chunk, steps
):
    """All layers at once, as a wavefront over chunks of time: one chunk; several, with the
    last one short, so that a round's layers take different numbers of steps; more layers
    than chunks; chunks of one step."""
    monkeypatch.setattr(UnICORNNScan, "chunk", chunk)
    torch.manual_seed(0)
    n, m, batch = 3, 2, 2

    def r(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    mask = torch.tensor([[0.0, 2.0, 2.0], [2.0, 0.0, 2.0]], dtype=F64)
    each = [mask, mask.flip(-1)][: layers - 1]  # a different mask between each two layers
    masks = torch.stack(each) if masked and layers > 1 else None
    params = []
    for size in [m] + [n] * (layers - 1):
        params += [r(n, size), r(n), r(n), r(n)]
    inputs = (r(steps * batch, m), r(batch, n), *params)

    def run(x_rows, y0, *params):
        return UnICORNNScan.apply(x_rows, y0, masks, 0.3, 2.0, steps, keep, None, *params)

    assert torch.autograd.gradcheck(run, inputs)


def _assert_equal_to_rounding(actual, expected, terms: int, msg=None):
    """`actual` is `expected` computed with its float64 sums in another order: reordering a
    sum of k terms moves it by at most about k·eps·Σ|terms| (Higham, Accuracy and Stability
    of Numerical Algorithms, §4.2), so the two agree within terms·eps·max|expected|, where
    `terms` counts the terms whose order may change on the way to each value."""
    bound = terms * torch.finfo(expected.dtype).eps * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=bound, msg=msg)


def test_unicornn_chunks_do_not_change_the_results(monkeypatch):
    """The chunk length decides which layers step together and where the backward restarts
    its recomputation, and the results are the same whatever it is, to float64 rounding:
    not bit for bit, since each chunk's input map (and its gradients) is one GEMM of
    chunk·B rows, and a BLAS may sum a row in another order for another number of rows
    (MKL does on AMD EPYC with AVX2), and the input maps' weight gradients add up chunk by
    chunk. The bound: each x̃ is a sum of n + 1 terms (V u + b) and every result depends
    on the x̃ of each of the T steps of the L layers, through oscillators that carry an
    error without growing it (undamped; symplectic Euler, stable while δ²(α + w) < 4, here
    about 0.3); the weight gradients also sum T·B rows. So T·B·L·(n + 1) terms: 7650·eps,
    1.7e-12 of each tensor's largest value (seen: under 10·eps), where a round that skips
    its short run, or restarts from a stale y or z, moves some of them by 0.3 of it or more."""
    torch.manual_seed(0)
    batch, steps, hidden, layers = 5, 30, 16, 3
    shape = {"input_size": 3, "output_size": 4, "hidden": hidden}
    model = create_model("unicornn", **shape, model_options={"layers": layers}).to(F64).eval()
    x = torch.randn(batch, steps, 3, dtype=F64)
    terms = steps * batch * layers * (hidden + 1)
    outputs, grads = [], []
    for chunk in (64, 7, 1):  # one chunk; the last one short; one step each
        monkeypatch.setattr(UnICORNNScan, "chunk", chunk)
        outputs.append(model(x))
        grads.append(_grads(model, outputs[-1].sin().sum()))
    for output, other in zip(outputs[1:], grads[1:], strict=True):
        _assert_equal_to_rounding(output, outputs[0], terms)
        for name in grads[0]:
            _assert_equal_to_rounding(other[name], grads[0][name], terms, msg=name)


def test_unicornn_buffers_kept_between_batches_change_nothing(monkeypatch):
    """The encoder's workspace hands one batch's buffers to the next (tests/buffers.py),
    over several chunks of time."""
    monkeypatch.setattr(UnICORNNScan, "chunk", 7)
    torch.manual_seed(0)
    model = create_model("unicornn", input_size=3, output_size=4, hidden=16).to(F64).eval()
    x, other = torch.randn(5, 30, 3, dtype=F64), torch.randn(5, 11, 3, dtype=F64)
    assert_kept_buffers_change_nothing(model, x, other)


def test_a_pickled_unicornn_leaves_its_buffers_behind():
    model = create_model("unicornn", input_size=1, output_size=4, hidden=8)
    model(torch.randn(2, 40, 1)).sum().backward()
    assert len(pickle.dumps(model)) < 4 * len(pickle.dumps(model.state_dict())) + 10_000


@pytest.mark.parametrize("encoder", [LEMEncoder, UnICORNNEncoder])
def test_a_second_backward_is_refused(encoder):
    enc = encoder(2, 4)
    out = enc(torch.randn(3, 5, 2)).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        out.backward()


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("two_biases", [False, True])
def test_lem_backward_equals_autograd_through_the_loop(two_biases):
    torch.manual_seed(0)
    model = create_model(
        "lem", input_size=3, output_size=4, hidden=16, model_options={"two_biases": two_biases}
    )
    x = torch.randn(5, 30, 3)
    fast = _grads(model, model(x).sin().sum())
    enc = model.encoder
    slow = _grads(
        model, model.head(_lem_reference(enc, x, x.new_zeros(5, 16), enc.dt)[:, -1]).sin().sum()
    )
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-5, msg=name)


def test_unicornn_backward_equals_autograd_through_the_loop():
    torch.manual_seed(0)
    model = create_model(
        "unicornn", input_size=3, output_size=4, hidden=16, model_options={"dropout": 0.3}
    )
    enc = model.encoder
    masks = []
    make_mask = enc.dropout_mask
    enc.dropout_mask = lambda like: masks.append(make_mask(like)) or masks[-1]
    x = torch.randn(5, 30, 3, requires_grad=True)
    fast = _grads(model, model(x).sin().sum())
    fast_x = x.grad.clone()
    x.grad = None
    slow = _grads(model, model.head(_unicornn_reference(enc, x, masks=masks)[:, -1]).sin().sum())
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(fast_x, x.grad, rtol=1e-4, atol=1e-5)


# ---- options ----


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("lem", {"dt": 0}, "'dt'"),
        ("lem", {"gamma": 1.0}, "unknown option 'gamma'"),
        ("unicornn", {"alpha": -1.0}, "'alpha'"),
        ("unicornn", {"layers": 0}, "'layers'"),
        ("unicornn", {"dropout": 1.0}, "'dropout'"),
        ("unicornn", {"eps": 0.1}, "unknown option 'eps'"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(name, options, named):
    with pytest.raises(UsageError) as error:
        validate_model_options(name, options)
    message = str(error.value)
    assert "\n" not in message and named in message and message.startswith(f"model {name}")


def test_options_reach_the_model():
    model = create_model(
        "unicornn",
        input_size=1,
        output_size=10,
        hidden=8,
        model_options={"dt": 0.1, "alpha": 3.0, "layers": 2, "dropout": 0.0},
    )
    assert len(model.encoder.layers) == 2 and model.encoder.dropout == 0.0
    assert model.encoder.layers[0].dt == 0.1 and model.encoder.layers[0].alpha == 3.0
    model = create_model("lem", input_size=1, output_size=10, hidden=8, model_options={"dt": 0.5})
    assert model.encoder.dt == 0.5 and not model.encoder.two_biases
