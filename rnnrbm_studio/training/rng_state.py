"""Random generators' states as plain lists and ints, which a checkpoint (torch.load(weights_only=True)) accepts."""
from __future__ import annotations

import numpy as np


def rng_state_to_lists(state):
    """RNG states as plain lists and ints, which torch.load(weights_only=True) accepts."""
    if isinstance(state, dict):
        return {k: rng_state_to_lists(v) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return [rng_state_to_lists(v) for v in state]
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, np.integer):
        return int(state)
    return state


_RNG_DTYPES = ("uint64", "uint32", "int64", "int32", "uint8")


def rng_state_from_lists(state):
    """The inverse of rng_state_to_lists."""
    if isinstance(state, dict):
        if "__ndarray__" in state:
            if state.get("dtype") not in _RNG_DTYPES:  # a file could name a dtype of gigabytes per item
                raise ValueError(f"unexpected dtype {state.get('dtype')!r} in a random state")
            return np.array(state["__ndarray__"], dtype=state["dtype"])
        return {k: rng_state_from_lists(v) for k, v in state.items()}
    if isinstance(state, list):
        return [rng_state_from_lists(v) for v in state]
    return state


def rng_state_as_tuples(state):
    """Lists back to the nested tuples random.Random.setstate wants."""
    return tuple(rng_state_as_tuples(v) for v in state) if isinstance(state, list) else state
