"""Counter-based random masks in standard integer operations, for a compiler that cannot trace
its library's own generator (dynamo breaks the graph at every draw from a ``torch.Generator``).

The generator's whole state is a key, an int64 array ``[seed, counter]`` on the device. Draw
``c`` of seed ``s`` hashes every element index ``i`` to 32 bits,
``h = mix(mix(i·G mod 2³²) ^ mix(mix(s) + c mod 2³²))``, where ``mix`` is Mueller's 32-bit
integer hash (a bijection of [0, 2³²)); the draw hands back the key with ``c + 1``. Every
product stays below 2⁶³, so int64 arithmetic gives the same bits on every library, and the
whole draw is one elementwise chain that a compiler fuses into one kernel.
"""

from __future__ import annotations

import math

from ..arrays import Array, device, namespace

__all__ = ["bernoulli_mask", "new_key", "skipped"]

_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # Mueller's multiplier (odd, < 2**31)
_GOLDEN = 0x61C88647  # 2**32 / φ², odd, < 2**31: spreads consecutive indices


def _mix32(h: Array | int) -> Array | int:
    """Mueller's integer hash on values in [0, 2**32), in int64 (or Python int) arithmetic."""
    for _ in range(2):
        h = ((h ^ (h >> 16)) * _MIX) & _M32
    return h ^ (h >> 16)


def new_key(backend: object, seed: int) -> Array:
    """The key ``[seed mod 2**32, 0]`` as an int64 array on ``backend``'s device."""
    return backend.asarray([seed & _M32, 0], "int64")  # type: ignore[attr-defined]


def bernoulli_mask(key: Array, shape: tuple[int, ...], keep_prob: float, dtype: object) -> tuple[Array, Array]:
    """``(mask, next_key)``: ``mask`` of ``shape`` and ``dtype`` holds 1 with probability
    ``keep_prob`` (to 2⁻³²) and 0 otherwise; ``next_key`` is the key of the next draw."""
    xp = namespace(key)
    seed, counter = key[0], key[1]
    stream = _mix32((_mix32(seed) + counter) & _M32)
    index = xp.arange(math.prod(shape), dtype=xp.int64, device=device(key))
    bits = _mix32(_mix32((index * _GOLDEN) & _M32) ^ stream)
    mask = xp.astype(xp.reshape(bits < round(keep_prob * 2.0**32), shape), dtype)
    return mask, xp.stack([seed, counter + 1])


def skipped(key: Array, draws: int) -> Array:
    """The key ``draws`` draws after ``key`` (its counter advanced by ``draws``)."""
    xp = namespace(key)
    return xp.stack([key[0], key[1] + draws])
