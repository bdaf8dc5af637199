"""Runtime assets of RNN-RBM Studio (shipped in the wheel as rnnrbm_studio.resources)."""
