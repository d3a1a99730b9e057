"""Reconstruction loss and L-BFGS on problems with known optima; the API and CLI checks."""

import functools
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from flax import nnx
from PIL import Image

from learned_resize.retarget import __main__ as cli
from learned_resize.retarget import api, loop_vgg, operators, reconstruct, vgg
from tests.helpers.stand_in_vgg import nets, small_config


def _identity_loss(image, aux):
    """Feature = the image itself, plus optional squared TV: a quadratic in the pixels."""
    rec = reconstruct.feature_loss({"id": image}, {"id": aux["target"]}, {"id": 1.0})
    return rec + aux["gamma"] * reconstruct.total_variation(image)


def test_total_variation_and_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 7, 3)).astype(np.float32)
    tv = np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2)
    np.testing.assert_allclose(float(reconstruct.total_variation(jnp.asarray(x))), tv, rtol=1e-5)
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    m, s = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    ref = np.sum((m - mean) ** 2) + np.sum((s - std) ** 2)
    got = reconstruct.stats_prior(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(std))
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)


def test_feature_loss_is_energy_normalised_mse():
    rng = np.random.default_rng(1)
    f = {k: rng.standard_normal((1, 4, 4, c)).astype(np.float32) for k, c in (("a", 3), ("b", 5))}
    t = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in f.items()}
    w = {"a": 0.5, "b": 2.0}
    ref = sum(w[k] * np.mean((f[k] - t[k]) ** 2) / np.mean(t[k] ** 2) for k in f)
    got = reconstruct.feature_loss(jax.tree.map(jnp.asarray, f), jax.tree.map(jnp.asarray, t), w)
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)


def test_lbfgs_recovers_the_target_of_identity_features():
    target = jax.random.uniform(jax.random.key(0), (1, 8, 10, 3), minval=0.1, maxval=0.9)
    aux = {"target": target, "gamma": jnp.float32(0.0)}
    image, info = reconstruct.minimize(
        _identity_loss, jnp.full_like(target, 0.5), aux, iterations=60, chunk=20, log=None
    )
    np.testing.assert_allclose(np.asarray(image), np.asarray(target), atol=2e-3)
    assert info.losses[-1] < 1e-5 * info.losses[0]
    assert info.evaluations >= info.iterations > 0


def test_lbfgs_matches_the_linear_solve_of_a_quadratic_with_tv():
    # Minimiser of sum|x - t|^2 / (n m2) + g (sum|Dy x|^2 / n_y + sum|Dx x|^2 / n_x),
    # found by numpy from the normal equations.
    h, w, c, g = 5, 6, 1, 0.05
    rng = np.random.default_rng(2)
    t = rng.uniform(0.2, 0.8, (1, h, w, c)).astype(np.float32)
    n = h * w * c
    idx = np.arange(n).reshape(h, w, c)
    dy = np.zeros(((h - 1) * w * c, n))
    for k, (a, b) in enumerate(zip(idx[1:].ravel(), idx[:-1].ravel())):
        dy[k, a], dy[k, b] = 1, -1
    dx = np.zeros((h * (w - 1) * c, n))
    for k, (a, b) in enumerate(zip(idx[:, 1:].ravel(), idx[:, :-1].ravel())):
        dx[k, a], dx[k, b] = 1, -1
    m2 = np.mean(t.astype(np.float64) ** 2)
    lhs = np.eye(n) / (n * m2) + g * (dy.T @ dy / len(dy) + dx.T @ dx / len(dx))
    expected = np.linalg.solve(lhs, t.ravel() / (n * m2)).reshape(t.shape)

    aux = {"target": jnp.asarray(t), "gamma": jnp.float32(g)}
    image, _ = reconstruct.minimize(
        _identity_loss, jnp.full_like(t, 0.5), aux, iterations=80, chunk=40, log=None
    )
    np.testing.assert_allclose(np.asarray(image), expected, atol=2e-3)


