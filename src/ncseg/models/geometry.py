"""What input sizes a network takes and how much of them it answers for: shared by every architecture and by
the tiling that runs them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Which input sizes a network takes and how much smaller its output is.

    Valid inputs are n ≡ offset (mod divisor); the output is n - 2 * margin.
    """

    divisor: int
    offset: int
    margin: int

    def fit(self, n: int) -> int:
        """The smallest valid input size >= n."""
        return n + (self.offset - n) % self.divisor
