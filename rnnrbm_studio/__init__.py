"""RNN-RBM Studio: train the RNN-RBM of Boulanger-Lewandowski et al. (2012) on MIDI and play it live."""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
