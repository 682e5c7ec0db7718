"""Pareto fronts, normalisation and hypervolume for comparing searches (all objectives minimised).

Objectives live on different scales (error in [0, 1], parameters in millions), so the paper compares
fronts by hypervolume on *quantile-normalised* objectives with reference point (2, 2). To compare
several runs, every run must be normalised with the same reference set: ``Normalisation.fit`` builds
that once (e.g. from the union of all runs' evaluations) and can be written into summary.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

QUANTILE = "quantile"
MINMAX = "minmax"
NORMALISATIONS = (QUANTILE, MINMAX)
DEFAULT_REFERENCE_POINT = (2.0, 2.0)


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """A float (n, m) array; an empty input becomes shape (0, 0) so callers can test ``len``."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return array.reshape(0, array.shape[1] if array.ndim == 2 else 0)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n points x m objectives), got shape {array.shape}")
    return array


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]], keep_duplicates: bool = True) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (minimisation).

    A row is dominated if another row is <= in every objective and < in at least one. Identical rows do
    not dominate each other, so by default *all* copies of a non-dominated point are kept; with
    ``keep_duplicates=False`` only the first copy is. Rows holding NaN are never on the front.
    """
    pts = _as_points(points)
    n = len(pts)
    mask = ~np.isnan(pts).any(axis=1) if n else np.zeros(0, dtype=bool)
    # Simple cull: every point a surviving point dominates is dropped. A dominated point is always
    # dominated by some non-dominated one (finite strict order), which survives and removes it.
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(pts[i] <= pts, axis=1) & np.any(pts[i] < pts, axis=1)
        mask[dominated] = False
    if not keep_duplicates and mask.any():
        front = np.flatnonzero(mask)
        _, first = np.unique(pts[front], axis=0, return_index=True)
        mask[:] = False
        mask[front[first]] = True
    return mask


def _check_method(method: str) -> None:
    if method not in NORMALISATIONS:
        raise ValueError(f"Unknown normalisation method '{method}'. Choose one of: {', '.join(NORMALISATIONS)}")


@dataclass(frozen=True)
class Normalisation:
    """A fixed map from raw objectives to [0, 1]-ish scores, plus the hypervolume reference point.

    ``quantile``: each objective goes through the empirical CDF of the reference values
    (``#(reference <= v) / n``), so the paper's reference point (2, 2) is always dominated.
    ``minmax``: ``(v - low) / (high - low)`` with ``reference`` holding ``(low, high)`` per objective;
    values outside the bounds are not clipped (they simply fall outside the box the reference point
    spans). ``reference`` is plain nested tuples so ``to_dict`` can go straight into JSON.
    """

    method: str
    reference: tuple[tuple[float, ...], ...]
    reference_point: tuple[float, ...] = DEFAULT_REFERENCE_POINT
    objectives: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        _check_method(self.method)
        object.__setattr__(self, "reference", tuple(tuple(float(v) for v in col) for col in self.reference))
        object.__setattr__(self, "reference_point", tuple(float(v) for v in self.reference_point))
        if self.objectives is not None:
            object.__setattr__(self, "objectives", tuple(self.objectives))
            if len(self.objectives) != len(self.reference):
                raise ValueError(f"{len(self.objectives)} objective names for {len(self.reference)} objectives")
        if len(self.reference_point) != len(self.reference):
            raise ValueError(
                f"reference point {self.reference_point} has {len(self.reference_point)} coordinates "
                f"for {len(self.reference)} objectives"
            )

    @classmethod
    def fit(
        cls,
        reference_points: np.ndarray | Sequence[Sequence[float]],
        method: str = QUANTILE,
        reference_point: Sequence[float] | None = None,
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
        objectives: Sequence[str] | None = None,
    ) -> Normalisation:
        """Build the normalisation from a reference set (or, for ``minmax``, from explicit ``bounds``)."""
        _check_method(method)
        ref = _as_points(reference_points)
        if method == MINMAX and bounds is not None:
            low, high = (np.asarray(b, dtype=float) for b in bounds)
            columns = tuple(zip(low.tolist(), high.tolist()))
        else:
            ref = ref[~np.isnan(ref).any(axis=1)] if len(ref) else ref
            if len(ref) == 0:
                raise ValueError("A normalisation needs at least one finite reference point (or minmax bounds)")
            if method == QUANTILE:
                columns = tuple(tuple(np.sort(ref[:, j]).tolist()) for j in range(ref.shape[1]))
            else:
                columns = tuple(zip(ref.min(axis=0).tolist(), ref.max(axis=0).tolist()))
        if reference_point is None:
            reference_point = (DEFAULT_REFERENCE_POINT[0],) * len(columns)
        return cls(method, columns, tuple(reference_point), None if objectives is None else tuple(objectives))

    def transform(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        pts = _as_points(points)
        if len(pts) == 0:
            return pts.reshape(0, len(self.reference))
        if pts.shape[1] != len(self.reference):
            raise ValueError(f"points have {pts.shape[1]} objectives, the normalisation {len(self.reference)}")
        out = np.empty_like(pts)
        for j, column in enumerate(self.reference):
            col = np.asarray(column)
            if self.method == QUANTILE:
                out[:, j] = np.searchsorted(col, pts[:, j], side="right") / len(col)
            else:
                low, high = col
                span = high - low
                out[:, j] = (pts[:, j] - low) / span if span > 0 else 0.0
        out[np.isnan(pts)] = np.nan
        return out

    def hypervolume(self, points: np.ndarray | Sequence[Sequence[float]]) -> float:
        """Hypervolume of the raw ``points`` after this normalisation, w.r.t. ``reference_point``."""
        return hypervolume(self.transform(points), self.reference_point)


def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact sweep: sort by the first objective; each point adds the strip its second objective opens."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    volume, best_y = 0.0, reference[1]
    for x, y in points[order]:
        if y < best_y:
            volume += (reference[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def hypervolume(
    points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float] = DEFAULT_REFERENCE_POINT
) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation, any number of objectives).

    Only points strictly better than the reference in every objective contribute; NaN rows are ignored.
    2-D uses an exact sweep; higher dimensions call ``moocore.hypervolume``.
    """
    pts = _as_points(points)
    ref = np.asarray(reference, dtype=float)
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] != len(ref):
        raise ValueError(f"points have {pts.shape[1]} objectives, the reference point {len(ref)}")
    pts = pts[~np.isnan(pts).any(axis=1)]
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        return _hypervolume_2d(pts, ref)
    import moocore  # only needed beyond two objectives

    return float(moocore.hypervolume(pts, ref=ref))


def hypervolume_trace(
    points_in_order: np.ndarray | Sequence[Sequence[float]],
    normalisation: Normalisation | None = None,
    method: str = QUANTILE,
) -> np.ndarray:
    """Hypervolume after each evaluation, on one fixed normalisation (for "HV vs evaluations" plots).

    Without ``normalisation`` one is fitted on all of ``points_in_order`` (so the last value equals
    the run's final hypervolume); pass a shared one to put several runs on one scale.
    """
    pts = _as_points(points_in_order)
    if len(pts) == 0:
        return np.zeros(0)
    norm = normalisation or Normalisation.fit(pts, method=method)
    scaled = norm.transform(pts)
    trace = np.empty(len(scaled))
    front = scaled[:0]
    for i, point in enumerate(scaled):
        # Only the running front matters, which keeps the trace cheap for long searches.
        candidates = np.vstack([front, point[None, :]])
        front = candidates[pareto_mask(candidates, keep_duplicates=False)]
        trace[i] = hypervolume(front, norm.reference_point)
    return trace
