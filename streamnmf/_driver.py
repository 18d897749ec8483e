"""What every executor of a fit shares: the fit's position in its data, and the in-process
executor.

The estimator's ``fit`` is the one driver: it validates, checks the checkpoint target, starts
the stage loop from the executor's leading rows, resumes, and owns stopping (the loop's
listeners) and the checkpoint cadence. An executor feeds the loop: :class:`InProcess` streams
a source's blocks through :meth:`StageLoop.consume`; the Dask executor
(:class:`streamnmf._dask.DaskStages`) computes each stage's statistics on the workers and
merges them with :meth:`StageLoop.add_stats`. Both move the :class:`FitPosition`.
"""

import time

from ._blas import BlasThreads
from .io.sources import leading_rows

__all__ = ["FitPosition", "InProcess"]


class FitPosition:
    """Where a fit stands in its data: ``(pass, samples of that pass consumed)``.

    A stage may end inside a block; :meth:`mark` before the block and :meth:`at` then give the
    exact position of any sample count reached since.

    Parameters
    ----------
    n_samples : int
        Samples of one pass (-1: unknown, a stream).
    """

    def __init__(self, n_samples):
        self.n_samples = int(n_samples)
        self.position = (0, 0)
        self._anchor = ((0, 0), 0)

    def _normalized(self, epoch, offset):
        return (epoch + 1, 0) if 0 <= self.n_samples <= offset else (epoch, offset)

    def mark(self, samples_seen):
        """Remember the position and the loop's ``samples_seen`` before a block."""
        self._anchor = (self.position, samples_seen)

    def at(self, samples_seen):
        """The position once the loop has seen ``samples_seen`` samples (since the mark)."""
        (epoch, offset), seen = self._anchor
        return self._normalized(epoch, offset + samples_seen - seen)

    def advance(self, samples_seen):
        """Move to :meth:`at` ``samples_seen``."""
        self.position = self.at(samples_seen)

    def move_to(self, position, samples_seen):
        """Jump to ``position`` (the end of a planned stage), reached at ``samples_seen``."""
        self.position = self._normalized(*position)
        self.mark(samples_seen)

    def end_pass(self, epoch):
        """Pass ``epoch`` read to its end: the next begins."""
        self.position = (epoch + 1, 0)


class InProcess:
    """Runs a fit's stages in this process, block by block from a source.

    Parameters
    ----------
    source : Source
        Of known length (``n_samples``), validated.
    blas_threads : int, "auto" or None
        The estimator's BLAS thread policy.
    """

    def __init__(self, source, blas_threads=None):
        self.source = source
        self.blas_threads = blas_threads
        self.n_samples, self.n_features = source.n_samples, source.n_features
        self.dtype = source.dtype
        # what fixes the order of the samples: a resumed fit must read them the same way
        self.source_order = dict(
            block_rows=int(getattr(source, "block_rows", None) or -1),
            shuffle_seed=int(getattr(source, "seed", None) if getattr(source, "shuffle", False)
                             else -1),
        )

    def leading(self):
        """The leading rows a data-driven start reads (copied: a source may reuse buffers)."""
        blocks = self.source.blocks()
        try:
            return leading_rows(blocks, self.n_features, self.n_samples)
        finally:
            if hasattr(blocks, "close"):
                blocks.close()  # stops a read-ahead thread at once

    def run(self, loop, position, n_stages, after_block):
        """Stages over the source from ``position`` until the loop stops or ``n_stages``.

        ``after_block()`` runs after every block (the driver's checkpoint cadence).
        """
        with BlasThreads(self.blas_threads) as blas:
            while not loop.stopped and loop.stage < n_stages:
                epoch, offset = position.position
                waited = time.perf_counter()
                for block in self.source.blocks(start=offset, epoch=epoch):
                    # waiting for the source (reading, validation) is part of fitting time
                    loop.seconds += time.perf_counter() - waited
                    blas.update()
                    position.mark(loop.samples_seen)
                    loop.consume(block)
                    position.advance(loop.samples_seen)
                    after_block()
                    if loop.stopped:
                        break
                    waited = time.perf_counter()
                else:
                    position.end_pass(epoch)

    def release(self):
        """Nothing to release in process."""