def test_pixels_stay_in_range_when_the_target_is_outside():
    target = jnp.concatenate([jnp.full((1, 4, 4, 3), 1.5), jnp.full((1, 4, 4, 3), -0.5)], 1)
    aux = {"target": target, "gamma": jnp.float32(0.0)}
    image, _ = reconstruct.minimize(
        _identity_loss, jnp.full_like(target, 0.5), aux, iterations=30, chunk=30, log=None
    )
    image = np.asarray(image)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image[:, :4].min() > 0.95 and image[:, 4:].max() < 0.05


def test_a_plan_moving_white_onto_dark_is_followed_from_the_worst_start():
    # White left half, varied dark right half; the plan mirrors the columns, so the
    # target is dark exactly where the start is white and the reverse. Pixels starting
    # saturated got ~1000x less gradient under the old logit parametrisation: after 10
    # iterations they were still 0.16 off (measured); now every pixel moves.
    dark = np.random.default_rng(0).uniform(0.05, 0.6, (1, 6, 8, 3)).astype(np.float32)
    image = jnp.concatenate([jnp.ones((1, 6, 8, 3)), jnp.asarray(dark)], axis=2)
    mirror = (jnp.arange(16, 0, -1, dtype=jnp.float32) - 0.5) / 16
    plan = (operators.Stage(jnp.broadcast_to(mirror, (6, 16)), axis=1),)
    target = operators.apply_plan(plan, image, (6, 16))
    np.testing.assert_allclose(np.asarray(target[0, :, ::-1]), np.asarray(image[0]))
    aux = {"target": target, "gamma": jnp.float32(0.0)}
    out, _ = reconstruct.minimize(_identity_loss, image, aux, iterations=10, log=None)
    np.testing.assert_allclose(np.asarray(out), np.asarray(target), atol=0.02)


def test_solve_stops_at_the_first_small_relative_loss_change():
    # An ill-conditioned quadratic (strong TV) converges slowly; with rtol the solve must
    # stop at the first iteration whose relative decrease is at most rtol, as read off
    # the loss history of the same solve without rtol, one iteration per chunk.
    target = jax.random.uniform(jax.random.key(3), (1, 12, 12, 3))
    aux = {"target": target, "gamma": jnp.float32(30.0)}
    start = jnp.full_like(target, 0.5)
    kwargs = dict(iterations=25, chunk=1, log=None)
    _, full = reconstruct.minimize(_identity_loss, start, aux, **kwargs)
    rtol = 1e-3
    rel = [(a - b) / abs(a) for a, b in zip(full.losses, full.losses[1:])]
    expected = 1 + next(i for i, r in enumerate(rel) if r <= rtol)  # iterations run
    _, info = reconstruct.minimize(_identity_loss, start, aux, rtol=rtol, **kwargs)
    assert 1 < expected < 24 and info.iterations == expected
    assert info.losses == full.losses[: expected + 1]


