"""Random numbers for Gibbs sampling: numpy's SFC64 generator, optionally filled ahead on another core.

Random numbers are a third of CD-k's time on the CPU. numpy's SFC64 fills float32 uniforms about
three times faster than torch's CPU generator; the training chains go further and split each 64-bit
word into four 16-bit uniforms (k + 1/2) / 2^16 (`uniform16`), twice as cheap again. A Bernoulli draw
u < p then has P(1) = p rounded to a multiple of 2^-16 (an error below 8e-6, far under CD's own noise;
tests/test_model.py checks the chains' exact distributions). Generation and AIS keep float uniforms.

While numpy fills it releases the GIL, so a background thread can draw the next block while the
training thread multiplies matrices. Prefetching never changes the numbers: the consumer takes them in
exactly the order a plain generator would give them, so a run is bitwise the same with or without it,
and a checkpoint records the state as if only the consumed numbers had been drawn.
"""
from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Sequence

import numpy as np
import torch

BLOCK_SIZE = 1 << 21  # uniforms per prefetched block (8 MiB of float32)
DEPTH = 2  # blocks waiting ahead of the consumer


RAW = np.dtype(np.uint64)  # a stream of raw 64-bit words (uniform16's source)
FLOAT = np.dtype(np.float32)  # a stream of float32 uniforms


def _draw(generator: np.random.Generator, kind: np.dtype, n: int) -> np.ndarray:
    if kind == RAW:
        return generator.bit_generator.random_raw(n)
    return generator.random(n, dtype=np.float32)


class UniformStream:
    """float32 uniforms (or raw 64-bit words) drawn ahead by a background thread from a generator state."""

    def __init__(self, state: dict, block_size: int = BLOCK_SIZE, depth: int = DEPTH, kind: np.dtype = FLOAT):
        self.kind = np.dtype(kind)
        self._block_size = block_size
        self._blocks: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._generator = np.random.Generator(np.random.SFC64())
        self._generator.bit_generator.state = state
        self._current: np.ndarray = np.empty(0, dtype=self.kind)
        self._current_state = state  # generator state before the current block
        self._offset = 0
        self._thread = threading.Thread(target=self._produce, name="rnnrbm-uniforms", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        while not self._stop.is_set():
            state = copy.deepcopy(self._generator.bit_generator.state)
            block = _draw(self._generator, self.kind, self._block_size)
            while not self._stop.is_set():
                try:
                    self._blocks.put((state, block), timeout=0.1)
                    break
                except queue.Full:
                    continue

    def fill(self, out: np.ndarray) -> None:
        """Fill a contiguous array of the stream's kind with its next out.size numbers."""
        flat = out.reshape(-1)
        done = 0
        while done < flat.size:
            if self._offset == self._current.size:
                self._current_state, self._current = self._blocks.get()
                self._offset = 0
            n = min(flat.size - done, self._current.size - self._offset)
            flat[done:done + n] = self._current[self._offset:self._offset + n]
            self._offset += n
            done += n

    def consumed_state(self) -> dict:
        """The generator state after exactly the numbers consumed so far."""
        generator = np.random.Generator(np.random.SFC64())
        generator.bit_generator.state = self._current_state
        if self._offset:
            _draw(generator, self.kind, self._offset)
        return generator.bit_generator.state

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class BernoulliSampler:
    """Bernoulli and logistic draws from a seeded numpy SFC64 generator."""

    def __init__(self, seed: int | Sequence[int] | None = None):
        self.rng = np.random.Generator(np.random.SFC64(seed))
        self._stream: UniformStream | None = None

    # ------------------------------------------------------------------------ prefetching
    def start_prefetch(self, kind: np.dtype = RAW) -> None:
        """Draw numbers ahead on a background thread until stop_prefetch(): raw words (what the training
        chains consume) or float32 uniforms. A draw of the other kind hands the stream back first."""
        if self._stream is None:
            self._stream = UniformStream(self.rng.bit_generator.state, kind=kind)

    def stop_prefetch(self) -> None:
        if self._stream is not None:
            self.rng.bit_generator.state = self._stream.consumed_state()
            self._stream.close()
            self._stream = None

    # ----------------------------------------------------------------------------- draws
    def _fill(self, out: np.ndarray) -> np.ndarray:
        if self._stream is not None and out.dtype == self._stream.kind:
            self._stream.fill(out)
            return out
        if self._stream is not None:  # keep one stream of numbers: hand over to this thread
            self.stop_prefetch()
        if out.dtype == RAW:
            out[...] = self.rng.bit_generator.random_raw(out.size).reshape(out.shape)
        else:
            self.rng.random(out=out, dtype=out.dtype)
        return out

    def uniform16(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n uniforms (k + 1/2) / 2^16, k uniform in 0..65535, four from each 64-bit word: (n,).

        u < p is then a Bernoulli draw with P(1) = round(p 2^16) / 2^16 (see the module's doc)."""
        words = self._fill(np.empty((n + 3) // 4, dtype=RAW))
        lanes = torch.from_numpy(words.view(np.int16)[:n])  # k - 2^15, as signed 16-bit integers
        # (k - 2^15) / 2^16 + 1/2 + 2^-17, every step exact in float32 and float64
        return lanes.to(dtype).mul_(1.0 / 65536).add_(0.5 + 2.0 ** -17)

    def uniform(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        return torch.from_numpy(self._fill(np.empty(shape, dtype=np_dtype)))

    def fill_uniform(self, out: torch.Tensor) -> torch.Tensor:
        """Fill a contiguous CPU float tensor in place with U(0, 1) draws; returns it."""
        self._fill(out.numpy())
        return out

    def __call__(self, probabilities: torch.Tensor) -> torch.Tensor:
        """A 0/1 tensor with P(1) = probabilities (to 2^-16: uniform16), same shape and dtype."""
        u = self.uniform16(probabilities.numel(), probabilities.dtype).view(probabilities.shape)
        return (u < probabilities).to(probabilities.dtype)

    def logistic(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard logistic noise L: (x + L > 0) is Bernoulli(sigmoid(x))."""
        u = self.uniform(shape, dtype).clamp_(1e-12, 1 - 1e-7)
        return torch.log(u) - torch.log1p(-u)

    # ----------------------------------------------------------------------------- state
    def get_state(self) -> dict:
        if self._stream is not None:
            return self._stream.consumed_state()
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        kind = self._stream.kind if self._stream is not None else None
        self.stop_prefetch()
        self.rng.bit_generator.state = state
        if kind is not None:
            self.start_prefetch(kind)
