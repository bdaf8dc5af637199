"""Reading what a synth played: the energy of its audio around given MIDI pitches (an FFT)."""
from __future__ import annotations

import numpy as np


def frequency(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def pitch_energies(samples: np.ndarray, rate: int, notes) -> dict[int, float]:
    """For each MIDI note: the spectrum's energy within a quarter tone of its fundamental."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)))) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1.0 / rate)
    energies = {}
    for note in notes:
        low, high = frequency(note - 0.5), frequency(note + 0.5)
        energies[note] = float(spectrum[(freqs >= low) & (freqs < high)].sum())
    return energies


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
