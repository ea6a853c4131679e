"""Many small least-squares fits at once: Levenberg-Marquardt on a batch of independent problems.

An arc holds a hundred lines and a trace a few dozen samples, each a 4-5 parameter fit of a dozen pixels;
one MINPACK call per fit spends most of its time in Python overhead.  Here every fit takes its own
steps and damping, but each iteration is a few numpy operations over the whole batch.  The minimum
found is the one MINPACK finds (same algorithm, Marquardt's scaling, stricter tolerances)."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# A step this small relative to the parameters, a cost lowered this little relative to itself, or a damping
# this large (no step lowers the cost any more) means the fit has converged; MINPACK's default tolerances
# are 1.5e-8.
STEP_TOLERANCE = 1e-10
COST_TOLERANCE = 1e-10
MAX_DAMPING = 1e12
MAX_ITERATIONS = 50

# (parameters: fits x parameters, which fits: indices) -> (residuals: fits x points, Jacobian: fits x points x
# parameters), for those fits only
Problem = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class BatchFit(NamedTuple):
    params: np.ndarray       # fits x parameters
    converged: np.ndarray    # fits: a minimum was reached within MAX_ITERATIONS
    covariance: np.ndarray   # fits x parameters x parameters: (J^T J)^-1 (unscaled); inf where singular
    chi2: np.ndarray         # fits: the sum of squared (weighted) residuals


def levenberg_marquardt(problem: Problem, start: np.ndarray, weights: np.ndarray,
                        lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> BatchFit:
    """Minimise each fit's sum of squared ``weights * residuals`` from ``start``.  Parameters stay within
    ``lower``/``upper`` (per parameter): steps are clipped to them, and a parameter on a bound that the cost
    pushes outward is held there while the others move.  ``weights`` (fits x points) of 0 leave a point out
    (windows of unequal length padded to one)."""
    n_fits, n_params = np.shape(start)
    low = np.full(n_params, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    high = np.full(n_params, np.inf) if upper is None else np.asarray(upper, dtype=float)
    params = np.clip(np.array(start, dtype=float), low, high)

    def evaluate(values, rows):
        residuals, jacobian = problem(values, rows)
        residuals, jacobian = residuals * weights[rows], jacobian * weights[rows][:, :, None]
        return residuals, jacobian, np.einsum("nw,nw->n", residuals, residuals)

    residuals, jacobian, cost = evaluate(params, np.arange(n_fits))
    damping = np.full(n_fits, 1e-3)
    converged = np.zeros(n_fits, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        rows = np.flatnonzero(~converged & np.isfinite(cost))
        if rows.size == 0:
            break
        normal = np.einsum("nwi,nwj->nij", jacobian[rows], jacobian[rows])
        gradient = np.einsum("nwi,nw->ni", jacobian[rows], residuals[rows])
        # a parameter on its bound that the cost would push beyond stays there: the others move without it
        held = (params[rows] <= low) & (gradient > 0) | (params[rows] >= high) & (gradient < 0)
        normal = np.where(held[:, :, None] | held[:, None, :], 0.0, normal)
        normal[held[:, :, None] & np.eye(n_params, dtype=bool)] = 1.0
        gradient = np.where(held, 0.0, gradient)
        scale = np.maximum(np.diagonal(normal, axis1=1, axis2=2), 1e-300)
        damped = normal + damping[rows, None, None] * np.eye(n_params) * scale[:, None, :]
        step = -_solve(damped, gradient)
        trial = np.clip(params[rows] + step, low, high)
        trial_residuals, trial_jacobian, trial_cost = evaluate(trial, rows)
        better = np.isfinite(trial_cost) & (trial_cost < cost[rows])
        settled = better & (cost[rows] - trial_cost <= COST_TOLERANCE * cost[rows])
        moved = np.abs(trial - params[rows]) > STEP_TOLERANCE * (np.abs(params[rows]) + STEP_TOLERANCE)
        accepted = rows[better]
        params[accepted], cost[accepted] = trial[better], trial_cost[better]
        residuals[accepted], jacobian[accepted] = trial_residuals[better], trial_jacobian[better]
        damping[rows] = np.where(better, damping[rows] / 10.0, damping[rows] * 10.0)
        converged[rows] |= settled | ~moved.any(axis=1) | (damping[rows] > MAX_DAMPING)
    normal = np.einsum("nwi,nwj->nij", jacobian, jacobian)
    covariance = np.full_like(normal, np.inf)
    invertible = np.isfinite(normal).all(axis=(1, 2))
    if invertible.any():
        invertible[invertible] = np.linalg.cond(normal[invertible]) < 1e14
        covariance[invertible] = np.linalg.inv(normal[invertible])
    return BatchFit(params, converged & np.isfinite(cost), covariance, cost)


def _solve(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each matrix's solution for its vector; least squares where one is singular (a parameter the data no
    longer constrain, e.g. the centre of a zero-amplitude line)."""
    try:
        return np.linalg.solve(matrices, vectors[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        return np.einsum("nij,nj->ni", np.linalg.pinv(matrices), vectors)
