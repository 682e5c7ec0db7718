import moocore
import numpy as np
import pytest

from supernet.nas.pareto import Normalisation, hypervolume, hypervolume_trace, pareto_mask


def brute_force_mask(points: np.ndarray) -> np.ndarray:
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if i != j and np.all(points[j] <= points[i]) and np.any(points[j] < points[i]):
                mask[i] = False
                break
    return mask


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_pareto_mask_matches_brute_force(seed, m, ties):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(60, m)).astype(float) if ties else rng.random((60, m))
    np.testing.assert_array_equal(pareto_mask(points), brute_force_mask(points))


def normalise(points, reference=None, **options):
    """Points on the scale fitted to ``reference`` (default: themselves), as compare and the search use it."""
    return Normalisation.fit(points if reference is None else reference, **options).transform(points)


def test_pareto_mask_duplicates_and_nan():
    points = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0], [2.0, 2.0], [np.nan, 0.0]])
    assert pareto_mask(points).tolist() == [True, True, True, False, False]
    assert pareto_mask(points, keep_duplicates=False).tolist() == [True, False, True, False, False]
    assert pareto_mask(np.zeros((0, 2))).tolist() == []


@pytest.mark.parametrize(
    ("points", "reference", "expected"),
    [
        ([[1.0, 1.0]], (2.0, 2.0), 1.0),
        ([[0.5, 1.5], [1.0, 1.0]], (2.0, 2.0), 1.25),
        ([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]], (4.0, 4.0), 10.0),
        ([[1.0, 1.0], [1.5, 1.5]], (2.0, 2.0), 1.0),  # dominated point adds nothing
        ([[3.0, 1.0]], (2.0, 2.0), 0.0),  # outside the reference box
        ([[2.0, 0.0]], (2.0, 2.0), 0.0),  # on its boundary: zero volume
        ([[3.0, 0.0], [1.0, 1.0]], (2.0, 2.0), 1.0),  # only the inside point counts
        ([], (2.0, 2.0), 0.0),
    ],
)
def test_hypervolume_2d_hand_computed(points, reference, expected):
    assert hypervolume(np.array(points, dtype=float).reshape(-1, 2), reference) == pytest.approx(expected)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_moocore(m):
    rng = np.random.default_rng(m)
    points = rng.random((40, m)) * 1.2  # some points fall outside the reference box
    reference = np.ones(m) * 1.1
    inside = points[np.all(points < reference, axis=1)]
    assert hypervolume(points, reference) == pytest.approx(moocore.hypervolume(inside, ref=reference))


def test_hypervolume_3d_hand_computed():
    assert hypervolume([[1.0, 1.0, 1.0]], (2.0, 2.0, 2.0)) == pytest.approx(1.0)
    assert hypervolume([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], (2.0, 2.0, 2.0)) == pytest.approx(3.0)


def test_quantile_normalisation_is_the_empirical_cdf():
    points = np.array([[0.3, 10.0], [0.1, 30.0], [0.2, 20.0], [0.2, 40.0]])
    out = normalise(points)
    np.testing.assert_allclose(out[:, 0], [1.0, 0.25, 0.75, 0.75])  # ties share the upper rank
    np.testing.assert_allclose(out[:, 1], [0.25, 0.75, 0.5, 1.0])
    # Against a fixed reference set: below its range -> 0, above -> 1, order preserved.
    reference = np.array([[0.1, 10.0], [0.2, 20.0]])
    np.testing.assert_allclose(normalise([[0.0, 15.0], [0.5, 25.0]], reference), [[0.0, 0.5], [1.0, 1.0]])


def test_quantile_hypervolume_invariant_to_monotone_rescaling():
    rng = np.random.default_rng(0)
    points = rng.random((30, 2))
    rescaled = np.column_stack([np.exp(5 * points[:, 0]), 1e6 * points[:, 1] ** 3])
    hv = Normalisation.fit(points).hypervolume(points)
    assert hv == pytest.approx(Normalisation.fit(rescaled).hypervolume(rescaled))
    assert 1.0 <= hv <= 4.0  # normalised points lie in (0, 1]^2, reference (2, 2)


def test_minmax_normalisation():
    points = np.array([[1.0, 100.0], [3.0, 300.0], [2.0, 200.0]])
    np.testing.assert_allclose(normalise(points, method="minmax"), [[0, 0], [1, 1], [0.5, 0.5]])
    out = normalise(points, method="minmax", bounds=([0.0, 0.0], [4.0, 400.0]))
    np.testing.assert_allclose(out, points / [4.0, 400.0])
    with pytest.raises(ValueError, match="quantile"):
        normalise(points, method="rank")


def test_hypervolume_trace():
    rng = np.random.default_rng(2)
    points = rng.random((50, 2))
    trace = hypervolume_trace(points)
    assert trace.shape == (50,)
    assert np.all(np.diff(trace) >= -1e-12)
    assert trace[-1] == pytest.approx(hypervolume(normalise(points)))
    for i in (0, 9, 29):
        assert trace[i] == pytest.approx(hypervolume(normalise(points[: i + 1], points)))
    # A shared normalisation puts two runs on one scale: the better run has the larger final value.
    worse = points + 0.5
    shared = Normalisation.fit(np.vstack([points, worse]))
    assert hypervolume_trace(points, shared)[-1] > hypervolume_trace(worse, shared)[-1]
