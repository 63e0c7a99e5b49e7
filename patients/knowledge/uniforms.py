"""Per-case random draws as one row of uniforms, so realisation can be vectorised and stay exact.

Every random decision of a case (persona, synthetic PHI, pharmacogenomic results) takes the next
number from that case's own row, drawn once (`rng.random(n)`). A case therefore depends only on
its own seed, never on how many other cases were realised with it, and the draws cost a float
each instead of a numpy call each (`Generator.integers` and weighted `choice` cost 3-20 us).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate

import numpy as np


class Uniforms:
    """A fixed row of U[0, 1) numbers, handed out in order."""

    __slots__ = ("_next", "_values")

    def __init__(self, values: Sequence[float] | np.ndarray) -> None:
        self._values = values.tolist() if isinstance(values, np.ndarray) else list(values)
        self._next = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> Uniforms:
        """`n` uniforms from `rng`."""
        return cls(rng.random(n))

    def random(self) -> float:
        """The next uniform; running out is a bug in the caller's count, so it raises."""
        if self._next >= len(self._values):
            raise IndexError(f"all {len(self._values)} uniforms of this case are used")
        u = self._values[self._next]
        self._next += 1
        return u

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)

    def pick(self, cumulative: Sequence[float]) -> int:
        """An index drawn with the weights whose running sums are `cumulative`."""
        i = bisect_right(cumulative, self.random() * cumulative[-1])
        return min(i, len(cumulative) - 1)

    def choice(self, weights: Mapping[str, float]) -> str:
        """A key of `weights`, drawn in proportion to its weight."""
        keys = list(weights)
        return keys[self.pick(list(accumulate(weights.values())))]

    def digits(self, n: int) -> str:
        """`n` random decimal digits (n <= 15, within a float's precision)."""
        return f"{self.below(10**n):0{n}d}"

    def letters(self, n: int) -> str:
        """`n` random lowercase letters (n <= 10)."""
        k = self.below(26**n)
        out = []
        for _ in range(n):
            k, r = divmod(k, 26)
            out.append(chr(97 + r))
        return "".join(out)


BLOCK_ROWS = 1024
"""Rows per generator in `uniform_rows`: row i's numbers depend on (seed, stream, i) only."""


def uniform_rows(seed: int, stream: int, start: int, n: int, k: int) -> np.ndarray:
    """Rows `start` .. `start + n` of an endless (rows, `k`) table of uniforms for `seed`.

    Rows come in fixed blocks, one generator per block, so a row is the same whichever slice
    it is read in, and a cohort's draws cost one numpy call per thousand rows, not per row."""
    out = np.empty((n, k))
    first, last = start // BLOCK_ROWS, (start + n - 1) // BLOCK_ROWS if n else -1
    for b in range(first, last + 1):
        block = np.random.default_rng([seed, stream, b]).random((BLOCK_ROWS, k))
        lo, hi = max(start, b * BLOCK_ROWS), min(start + n, (b + 1) * BLOCK_ROWS)
        out[lo - start : hi - start] = block[lo - b * BLOCK_ROWS : hi - b * BLOCK_ROWS]
    return out