def test_progress_is_reported_per_chunk(capsys):
    target = jax.random.uniform(jax.random.key(1), (1, 8, 10, 3), minval=0.1, maxval=0.9)
    aux = {"target": target, "gamma": jnp.float32(30.0)}  # slow to converge: 12 iterations run
    _, info = reconstruct.minimize(
        _identity_loss, jnp.full_like(target, 0.5), aux, iterations=12, chunk=4, label="[t] "
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["0/12", "4/12", "8/12", "12/12"]
    assert len(info.losses) == 4 and all(a >= b for a, b in zip(info.losses, info.losses[1:]))


def _numpy_conv(x, kernel, bias):
    """SAME 3x3 convolution, NHWC x HWIO, in numpy."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    out = sum(
        np.einsum("nhwi,io->nhwo", p[:, i : i + h, j : j + w], kernel[i, j])
        for i in range(3)
        for j in range(3)
    )
    return out + bias


def test_retarget_loss_matches_numpy_terms():
    net19, net16 = nets()
    rng = np.random.default_rng(3)
    image = rng.random((1, 8, 6, 3)).astype(np.float32)
    t_rec = rng.random((1, 8, 6, 6)).astype(np.float32)
    t_perc = rng.random((1, 4, 3, 6)).astype(np.float32)
    spec = reconstruct.LossSpec(nnx.graphdef(net19), ("conv1_1",), nnx.graphdef(net16), ("pool1",))
    aux = dict(
        rec_params=nnx.state(net19),
        perc_params=nnx.state(net16),
        rec_targets={"conv1_1": jnp.asarray(t_rec)},
        perc_targets={"pool1": jnp.asarray(t_perc)},
        rec_weights={"conv1_1": 1.0},
        perc_weights={"pool1": 1.0},
        alpha=2.0,
        beta=0.5,
        gamma=3.0,
        tv_weight=1.0,
        stats_weight=0.25,
        mean=jnp.asarray([0.5, 0.5, 0.5]),
        std=jnp.asarray([0.2, 0.2, 0.2]),
    )
    got = float(jax.jit(reconstruct.retarget_loss, static_argnums=2)(jnp.asarray(image), aux, spec))

    def conv(net, x):
        return _numpy_conv(
            x, np.asarray(net.conv1_1.kernel.value), np.asarray(net.conv1_1.bias.value)
        )

    f19 = conv(net19, image)
    f16 = conv(net16, image).reshape(1, 4, 2, 3, 2, 6).mean(axis=(2, 4))
    rec = np.mean((f19 - t_rec) ** 2) / np.mean(t_rec**2)
    perc = np.mean((f16 - t_perc) ** 2) / np.mean(t_perc**2)
    tv = np.mean(np.diff(image, axis=1) ** 2) + np.mean(np.diff(image, axis=2) ** 2)
    m, s = image.mean(axis=(0, 1, 2)), image.std(axis=(0, 1, 2))
    stats = np.sum((m - 0.5) ** 2) + np.sum((s - 0.2) ** 2)
    np.testing.assert_allclose(got, 2 * rec + 0.5 * perc + 3 * (tv + 0.25 * stats), rtol=1e-4)


@pytest.mark.parametrize("depth, size", [(19, (32, 48)), (19, (36, 44))])
def test_loop_friendly_vgg_matches_the_module_and_its_gradient(depth, size):
    net = vgg.VGG(depth, rngs=nnx.Rngs(depth))
    static, params = loop_vgg.split_network(net)
    assert static == depth
    # conv3_2..conv4_1 (256+ channels) run by Winograd on CPU, at 9x11 (odd) in the
    # second case; the others by lax's convolution.
    assert params["conv3_2"]["fwd"].ndim == 3 and params["conv4_1"]["bwd"].ndim == 3
    assert params["conv3_1"]["fwd"].ndim == 4
    _, plain = loop_vgg.split_network(net, winograd=False)  # below winograd_min_pixels
    assert all(p["fwd"].ndim == 4 and p["bwd"].ndim == 4 for p in plain.values())
    image = jax.random.uniform(jax.random.key(4), (1, *size, 3))
    layers = ("conv1_2", "pool2", "conv3_1", "conv4_1")

    def energy(features):
        return sum(jnp.mean(jnp.square(f)) for f in features.values())

    # One jitted call per path (eager VGG compiles every op separately: slow).
    @jax.jit
    def ours(x, params):
        feats = loop_vgg.network_features(static, params, x, layers)
        return feats, jax.grad(
            lambda y: energy(loop_vgg.network_features(static, params, y, layers))
        )(x)

    graph, state = nnx.split(net)

    @jax.jit
    def ref(x, state):
        run = lambda y: nnx.merge(graph, state)(y, layers)
        return run(x), jax.grad(lambda y: energy(run(y)))(x)

    (f_ours, g_ours), (f_ref, g_ref) = ours(image, params), ref(image, state)
    for name in layers:
        # Layers before conv3_2 keep the direct convolution's bound. After the Winograd
        # layers the rounding scales with the tiles' magnitudes, not each output's: the
        # bound is relative to the layer's largest value (~1e-6 of it measured).
        after_winograd = name == "conv4_1"
        atol = 1e-5 * float(jnp.abs(f_ref[name]).max()) if after_winograd else 1e-4
        np.testing.assert_allclose(f_ours[name], f_ref[name], rtol=1e-5, atol=atol)
    np.testing.assert_allclose(g_ours, g_ref, atol=1e-5 * float(jnp.abs(g_ref).max()))


def test_perceptual_input_is_antialiased_scaling():
    x = jnp.arange(2 * 8 * 12 * 3, dtype=jnp.float32).reshape(2, 8, 12, 3)
    assert reconstruct.perceptual_input(x, 1.0) is x
    half = reconstruct.perceptual_input(x, 0.5)
    ref = jax.image.resize(x, (2, 4, 6, 3), "linear", antialias=True)
    np.testing.assert_allclose(half, ref)


def test_lbfgs_inverts_a_linear_conv_layer():
    # conv1_1 of TinyNet is linear with more output than input channels, so the only
    # image reproducing the target's conv features is the target itself.
    net, _ = nets()
    target = jax.random.uniform(jax.random.key(2), (1, 8, 8, 3), minval=0.15, maxval=0.85)
    spec = reconstruct.LossSpec(nnx.graphdef(net), ("conv1_1",))
    aux = dict(
        rec_params=nnx.state(net),
        rec_targets=net(target, ("conv1_1",)),
        rec_weights={"conv1_1": 1.0},
        alpha=1.0,
        gamma=0.0,
        tv_weight=0.0,
        stats_weight=0.0,
        mean=jnp.zeros(3),
        std=jnp.zeros(3),
    )
    loss = functools.partial(reconstruct.retarget_loss, spec=spec)
    start = jnp.full_like(target, 0.5)
    image, _ = reconstruct.minimize(loss, start, aux, iterations=150, chunk=150, log=None)
    np.testing.assert_allclose(np.asarray(image), np.asarray(target), atol=1e-2)


def test_retarget_end_to_end_with_stand_in_networks():
    net19, net16 = nets()
    cfg = small_config(api)
    cfg.mask.image_side = 24  # the input's own size
    # Uniform scaling copies no pixel, so the whole output is reconstructed (a crop or
    # seams around the mask would leave copied pixels alone, `buckets.changed_weight`).
    cfg.operator = "uniform"
    image = jax.random.uniform(jax.random.key(3), (16, 24, 3))
    result = api.retarget_details(image, (16, 18), config=cfg, vgg19=net19, vgg16=net16, log=None)
    assert result.image.shape == (16, 18, 3)
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    assert [s.iterations for s in result.solves] == [5, 3]
    # The optimiser improved on its start at the final scale.
    assert result.solves[-1].losses[-1] < result.solves[-1].losses[0]
    assert result.mask.shape == (8, 12)


@pytest.mark.parametrize(
    "size, message",
    [((0, 10), "positive"), ((10, -3), "positive"), ((10, 10_000), "too large"), ("ab", "two")],
)
def test_bad_sizes_are_rejected_with_one_sentence(size, message):
    with pytest.raises(ValueError, match=message):
        api.check_size(size, (100, 100))


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "flags, expected",
    [
        (("384x512", None, None), (512, 384)),
        (("384x", None, None), (400, 384)),
        (("x300", None, None), (300, 600)),
        ((None, 200, None), (400, 200)),
        ((None, None, 100), (100, 600)),
        ((None, 200, 100), (100, 200)),
        ((None, None, None), (400, 450)),
    ],
)
def test_size_flags(flags, expected):
    assert cli.parse_size(*flags, (400, 600)) == expected


@pytest.mark.parametrize(
    "flags, message",
    [
        (("384", None, None), "must look like"),
        (("ax3", None, None), "must look like"),
        (("x", None, None), "must look like"),
        (("384x", 10, None), "not both"),
    ],
)
def test_bad_size_flags(flags, message):
    with pytest.raises(ValueError, match=message):
        cli.parse_size(*flags, (400, 600))


def test_unreadable_files_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cli.read_image(str(tmp_path / "missing.jpg"))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(ValueError, match="Cannot read"):
        cli.read_image(str(junk))


def test_cli_checks_size_and_weights_before_working(tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(photo)
    out = str(tmp_path / "out.png")
    cfg = api.get_config()
    with pytest.raises(ValueError, match="positive"):
        cli.run(str(photo), ("0x20", None, None), out, cfg, False)
    with pytest.raises(ValueError, match="too large"):
        cli.run(str(photo), ("100000x", None, None), out, cfg, False)
    monkeypatch.setenv("LEARNED_RESIZE_CACHE", str(tmp_path / "no_cache"))
    with pytest.raises(FileNotFoundError, match="--fetch"):
        cli.run(str(photo), ("20x", None, None), out, cfg, False)


def _have_weights() -> bool:
    from learned_resize.retarget import weights

    try:
        weights.load_params(19)
        weights.load_params(16)
    except FileNotFoundError:
        return False
    return True


@pytest.mark.slow
def test_cli_end_to_end_with_real_weights(tmp_path):
    if not _have_weights():
        pytest.skip("VGG weight cache missing (python -m learned_resize.retarget.weights --fetch)")
    photo = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()[::4, ::4]).save(photo)  # 113 x 75
    out = tmp_path / "out.png"
    cmd = [
        sys.executable,
        "-m",
        "learned_resize.retarget",
        f"--image={photo}",
        "--size=80x",
        f"--out={out}",
        "--config.iterations=(3, 2)",
        "--compile_cache=",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (80, 75)
    assert "-> 80x75 (multi," in proc.stdout  # the default operator
    assert Image.open(tmp_path / "out_comparison.png").size[1] == 75 + 16
    assert "total time" in proc.stdout
    assert re.search(r"wrote .*out\.png in [0-9.]+ s \(3\+2 L-BFGS iterations", proc.stdout)
    _assert_retargeted(Image.open(photo), Image.open(out))
    # A crop reconstructs nothing, and the line says so; the pixels are the photo's.
    crop = tmp_path / "crop.png"
    cmd = [*cmd[:5], f"--out={crop}", "--config.operator=crop", "--nocomparison"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "(nothing reconstructed: the plan copies every pixel)" in proc.stdout
    source = np.asarray(Image.open(photo))
    offset = (source.shape[1] - 80) // 2
    np.testing.assert_array_equal(np.asarray(Image.open(crop)), source[:, offset : offset + 80])


def _assert_retargeted(source, result):
    """`result` shows `source`'s content at the new size, judged against numpy references.

    A retargeting keeps the photo's colours and contrast and its content: each channel's
    mean within 5% of full scale of the input's and its standard deviation within 30%
    (the real-weights run: means 0.6-5.4 apart, stds 84-93% of the input's), and the
    pixels correlate above 0.8 with the input's centre crop or its uniform (bilinear)
    resize to the same size, whichever the operator resembles (0.99 with the crop; the
    two references correlate only 0.58 with each other). A black, constant, noise or
    misplaced image fails.
    """
    x = np.asarray(source.convert("RGB"), np.float64)
    y = np.asarray(result.convert("RGB"), np.float64)
    (h, w), (rh, rw) = x.shape[:2], y.shape[:2]
    np.testing.assert_allclose(y.mean(axis=(0, 1)), x.mean(axis=(0, 1)), atol=0.05 * 255)
    ratio = y.std(axis=(0, 1)) / x.std(axis=(0, 1))
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio
    top, left = (h - rh) // 2, (w - rw) // 2
    crop = x[top : top + rh, left : left + rw]
    uniform = np.asarray(source.convert("RGB").resize((rw, rh), Image.BILINEAR), np.float64)
    corr = lambda a, b: float(np.corrcoef(a.ravel(), b.ravel())[0, 1])  # noqa: E731
    assert max(corr(y, crop), corr(y, uniform)) > 0.8, (corr(y, crop), corr(y, uniform))
