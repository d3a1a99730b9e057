"""IQA loss, head and metrics against scipy, numpy and hand-computed references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from learned_resize import iqa
from learned_resize.models import score_head


def _numpy_emd(p, q, r=2.0):
    """A loop-per-bin reference, written independently of the library's vectorised form."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    out = []
    for pi, qi in zip(p, q):
        cp = cq = 0.0
        acc = 0.0
        for k in range(pi.shape[0]):
            cp += pi[k]
            cq += qi[k]
            acc += abs(cp - cq) ** r
        out.append((acc / pi.shape[0]) ** (1.0 / r))
    return np.array(out)


def _random_hist(rng, n, k=10):
    x = rng.gamma(0.7, size=(n, k))
    return x / x.sum(-1, keepdims=True)


def test_emd_hand_computed():
    one = np.eye(10, dtype=np.float32)
    # All mass on score 1 vs all on score 10: CDFs differ by 1 at k = 1..9, 0 at k = 10.
    # sqrt(9 / 10).
    got = iqa.emd_loss(one[None, 0], one[None, 9])
    np.testing.assert_allclose(got, [np.sqrt(0.9)], rtol=1e-6)
    # Half on 1 and half on 2 vs all on 2: only k = 1 differs, by 0.5.
    p = np.zeros((1, 10), np.float32)
    p[0, :2] = 0.5
    np.testing.assert_allclose(iqa.emd_loss(p, one[None, 1]), [np.sqrt(0.25 / 10)], rtol=1e-6)
    np.testing.assert_allclose(iqa.emd_loss(p, one[None, 1], r=1), [0.05], rtol=1e-6)
    # Identical distributions.
    np.testing.assert_allclose(iqa.emd_loss(p, p), [0.0], atol=0)


@pytest.mark.parametrize("r", [1.0, 2.0, 3.0])
def test_emd_random_histograms_vs_numpy(r):
    rng = np.random.default_rng(0)
    p, q = _random_hist(rng, 64), _random_hist(rng, 64)
    got = iqa.emd_loss(p.astype(np.float32), q.astype(np.float32), r=r)
    assert got.shape == (64,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _numpy_emd(p, q, r), rtol=2e-5, atol=1e-7)
    # Symmetric, and the eval metric's float64 version agrees.
    np.testing.assert_allclose(iqa.emd_loss(q, p, r=r), got, rtol=1e-6)
    metrics = iqa.iqa_eval_metrics(p, q, r=r)
    np.testing.assert_allclose(metrics["emd"], _numpy_emd(p, q, r).mean(), rtol=1e-12)


def test_emd_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        iqa.emd_loss(np.ones((2, 10)) / 10, np.ones((3, 10)) / 10)


def test_emd_gradient_finite_including_exact_match():
    rng = np.random.default_rng(1)
    target = _random_hist(rng, 8).astype(np.float32)
    logits = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)

    def loss(lg, tgt):
        return jnp.mean(iqa.emd_loss(jax.nn.softmax(lg), tgt))

    g = jax.grad(loss)(logits, target)
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    # Finite differences along one direction agree with the analytic gradient.
    d = jnp.asarray(rng.normal(size=logits.shape), jnp.float32)
    eps = 1e-2
    fd = (loss(logits + eps * d, target) - loss(logits - eps * d, target)) / (2 * eps)
    np.testing.assert_allclose(fd, jnp.sum(g * d), rtol=2e-2)
    # Where prediction equals target the loss is 0 and the gradient must still be finite.
    exact = jax.nn.softmax(logits)
    g0 = jax.grad(lambda lg: loss(lg, exact))(logits)
    assert np.all(np.isfinite(g0))
    np.testing.assert_allclose(g0, 0.0, atol=1e-6)


def test_mean_score_and_std_vs_numpy():
    rng = np.random.default_rng(2)
    p = _random_hist(rng, 32)
    s = np.arange(1, 11)
    mu = (p * s).sum(-1)
    sd = np.sqrt((p * (s - mu[:, None]) ** 2).sum(-1))
    np.testing.assert_allclose(iqa.mean_score(p), mu, rtol=1e-5)
    np.testing.assert_allclose(iqa.score_std(p), sd, rtol=1e-4)
    np.testing.assert_allclose(iqa.mean_score(np.eye(10)), s, rtol=1e-6)
    np.testing.assert_allclose(iqa.score_std(np.eye(10)), 0.0, atol=1e-6)


def test_plcc_srcc_vs_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    y = 0.6 * x + rng.normal(size=200)
    np.testing.assert_allclose(iqa.plcc(x, y), stats.pearsonr(x, y)[0], rtol=1e-12)
    np.testing.assert_allclose(iqa.srcc(x, y), stats.spearmanr(x, y)[0], rtol=1e-12)
    # Heavy ties on both sides (rounded scores, as AVA means often tie).
    xt, yt = np.round(x), np.round(y * 2) / 2
    assert len(np.unique(xt)) < 20 and len(np.unique(yt)) < 30
    np.testing.assert_allclose(iqa.srcc(xt, yt), stats.spearmanr(xt, yt)[0], rtol=1e-12)
    np.testing.assert_allclose(iqa.average_ranks(xt), stats.rankdata(xt), rtol=0)
    np.testing.assert_allclose(iqa.plcc(xt, yt), stats.pearsonr(xt, yt)[0], rtol=1e-12)
    # Perfect monotone but non-linear relation: SRCC 1, PLCC < 1.
    assert iqa.srcc(x, np.exp(x)) == pytest.approx(1.0)
    assert iqa.plcc(x, np.exp(x)) < 0.95
    # Constant input has no correlation.
    assert np.isnan(iqa.plcc(np.ones(5), np.arange(5.0)))
    assert np.isnan(iqa.srcc(np.ones(5), np.arange(5.0)))


