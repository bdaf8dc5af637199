"""The RNN-RBM of Boulanger-Lewandowski, Bengio & Vincent (ICML 2012).

At each time step t an RBM over the piano keys has time-dependent biases given by an RNN:

    bv_t = bv + u_{t-1} Wuv          bh_t = bh + u_{t-1} Wuh
    u_t  = tanh(bu + v_t Wvu + u_{t-1} Wuu),   u_0 = 0 (or a learned vector)

Training minimises the mean over frames of F(v_t) - F(v*_t), the CD-k negative sample v*_t held
constant, so the gradient flows through the biases into the RNN, exactly as the Theano tutorial
`rnnrbm.py` does. Shapes below: B sequences, T frames, V visible units (88 keys), H hidden units,
R recurrent units.

The recurrence can also be gated (recurrence="gru", recurrences.py): the same RBM, its biases from the
same u_{t-1}, but u_t = (1 - z_t) n_t + z_t u_{t-1}, a memory that can hold a unit's value across bars.
The paper's tanh stays the default and the benchmark row: the gated one measured worse (docs/quality.md,
round five) and stays an engine option only, so the comparison can be run again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from .recurrences import GruRecurrence, TanhRecurrence
from .sampling import BernoulliSampler

# numpy's BLAS only multiplies tiny per-step matrices here (the RNN's backward pass); its worker
# threads spin between calls and fight torch's threads for the cores, making it ~3x slower.
threadpool_limits(1, user_api="blas")

LOWEST_PIANO_KEY = 21  # A0
N_PIANO_KEYS = 88  # A0 .. C8 (MIDI 21..108)
RECURRENCES = ("tanh", "gru")
# frames of a batch on which the training monitor reconstructs the data when the negative chain
# starts elsewhere (persistent chains): enough for an epoch's mean, a few percent of an update's time
MONITOR_FRAMES = 64


@dataclass
class RnnRbmConfig:
    """The model's settings; the defaults are the tutorial's. Each field's metadata holds its help, as
    TrainConfig's (training/config.py): the command line's options are generated from both."""

    n_visible: int = field(default=N_PIANO_KEYS, metadata={
        "internal": "the app reads, plays and writes the 88 piano keys (limits.py)"})
    lowest_pitch: int = field(default=LOWEST_PIANO_KEY, metadata={  # MIDI note of visible unit 0
        "internal": "the app reads, plays and writes the 88 piano keys (limits.py)"})
    n_hidden: int = field(default=150, metadata={"help": "RBM hidden units", "option": "--hidden"})
    n_hidden_recurrent: int = field(default=100, metadata={"help": "RNN units", "option": "--recurrent"})
    cd_k: int = field(default=15, metadata={"help": "Gibbs steps of CD-k, the training chain"})
    gibbs_steps: int = field(default=25, metadata={"help": "Gibbs steps per generated frame, stored with the model"})
    learned_u0: bool = field(default=False, metadata={
        "help": "learn the initial RNN state, which the tutorial holds at 0"})
    recurrence: str = field(default="tanh", metadata={
        "help": "the RNN's cell: tanh, the paper's, or gru, gated units that can hold a value for long; gru "
                "measured worse on both benchmarks' valid splits and no better on repetition (docs/quality.md, "
                "round five), so the window does not offer it"})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RnnRbmConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RnnRbm(nn.Module):
    def __init__(self, config: RnnRbmConfig | None = None):
        super().__init__()
        self.config = config = config or RnnRbmConfig()
        V, H, R = config.n_visible, config.n_hidden, config.n_hidden_recurrent
        self.W = nn.Parameter(torch.randn(V, H) * 0.01)
        self.bv = nn.Parameter(torch.zeros(V))
        self.bh = nn.Parameter(torch.zeros(H))
        self.Wuh = nn.Parameter(torch.randn(R, H) * 1e-4)
        self.Wuv = nn.Parameter(torch.randn(R, V) * 1e-4)
        self.Wvu = nn.Parameter(torch.randn(V, R) * 1e-4)
        self.Wuu = nn.Parameter(torch.randn(R, R) * 1e-4)
        self.bu = nn.Parameter(torch.zeros(R))
        self.u0 = nn.Parameter(torch.zeros(R)) if config.learned_u0 else None
        if config.recurrence not in RECURRENCES:
            raise ValueError(f"unknown recurrence {config.recurrence!r} (one of {', '.join(RECURRENCES)})")
        self.gated = config.recurrence == "gru"
        if self.gated:  # the update gate z and the reset gate r, side by side: [z | r]
            self.Wvg = nn.Parameter(torch.randn(V, 2 * R) * 1e-4)
            self.Wug = nn.Parameter(torch.randn(R, 2 * R) * 1e-4)
            self.bg = nn.Parameter(torch.zeros(2 * R))

    PARAMETER_NAMES = ("W", "bv", "bh", "Wuh", "Wuv", "Wvu", "Wuu", "bu")

    # ----------------------------------------------------------------------------------- RNN
    def initial_state(self, batch_size: int | None = None) -> torch.Tensor:
        """u_0: (R,) or (B, R)."""
        R = self.config.n_hidden_recurrent
        u0 = self.u0.detach() if self.u0 is not None else self.bu.new_zeros(R)
        return u0.clone() if batch_size is None else u0.expand(batch_size, R).clone()

    def recurrence(self, v: torch.Tensor, u_start: torch.Tensor | None = None) -> torch.Tensor:
        """Run the RNN over frames. v: (B, T, V) -> u: (B, T, R), u[:, t] = u_{t+1} (after frame t)."""
        frames = v.reshape(-1, v.shape[-1])  # (B T, V)
        inputs = torch.addmm(self.bu, frames, self.Wvu)  # (B T, R)
        if self.gated:
            inputs = torch.cat([torch.addmm(self.bg, frames, self.Wvg), inputs], dim=1)  # (B T, 3R): [z | r | n]
            return GruRecurrence.apply(inputs.reshape(*v.shape[:2], -1), self._u_start(v, u_start),
                                       torch.cat([self.Wug, self.Wuu], dim=1))
        return TanhRecurrence.apply(inputs.reshape(*v.shape[:2], -1), self._u_start(v, u_start), self.Wuu)

    def cell(self, u_prev: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One step of the recurrence in plain torch: u_t from u_{t-1} (B, R) and frame v_t (B, V)."""
        candidate = torch.addmm(self.bu, v, self.Wvu)  # (B, R)
        if not self.gated:
            return torch.tanh(candidate + u_prev @ self.Wuu)
        z, r = torch.sigmoid(torch.addmm(self.bg, v, self.Wvg) + u_prev @ self.Wug).chunk(2, dim=1)  # (B, R) each
        n = torch.tanh(candidate + r * (u_prev @ self.Wuu))
        return n + z * (u_prev - n)

    def _u_start(self, v: torch.Tensor, u_start: torch.Tensor | None) -> torch.Tensor:
        """u_0 for each sequence of v: (B, R)."""
        if u_start is not None:
            return u_start
        B, R = v.shape[0], self.config.n_hidden_recurrent
        return self.u0.expand(B, R) if self.u0 is not None else v.new_zeros(B, R)

    def recurrence_reference(self, v: torch.Tensor, u_start: torch.Tensor | None = None) -> torch.Tensor:
        """The same recurrence as a plain Python loop (for tests)."""
        B, T, _ = v.shape
        u_prev = self._u_start(v, u_start)
        outputs = []
        for t in range(T):
            u_prev = self.cell(u_prev, v[:, t])
            outputs.append(u_prev)
        return torch.stack(outputs, dim=1)

    def conditional_biases(self, v: torch.Tensor, u_start: torch.Tensor | None = None):
        """Biases of each frame's RBM. v: (B, T, V) -> bv_t (B, T, V), bh_t (B, T, H), u (B, T, R)."""
        u_start = self._u_start(v, u_start)
        u = self.recurrence(v, u_start)  # (B, T, R)
        u_prev = torch.cat([u_start.unsqueeze(1), u[:, :-1]], dim=1)  # (B, T, R): u_{t-1}
        bv_t = self.bv + u_prev @ self.Wuv
        bh_t = self.bh + u_prev @ self.Wuh
        return bv_t, bh_t, u

    # ----------------------------------------------------------------------------------- RBM
    def free_energy(self, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.bv - sum_j softplus((v W + bh)_j). v, bv: (..., V), bh: (..., H) -> (...)."""
        return -(v * bv).sum(-1) - F.softplus(torch.addmm(bh.reshape(-1, bh.shape[-1]),
                                                          v.reshape(-1, v.shape[-1]), self.W)
                                              ).sum(-1).reshape(v.shape[:-1])

    def hidden_probabilities(self, v: torch.Tensor, bh: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(beta (v W + bh)_j). (N, V), (N, H) -> (N, H)."""
        return torch.sigmoid(beta * torch.addmm(bh, v, self.W))

    def visible_probabilities(self, h: torch.Tensor, bv: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """p(v_i = 1 | h) = sigmoid(beta (h W^T + bv)_i). (N, H), (N, V) -> (N, V)."""
        return torch.sigmoid(beta * torch.addmm(bv, h, self.W.t()))

    @torch.no_grad()
    def gibbs_chain(self, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, steps: int,
                    sampler: BernoulliSampler) -> torch.Tensor:
        """k steps v -> h -> v of block Gibbs sampling from v. (N, V), (N, V), (N, H) -> (N, V)."""
        if steps <= 0:
            return v
        # All the chain's uniforms in one draw (16-bit: sampling.uniform16), in the order step by
        # step, h before v; each is compared in place with its probabilities (u < p becomes the
        # 0/1 sample), so the loop is four operations per step and allocates only the products.
        N, H = v.shape[0], self.config.n_hidden
        size = N * (H + v.shape[1])
        uniforms_h, uniforms_v = sampler.uniform16(steps * size, v.dtype).view(steps, size).split([N * H, size - N * H], 1)
        uniforms_h, uniforms_v = uniforms_h.view(steps, N, H), uniforms_v.view(steps, *v.shape)
        W, W_t = self.W.detach(), self.W.detach().t()
        for step in range(steps):
            h = uniforms_h[step].lt_(torch.addmm(bh, v, W).sigmoid_())
            v = uniforms_v[step].lt_(torch.addmm(bv, h, W_t).sigmoid_())
        return v

    # ------------------------------------------------------------------------------ training
    def cd_loss(self, v: torch.Tensor, sampler: BernoulliSampler, mask: torch.Tensor | None = None,
                k: int | None = None, chain_start: str | torch.Tensor = "data", record: dict | None = None,
                monitor_sampler: BernoulliSampler | None = None, rnn_input: torch.Tensor | None = None):
        """CD-k cost and the tutorial's monitor for a batch of subsequences.

        v: (B, T, V) binary, mask: (B, T) with 1 for real frames (padding after the end).
        chain_start: where the negative chain of frame t starts: "data" (v_t, the tutorial's CD-k),
        "previous" (v_{t-1}, silence before a subsequence's first frame) or "silence" (zeros, as the
        composer's chain). Chains that start at the data stop leaving it once the RBMs are sharp, and
        then no gradient says that the model also puts mass elsewhere (docs/quality.md).
        Returns (cost, monitor): cost = mean over real frames of F(v) - F(v*), differentiable;
        monitor = mean over real frames of sum_i [v log p + (1-v) log(1-p)], p the mean of one more
        Gibbs step from v* (the tutorial's "pseudo log-likelihood", a float). When the negative chain
        does not start at the data, its end says nothing about reconstructing the data, so the monitor
        runs its own k steps from the data on MONITOR_FRAMES evenly spaced frames, drawing from
        monitor_sampler (default: sampler): the same measure as on the valid split.
        rnn_input: (B, T, V), what the RNN reads in place of v (v with keys dropped out); the RBMs still
        model v.
        """
        k = self.config.cd_k if k is None else k
        B, T, V = v.shape
        bv_t, bh_t, _ = self.conditional_biases(v if rnn_input is None else rnn_input)
        v_flat = v.reshape(B * T, V)
        bv_flat = bv_t.reshape(B * T, V)
        bh_flat = bh_t.reshape(B * T, -1)
        if isinstance(chain_start, torch.Tensor):  # given states (B, T, V): persistent chains
            start = chain_start.reshape(B * T, V).to(v.dtype)
        elif chain_start == "data":
            start = v_flat
        elif chain_start == "previous":
            start = torch.cat([v.new_zeros(B, 1, V), v[:, :-1]], dim=1).reshape(B * T, V)
        elif chain_start == "silence":
            start = torch.zeros_like(v_flat)
        else:
            raise ValueError(f"unknown chain_start {chain_start!r} (data, previous, silence or a tensor of states)")
        if mask is not None:
            keep = mask.reshape(-1) > 0
            v_flat, bv_flat, bh_flat, start = v_flat[keep], bv_flat[keep], bh_flat[keep], start[keep]
        n_frames = v_flat.shape[0]
        v_sample = self.gibbs_chain(start, bv_flat.detach(), bh_flat.detach(), k, sampler)
        if record is not None:
            record["negative"] = v_sample  # (real frames, V), for persistent chains
        cost = FreeEnergyGap.apply(v_flat, v_sample, bv_flat, bh_flat, self.W)
        with torch.no_grad():
            if isinstance(chain_start, str) and chain_start == "data":
                target, reconstruction, target_bv, target_bh, draw = v_flat, v_sample, bv_flat, bh_flat, sampler
            else:
                pick = torch.linspace(0, n_frames - 1, min(n_frames, MONITOR_FRAMES)).round().long()
                target, target_bv, target_bh = v_flat[pick], bv_flat[pick], bh_flat[pick]  # (M, V), (M, V), (M, H)
                draw = monitor_sampler or sampler
                reconstruction = self.gibbs_chain(target, target_bv, target_bh, k, draw)
            h = draw(self.hidden_probabilities(reconstruction, target_bh))
            logits = torch.addmm(target_bv, h, self.W.t())
            # log sigmoid(x) and log(1 - sigmoid(x)) computed stably
            monitor = (target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum() / len(target)
        return cost, float(monitor)

    # ---------------------------------------------------------------------------- generation
    @torch.no_grad()
    def sample_frame(self, u_prev: torch.Tensor, sampler: BernoulliSampler, gibbs_steps: int | None = None,
                     inverse_temperature: float = 1.0, clamp_mask: torch.Tensor | None = None,
                     clamp_values: torch.Tensor | None = None, start: torch.Tensor | str | None = None) -> torch.Tensor:
        """One frame from the RBM conditioned on u_{t-1}. u_prev: (B, R) -> v: (B, V).

        The chain starts from zeros, as in the tutorial, from given frames `start` ((V,) or (B, V)), or,
        with start="prediction", from a draw of the RNN's own guess at the frame, each key on with
        probability sigmoid(beta bv_t) (what the quality recipe's RNN pretraining taught bv_t): a sharp
        model's chain then reaches in 25 steps the music it reaches in 1,000 from silence
        (benchmarks/bench_generation.py, docs/speed.md). Each conditional draw uses logistic noise
        (x + L > 0 is Bernoulli(sigmoid(x))), all of it drawn at once: fewer, larger operations.

        clamp_mask, clamp_values: (V,) or (B, V); where the mask is true the visible unit is held at
        its value through the whole chain, so the other units are sampled from the RBM's conditional
        p(v_free | v_clamped, u_{t-1}) (the keys a musician holds, the soprano of a chorale).
        """
        steps = self.config.gibbs_steps if gibbs_steps is None else gibbs_steps
        beta = float(inverse_temperature)
        B = u_prev.shape[0]
        V, H = self.config.n_visible, self.config.n_hidden
        bv = (self.bv + u_prev @ self.Wuv) * beta  # (B, V)
        bh = (self.bh + u_prev @ self.Wuh) * beta  # (B, H)
        W = self.W * beta
        noise_h = sampler.logistic((steps, B, H), u_prev.dtype).add_(bh)
        noise_v = sampler.logistic((steps, B, V), u_prev.dtype).add_(bv)
        if start is None:
            v = u_prev.new_zeros(B, V)
        elif isinstance(start, str):
            if start != "prediction":
                raise ValueError(f"unknown chain start {start!r} (prediction, or a tensor of frames)")
            v = sampler(torch.sigmoid(bv))  # (B, V)
        else:
            v = start.to(u_prev.dtype).expand(B, V)
        if clamp_mask is not None:
            keep = torch.as_tensor(clamp_mask, dtype=torch.bool).expand(B, V)  # (B, V)
            held = torch.as_tensor(clamp_values, dtype=v.dtype).expand(B, V)  # (B, V)
            free = (~keep).to(v.dtype)
            held = held * keep.to(v.dtype)
            v = v * free + held
            for step in range(steps):
                h = torch.addmm(noise_h[step], v, W).gt_(0)
                v = torch.addmm(noise_v[step], h, W.t()).gt_(0).to(v.dtype).mul_(free).add_(held)
            return v
        for step in range(steps):
            h = torch.addmm(noise_h[step], v, W).gt_(0)
            v = torch.addmm(noise_v[step], h, W.t()).gt_(0)
        return v

    @torch.no_grad()
    def advance(self, u_prev: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """u_t from u_{t-1} and frame v_t. (B, R), (B, V) -> (B, R)."""
        return self.cell(u_prev, v.to(u_prev.dtype))

    @torch.no_grad()
    def step(self, state: torch.Tensor, sampler: BernoulliSampler | None = None, gibbs_steps: int | None = None,
             inverse_temperature: float = 1.0, clamp_mask: torch.Tensor | None = None,
             clamp_values: torch.Tensor | None = None, start: torch.Tensor | str | None = None):
        """Generate the next frame and the next state.

        state: u_{t-1}, (R,) or (B, R). Returns (frame, state): frame (V,) or (B, V) of 0/1 floats.
        With clamp_mask/clamp_values (see sample_frame) the frame holds the clamped keys and the RNN
        advances on the whole frame, clamped keys included. `start`: where the chain starts (sample_frame).
        """
        sampler = sampler or _default_sampler()
        single = state.dim() == 1
        u_prev = state.unsqueeze(0) if single else state
        v = self.sample_frame(u_prev, sampler, gibbs_steps, inverse_temperature, clamp_mask, clamp_values, start)
        u = self.advance(u_prev, v)
        return (v[0], u[0]) if single else (v, u)

    @torch.no_grad()
    def prime(self, roll, state: torch.Tensor | None = None) -> torch.Tensor:
        """Run the RNN over given frames (T, V) and return the state after the last one: (R,)."""
        frames = torch.as_tensor(np.asarray(roll), dtype=self.bu.dtype).reshape(1, -1, self.config.n_visible)
        if frames.shape[1] == 0:
            return self.initial_state() if state is None else state
        u_start = None if state is None else state.reshape(1, -1)
        return self.recurrence(frames, u_start)[0, -1].clone()

    @torch.no_grad()
    def generate(self, n_frames: int, primer=None, seed: int | None = None, gibbs_steps: int | None = None,
                 inverse_temperature: float = 1.0, start: str | None = None) -> np.ndarray:
        """A piano-roll (n_frames, V) of uint8, continuing `primer` (T, V) when given. `start`: where
        each frame's chain starts (sample_frame; None: silence, the tutorial's chain)."""
        sampler = BernoulliSampler(seed)
        state = self.prime(primer) if primer is not None else self.initial_state()
        frames = np.zeros((n_frames, self.config.n_visible), dtype=np.uint8)
        for t in range(n_frames):
            frame, state = self.step(state, sampler, gibbs_steps, inverse_temperature, start=start)
            frames[t] = frame.numpy()
        return frames

    # ---------------------------------------------------------------------------- utilities
    def tutorial_arrays(self) -> dict[str, np.ndarray]:
        """The eight parameters in the tutorial's orientation (v @ W), float64. Only the tanh RNN is the
        tutorial's: a gated model has no such arrays."""
        if self.gated:
            raise ValueError("a model with the gated (gru) recurrence has no Theano-tutorial parameters: "
                             "only tanh models can be exported for the tutorial's code")
        return {name: getattr(self, name).detach().double().numpy().copy() for name in self.PARAMETER_NAMES}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_SHARED_SAMPLER: BernoulliSampler | None = None


def _default_sampler() -> BernoulliSampler:
    global _SHARED_SAMPLER
    if _SHARED_SAMPLER is None:
        _SHARED_SAMPLER = BernoulliSampler()
    return _SHARED_SAMPLER



class FreeEnergyGap(torch.autograd.Function):
    """The CD cost mean_n [F(v_n) - F(v*_n)] with its gradient written out, v* held constant.

    F(v) = -v.bv - sum_j softplus((v W + bh)_j), so dCost/dbv_n = -(v_n - v*_n) / N,
    dCost/dbh_n = -(sigmoid(v_n W + bh_n) - sigmoid(v*_n W + bh_n)) / N and dCost/dW = sum_n v_n^T dbh...
    One node instead of autograd's dozen: at one subsequence per update the graph's overhead costs
    more than its arithmetic. v, v*, bv: (N, V), bh: (N, H), W: (V, H) -> a scalar.
    """

    @staticmethod
    def forward(ctx, v, v_sample, bv, bh, W):
        n = v.shape[0]
        x = torch.addmm(bh.repeat(2, 1), torch.cat([v, v_sample]), W)  # (2N, H): data, then the sample
        free_gap = F.softplus(x[n:]).sum() - F.softplus(x[:n]).sum() - ((v - v_sample) * bv).sum()
        ctx.save_for_backward(v, v_sample, x, W)
        return free_gap / max(n, 1)

    @staticmethod
    def backward(ctx, grad):
        v, v_sample, x, W = ctx.saved_tensors
        n = v.shape[0]
        scale = grad / max(n, 1)
        signed = x.sigmoid().mul_(scale)  # (2N, H)
        signed[:n].neg_()  # -sigmoid(data) scale, +sigmoid(sample) scale
        grad_bh = signed[:n] + signed[n:]  # (N, H)
        grad_bv = (v_sample - v) * scale  # (N, V)
        grad_w = torch.cat([v, v_sample]).t() @ signed if ctx.needs_input_grad[4] else None
        return None, None, grad_bv, grad_bh, grad_w
