"""Stable seed derivation, so that every random stream can be rebuilt from one integer."""

import hashlib

MAX_SEED = 2**31 - 1


def derive_seed(*parts: object) -> int:
    """Return a seed in ``[0, 2**31 - 1]`` determined by ``parts`` alone.

    The same parts give the same seed on every machine and Python version (no ``hash()``),
    and different parts give unrelated seeds, e.g. ``derive_seed(study_seed, "trial", 7)``.
    """
    text = "/".join(repr(part) for part in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % MAX_SEED
