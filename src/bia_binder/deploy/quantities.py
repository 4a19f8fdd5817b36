"""Byte counts as Kubernetes quantities, exactly.

JupyterHub's ``ByteSpecification`` reads ``"8G"`` as 8 GiB (8·1024³ bytes) while Kubernetes reads
the quantity ``8G`` as 8·10⁹ bytes, 7 % less. A limit copied as text would silently shrink, so
everything that reaches Kubernetes as a quantity is written from the byte count: a binary suffix
when it divides exactly, the plain number of bytes otherwise. KubeSpawner traits get integers.
"""

from __future__ import annotations

_BINARY_SUFFIXES = (("Ei", 1024**6), ("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))
_SUFFIX_BYTES = {
    **dict(_BINARY_SUFFIXES),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


def quantity(size: int) -> str:
    """``8589934592`` → ``"8Gi"``; ``1500000000`` → ``"1500000000"`` (never a decimal suffix)."""
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    for suffix, factor in _BINARY_SUFFIXES:
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def bytes_of(value: str | int) -> int:
    """A Kubernetes memory/storage quantity (``"8Gi"``, ``"8G"``, ``"512"``, ``8``) in bytes."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    for suffix in sorted(_SUFFIX_BYTES, key=len, reverse=True):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * _SUFFIX_BYTES[suffix]
    return int(text)

