"""Seam carving (`retarget/seams.py`) against brute force, numpy and the `seam-carving`
package."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from learned_resize.retarget import seams


def _brute_force_seam(energy: np.ndarray) -> tuple[list[int], float]:
    """Enumerates every 8-connected vertical seam; returns the cheapest and its cost."""
    h, w = energy.shape
    best, best_cost = None, np.inf
    for start in range(w):
        for steps in itertools.product((-1, 0, 1), repeat=h - 1):
            cols = [start]
            for s in steps:
                cols.append(cols[-1] + s)
            if min(cols) < 0 or max(cols) >= w:
                continue
            cost = sum(energy[r, c] for r, c in enumerate(cols))
            if cost < best_cost:
                best, best_cost = cols, cost
    return best, best_cost


@pytest.mark.parametrize("shape", [(1, 4), (4, 5), (6, 4)])
def test_min_seam_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        energy = rng.random(shape).astype(np.float32)
        seam, cost = seams.min_seam(jnp.asarray(energy))
        ref_seam, ref_cost = _brute_force_seam(energy.astype(np.float64))
        np.testing.assert_allclose(float(cost), ref_cost, rtol=1e-5)
        # Random energies have a unique optimum, so the seams agree exactly.
        assert list(np.asarray(seam)) == ref_seam


def test_min_seam_avoids_forbidden_pixels():
    energy = np.zeros((5, 6), np.float32)
    energy[:, :3] = np.inf  # e.g. padding left by earlier removals
    energy[:, 4] = 1.0
    seam, cost = seams.min_seam(jnp.asarray(energy))
    assert set(np.asarray(seam)) <= {3, 5} and float(cost) == 0.0


def _numpy_seam_removal(gray, bonus, k):
    """Reference: remove k seams one by one with numpy and brute-force-free DP."""
    index = np.tile(np.arange(gray.shape[1]), (gray.shape[0], 1))
    for _ in range(k):
        g = np.pad(gray, ((1, 1), (1, 1)), mode="edge")
        energy = 0.5 * (np.abs(g[1:-1, 2:] - g[1:-1, :-2]) + np.abs(g[2:, 1:-1] - g[:-2, 1:-1]))
        energy = energy + bonus
        cum = energy.copy()
        for r in range(1, cum.shape[0]):
            prev = np.pad(cum[r - 1], 1, constant_values=np.inf)
            cum[r] += np.minimum(np.minimum(prev[:-2], prev[1:-1]), prev[2:])
        seam = [int(np.argmin(cum[-1]))]
        for r in range(cum.shape[0] - 2, -1, -1):
            c = seam[-1]
            lo = max(c - 1, 0)
            seam.append(lo + int(np.argmin(cum[r, lo : c + 2])))
        seam = seam[::-1]
        keep = np.ones_like(gray, bool)
        keep[np.arange(gray.shape[0]), seam] = False
        shape = (gray.shape[0], gray.shape[1] - 1)
        gray, bonus, index = (a[keep].reshape(shape) for a in (gray, bonus, index))
    return index


def test_find_seams_matches_numpy_reference():
    rng = np.random.default_rng(0)
    gray = rng.random((9, 12)).astype(np.float32)
    bonus = np.zeros_like(gray)
    bonus[2:6, 4:7] = seams.MASK_BONUS
    kept, removed = seams.find_seams(jnp.asarray(gray), jnp.asarray(bonus), num_seams=4)
    np.testing.assert_array_equal(np.asarray(kept), _numpy_seam_removal(gray, bonus, 4))
    assert np.all(np.asarray(removed).sum(axis=1) == 4)
    # No seam crosses the masked block while other paths exist.
    assert not np.asarray(removed)[2:6, 4:7].any()


def test_seam_carve_removes_flat_columns_and_keeps_textured_ones():
    # Texture with two flat 4-column bands: the two inner columns of a band have zero
    # energy, so the first seams go there and every textured pixel survives unchanged.
    rng = np.random.default_rng(1)
    image = rng.random((10, 18, 3)).astype(np.float32)
    image[:, 3:7] = 0.5
    image[:, 11:15] = 0.5
    out = np.asarray(seams.seam_carve(jnp.asarray(image), (10, 15)))
    assert out.shape == (10, 15, 3)
    textured = np.r_[0:3, 7:11, 15:18]
    for r in range(10):
        flat = np.all(np.isclose(out[r], 0.5), axis=-1)
        assert flat.sum() == 5
        np.testing.assert_array_equal(out[r][~flat], image[r, textured])


def test_seam_insertion_duplicates_and_averages():
    rng = np.random.default_rng(2)
    image = rng.random((6, 8, 3)).astype(np.float32)
    out = np.asarray(seams.seam_carve(jnp.asarray(image), (6, 11)))
    assert out.shape == (6, 11, 3)
    _, removed = seams.find_seams(
        seams.luminance(jnp.asarray(image)), jnp.zeros((6, 8)), num_seams=3
    )
    removed = np.asarray(removed)
    for r in range(6):
        expected = []
        for c in range(8):
            expected.append(image[r, c])
            if removed[r, c]:
                expected.append(0.5 * (image[r, c] + image[r, min(c + 1, 7)]))
        np.testing.assert_allclose(out[r], np.stack(expected), atol=1e-6)


def test_enlarging_beyond_double_composes_passes():
    rng = np.random.default_rng(3)
    image = rng.random((5, 4, 3)).astype(np.float32)
    out = np.asarray(seams.seam_carve(jnp.asarray(image), (5, 10)))
    assert out.shape == (5, 10, 3)
    # Every output pixel is a convex combination of horizontal neighbours of its row,
    # so row means stay within the row's range.
    for r in range(5):
        assert out[r].min() >= image[r].min() - 1e-6 and out[r].max() <= image[r].max() + 1e-6


def test_horizontal_seams_are_vertical_seams_of_the_transpose():
    rng = np.random.default_rng(4)
    image = rng.random((12, 9, 3)).astype(np.float32)
    tall = np.asarray(seams.seam_carve(jnp.asarray(image), (9, 9)))
    wide = np.asarray(seams.seam_carve(jnp.asarray(image.transpose(1, 0, 2)), (9, 9)))
    np.testing.assert_allclose(tall, wide.transpose(1, 0, 2), atol=1e-6)


def test_gradient_energy_matches_numpy():
    rng = np.random.default_rng(8)
    g = rng.random((7, 9)).astype(np.float32)
    p = np.pad(g, 1, mode="edge")
    ref = 0.5 * (np.abs(p[1:-1, 2:] - p[1:-1, :-2]) + np.abs(p[2:, 1:-1] - p[:-2, 1:-1]))
    np.testing.assert_allclose(np.asarray(seams.gradient_energy(jnp.asarray(g))), ref, 1e-6)


def test_forward_energy_dp_by_hand_on_a_3x4_image():
    # Rubinstein et al. 2008: C_U = |I(i,j+1) - I(i,j-1)|, C_L = C_U + |I(i-1,j) - I(i,j-1)|,
    # C_R = C_U + |I(i-1,j) - I(i,j+1)|, borders replicated; M(0,j) = C_U(0,j) and
    # M(i,j) = P(i,j) + min(M(i-1,j-1) + C_L, M(i-1,j) + C_U, M(i-1,j+1) + C_R), P = 0.
    gray = np.array([[1, 3, 0, 2], [4, 1, 5, 0], [2, 2, 1, 3]], np.float32)
    c_u = [[2, 1, 1, 2], [3, 1, 1, 5], [0, 1, 1, 2]]
    c_l = [[2, 2, 8], [2, 4, 3]]  # rows 1 and 2 at j = 1..3
    c_r = [[3, 3, 1, 7], [2, 1, 3, 5]]  # rows 1 and 2
    costs = np.asarray(seams.forward_costs(jnp.asarray(gray)))
    np.testing.assert_array_equal(costs[1], c_u)
    np.testing.assert_array_equal(costs[0, 1:, 1:], c_l)
    np.testing.assert_array_equal(costs[0, 1:, 0], [6, 2])  # j = 0, never reachable
    np.testing.assert_array_equal(costs[2, 1:], c_r)
    # M row 0 = [2, 1, 1, 2]
    # M row 1: j0 min(-, 2+3, 1+3) = 4; j1 min(2+2, 1+1, 1+3) = 2; j2 min(1+2, 1+1, 2+1) = 2;
    #          j3 min(1+8, 2+5, -) = 7
    # M row 2: j0 min(-, 4+0, 2+2) = 4; j1 min(4+2, 2+1, 2+1) = 3 (ties: the left-most
    #          offset wins, here straight up); j2 min(2+4, 2+1, 7+3) = 3; j3 min(2+3, 7+2, -) = 5
    # Minimum 3 at j1 (left-most of j1, j2), reached straight down: seam [1, 1, 1], cost 3.
    pixel = jnp.zeros((3, 4), jnp.float32).at[0].add(jnp.asarray(costs[1, 0]))
    seam, cost = seams.min_seam(pixel, jnp.asarray(costs))
    assert list(np.asarray(seam)) == [1, 1, 1] and float(cost) == 3.0
    kept, removed = seams.find_seams(
        jnp.asarray(gray), jnp.zeros((3, 4)), num_seams=1, energy="forward"
    )
    np.testing.assert_array_equal(np.asarray(kept), [[0, 2, 3]] * 3)
    assert np.asarray(removed)[:, 1].all() and np.asarray(removed).sum() == 3
    # Backward (gradient) energy picks another seam here: the two energies differ.
    kept_g, _ = seams.find_seams(jnp.asarray(gray), jnp.zeros((3, 4)), num_seams=1)
    assert not np.array_equal(np.asarray(kept_g), np.asarray(kept))


def test_forward_energy_matches_the_seam_carving_package():
    """Seam removal with forward energy against PyPI's `seam-carving` (1.1.0).

    The two are defined identically for a grey image without masks (same costs, edge
    replication, first-minimum tie breaking), so on integer-valued pixels (exact float32
    sums) the carved images are equal. Expected differences, not compared: RGB images
    (it converts with Rec. 709 weights and truncates to uint8, we use Rec. 601 luma on
    floats), a keep mask (it adds the mask energy from the second row on, we on every
    row), seam insertion (it inserts the mean with the left neighbour before the seam
    pixel, we the mean with the right neighbour after it) and backward energy (Sobel
    there, central differences here).
    """
    seam_carving = pytest.importorskip("seam_carving")
    rng = np.random.default_rng(0)
    for shape, k in (((12, 16), 5), ((9, 20), 11), ((16, 7), 3)):
        gray = rng.integers(0, 256, shape).astype(np.float32)
        ref = seam_carving.resize(gray, (shape[1] - k, shape[0]), energy_mode="forward")
        kept, _ = seams.find_seams(
            jnp.asarray(gray), jnp.zeros(shape), num_seams=k, energy="forward"
        )
        np.testing.assert_array_equal(np.take_along_axis(gray, np.asarray(kept), 1), ref)
    # Height: horizontal seams, as seam_plan finds them (vertical seams of the transpose).
    gray = rng.integers(0, 256, (14, 10)).astype(np.float32)
    ref = seam_carving.resize(gray, (10, 9), energy_mode="forward")
    kept, _ = seams.find_seams(
        jnp.asarray(gray.T), jnp.zeros((10, 14)), num_seams=5, energy="forward"
    )
    np.testing.assert_array_equal(np.take_along_axis(gray.T, np.asarray(kept), 1).T, ref)


def test_forward_energy_seam_carve_keeps_a_flat_photo_region_and_refuses_unknown():
    # Columns 4..9 flat (removing them creates no new edge), the rest a ramp of steps.
    image = np.zeros((10, 16, 3), np.float32)
    image[:, :4] = np.linspace(0, 1, 4)[None, :, None]
    image[:, 10:] = np.linspace(0, 1, 6)[None, :, None]
    out = np.asarray(seams.seam_carve(jnp.asarray(image), (10, 12), energy="forward"))
    np.testing.assert_allclose(out[:, :4], image[:, :4], atol=1e-6)
    np.testing.assert_allclose(out[:, 6:], image[:, 10:], atol=1e-6)
    with pytest.raises(ValueError, match="gradient, forward"):
        seams.find_seams(jnp.zeros((3, 4)), jnp.zeros((3, 4)), num_seams=1, energy="sobel")
