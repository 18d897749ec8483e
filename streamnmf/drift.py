"""Streams that change: detecting a change and re-seeding the components it made obsolete.

A streaming fit converges to the components of the stream it has seen. When the stream
changes (topics come and go, a sensor ages), the decoding matrix of the old components no
longer explains the new samples, and neither the update nor a threshold schedule that only
falls brings the fit back: the threshold sits at round-off and the solve fits the decoding
errors. :meth:`AND.partial_fit <streamnmf.AND.partial_fit>` therefore watches every stage's
*prequential* error, the mean squared residual of its samples under the components the stage
started from (before it learns from them), and on a jump:

1. discards the stage's update (it was learned from codes decoded with obsolete components);
2. re-seeds the components from the call's rows (:func:`reseed_components`): the purest rows
   by the successive projection algorithm, each matched to an old component; an old
   component whose direction a new pick confirms is kept as it was (it is still exact), the
   others are replaced by their picks;
3. restarts the threshold schedule (from ``alpha0`` when a component was replaced) and runs
   up to ``catch_up`` extra stages on each call's block while the schedule lowers its
   threshold carefully, so that the careful start costs calls rather than fresh blocks.

See docs/design.md ("Drift") for the measurements behind the defaults.
"""

import numbers

import numpy as np
import scipy.optimize

__all__ = ["DriftDetector", "reseed_components"]


class DriftDetector:
    """Flags a stage whose prequential error jumped: the stream changed.

    Stage ``j`` is a change when its prequential error ``e_j`` (mean squared residual of its
    samples under the stage's starting components, relative to their mean squared norm) is

    * more than ``ratio`` times the smallest of the previous ``window`` stages' errors, and
    * above ``floor`` (relative): below it the residual is round-off, whose relative
      fluctuations are large and mean nothing.

    While a fit converges its errors fall; on a stationary stream they fluctuate by the
    sampling noise of a block (a few percent), so a four-fold jump is a change in the data.
    The first ``window`` stages after a start or a re-seed are never flagged.

    Parameters
    ----------
    ratio : float, default=4.0
        Jump factor of the prequential error that counts as a change.
    floor : float, default=1e-8
        Smallest relative prequential error that can be a change.
    window : int, default=5
        Stages the reference (their smallest error) is taken over.
    keep_cosine : float, default=0.8
        :func:`reseed_components`: an old component is kept when the cosine with its matched
        pick is at least this.
    catch_up : int, default=3
        Extra stages per ``partial_fit`` call on the call's block while the threshold is
        still being lowered carefully after a re-seed (one stage per call otherwise).
    """

    def __init__(self, ratio=4.0, floor=1e-8, window=5, keep_cosine=0.8, catch_up=3):
        if not ratio > 1:
            raise ValueError(f"DriftDetector: ratio must be > 1, got {ratio!r}.")
        if not floor >= 0:
            raise ValueError(f"DriftDetector: floor must be >= 0, got {floor!r}.")
        for name, value in (("window", window), ("catch_up", catch_up)):
            if not isinstance(value, numbers.Integral) or value < (1 if name == "window" else 0):
                raise ValueError(
                    f"DriftDetector: {name} must be an integer >= "
                    f"{1 if name == 'window' else 0}, got {value!r}."
                )
        if not -1 <= keep_cosine <= 1:
            raise ValueError(
                f"DriftDetector: keep_cosine must be in [-1, 1], got {keep_cosine!r}.")
        self.ratio = float(ratio)
        self.floor = float(floor)
        self.window = int(window)
        self.keep_cosine = float(keep_cosine)
        self.catch_up = int(catch_up)
        self._recent = []  # relative prequential errors since the last start or re-seed

    def observe(self, relative_error):
        """Record a stage's relative prequential error; return whether it is a change."""
        recent = self._recent
        change = bool(
            len(recent) >= self.window and np.isfinite(relative_error)
            and relative_error > self.floor
            and relative_error > self.ratio * min(recent[-self.window:])
        )
        recent.append(float(relative_error))
        del recent[:-self.window]
        return change

    def reset(self):
        """Forget the reference (after a re-seed: the errors start afresh)."""
        self._recent = []

    def state(self):
        """The recent errors, as floats (for checkpoints)."""
        return np.asarray(self._recent, dtype=np.float64)

    def set_state(self, values):
        """Restore what :meth:`state` returned."""
        self._recent = [float(v) for v in np.asarray(values).ravel()]

    def __repr__(self):
        return (f"DriftDetector(ratio={self.ratio!r}, floor={self.floor!r}, "
                f"window={self.window!r}, keep_cosine={self.keep_cosine!r}, "
                f"catch_up={self.catch_up!r})")


def _unit_rows(M):
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return M / np.where(norms > 0, norms, 1.0)


def reseed_components(components, picks, keep_cosine=0.8):
    """Keep the components that new pure rows confirm, replace the others by those rows.

    Every pick (a candidate component from the new data, e.g. the successive projection
    algorithm's purest rows) is matched one to one with an old component by the largest
    total cosine (Hungarian assignment). An old component whose matched pick has cosine at
    least ``keep_cosine`` is still a direction of the data: it is kept, exact as it was, at
    its own scale. The others are replaced by their picks, rescaled to the old component's
    norm (so the codes keep their units).

    Parameters
    ----------
    components : ndarray of shape (n_components, n_features)
        The old components.
    picks : ndarray of shape (n_components, n_features)
        Candidate components from the new data.
    keep_cosine : float, default=0.8

    Returns
    -------
    new_components : ndarray of shape (n_components, n_features), float64
    kept : ndarray of shape (n_components,), bool
        Which old components were kept.
    """
    components = np.asarray(components, dtype=np.float64)
    picks = np.asarray(picks, dtype=np.float64)
    if picks.shape != components.shape:
        raise ValueError(
            f"reseed_components: picks have shape {picks.shape}, expected the components' "
            f"shape {components.shape}.")
    cosine = _unit_rows(components) @ _unit_rows(picks).T  # (old, pick)
    old, pick = scipy.optimize.linear_sum_assignment(cosine, maximize=True)
    kept = np.zeros(components.shape[0], dtype=bool)
    kept[old] = cosine[old, pick] >= keep_cosine
    new = components.copy()
    replace = old[~kept[old]]
    sources = pick[~kept[old]]
    old_norms = np.linalg.norm(components[replace], axis=1)
    pick_norms = np.linalg.norm(picks[sources], axis=1)
    scale = np.divide(old_norms, pick_norms, out=np.ones_like(old_norms),
                      where=(pick_norms > 0) & (old_norms > 0))
    new[replace] = picks[sources] * scale[:, None]
    return new, kept