def test_binary_accuracy_hand_computed():
    gt = [3.0, 4.9, 5.0, 5.1, 7.0, 6.0]
    pred = [4.0, 5.2, 4.0, 5.5, 6.5, 4.5]
    # Good means > 5: gt good = F F F T T T, pred good = F T F T T F -> 4 of 6 agree.
    assert iqa.binary_accuracy(pred, gt) == pytest.approx(4 / 6)
    # At 4: gt good = F T T T T T, pred good = F T F T T T (4.0 is not > 4) -> 5 of 6.
    assert iqa.binary_accuracy(pred, gt, threshold=4.0) == pytest.approx(5 / 6)


def test_eval_metrics_with_mask_vs_scipy():
    rng = np.random.default_rng(4)
    gt = _random_hist(rng, 50)
    pred = 0.5 * gt + 0.5 * _random_hist(rng, 50)
    mask = np.ones(50)
    mask[[3, 17, 40]] = 0
    # Padding rows may be garbage; the mask drops them.
    pred[[3, 17, 40]] = 0.0
    m = iqa.iqa_eval_metrics(pred, gt, mask)
    keep = mask > 0
    s = np.arange(1, 11)
    pm, gm = (pred[keep] * s).sum(-1), (gt[keep] * s).sum(-1)
    assert m["num_examples"] == 47
    np.testing.assert_allclose(m["plcc"], stats.pearsonr(pm, gm)[0], rtol=1e-10)
    np.testing.assert_allclose(m["srcc"], stats.spearmanr(pm, gm)[0], rtol=1e-10)
    np.testing.assert_allclose(m["emd"], _numpy_emd(pred[keep], gt[keep]).mean(), rtol=1e-10)
    np.testing.assert_allclose(m["binary_accuracy"], np.mean((pm > 5) == (gm > 5)), rtol=0)
    np.testing.assert_allclose(m["mean_abs_error"], np.abs(pm - gm).mean(), rtol=1e-10)
    with pytest.raises(ValueError, match="one weight per example"):
        iqa.iqa_eval_metrics(pred, gt, mask[:10])


def test_histogram_from_counts():
    counts = np.array([[0, 1, 2, 3, 4, 0, 0, 0, 0, 10], [0] * 10])
    hist = iqa.histogram_from_counts(counts)
    np.testing.assert_allclose(hist[0], counts[0] / 20.0, rtol=1e-7)
    np.testing.assert_array_equal(hist[1], 0.0)
    assert hist.dtype == np.float32


def test_score_head_matches_numpy_and_dropout():
    d = 16
    head = score_head.ScoreHead(d, dropout_rate=0.75, rngs=nnx.Rngs(params=0, dropout=1))
    x = np.random.default_rng(5).normal(size=(4, d)).astype(np.float32)
    probs = head(jnp.asarray(x), train=False)
    assert probs.shape == (4, 10) and probs.dtype == jnp.float32
    w, b = np.asarray(head.dense.kernel[...]), np.asarray(head.dense.bias[...])
    logits = x @ w + b
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)
    # Eval mode is deterministic; train mode drops ~75% of features and rescales the rest.
    np.testing.assert_array_equal(head(jnp.asarray(x), train=False), probs)
    p1 = head(jnp.asarray(x), train=True)
    p2 = head(jnp.asarray(x), train=True)
    assert not np.allclose(p1, probs) and not np.allclose(p1, p2)
    np.testing.assert_allclose(np.sum(p1, -1), 1.0, rtol=1e-5)
    # bf16 compute still returns float32 distributions; params stay float32.
    head16 = score_head.ScoreHead(d, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    out = head16(jnp.asarray(x), train=False)
    assert out.dtype == jnp.float32 and head16.dense.kernel[...].dtype == jnp.float32
    with pytest.raises(ValueError, match="pooled features"):
        head(jnp.ones((2, 3, 3, d)), train=False)
    with pytest.raises(ValueError, match="dropout_rate"):
        score_head.ScoreHead(d, dropout_rate=1.0, rngs=nnx.Rngs(0))


def test_score_head_training_step_reduces_emd():
    """SGD on the EMD loss fits a fixed target, in a pure jitted step with explicit dropout keys."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(32, 8)), jnp.float32)
    target = jnp.asarray(_random_hist(rng, 32), jnp.float32)
    head = score_head.ScoreHead(8, dropout_rate=0.1, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(head, nnx.Param, ...)
    key = jax.random.key(7)

    @jax.jit
    def step(params, step_index):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, rest)
            probs = model(x, train=True, rngs=jax.random.fold_in(key, step_index))
            return jnp.mean(iqa.emd_loss(probs, target))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), loss

    losses = []
    for i in range(60):
        params, loss = step(params, i)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]


def test_score_head_with_nnx_transforms_uses_own_stream():
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
    target = jnp.asarray(_random_hist(rng, 16), jnp.float32)
    head = score_head.ScoreHead(8, rngs=nnx.Rngs(params=0, dropout=1))

    @nnx.jit
    def loss_and_grad(model):
        return nnx.value_and_grad(lambda m: jnp.mean(iqa.emd_loss(m(x, train=True), target)))(model)

    loss1, grads = loss_and_grad(head)
    loss2, _ = loss_and_grad(head)
    # The stream advanced between calls, so the dropout masks (and losses) differ.
    assert np.isfinite(loss1) and loss1 != loss2
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
