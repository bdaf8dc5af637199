"""The RNN-RBM's recurrences over frames, with hand-written backward passes through time.

The loops run in numpy: at one 100-frame subsequence per update, per-operation overhead is what
costs, and numpy's is several times lower than autograd's. Weight gradients are taken in one matrix
product after the loop. Shapes: T frames, B sequences, R recurrent units.

* TanhRecurrence, the paper's RNN: u_t = tanh(x_t + u_{t-1} Wuu).
* GruRecurrence, a gated recurrence (Cho et al. 2014, in the form of cuDNN and torch.nn.GRU), an
  option (RnnRbmConfig.recurrence = "gru") for a memory that reaches further:
      z_t = sigmoid(xz_t + u_{t-1} Wuz),  r_t = sigmoid(xr_t + u_{t-1} Wur)
      n_t = tanh(xn_t + r_t * (u_{t-1} Wuu))
      u_t = (1 - z_t) n_t + z_t u_{t-1}
  With z_t near 1 a unit keeps its value across many frames, which tanh's u_t cannot.
"""
from __future__ import annotations

import numpy as np
import torch


class TanhRecurrence(torch.autograd.Function):
    """u_t = tanh(x_t + u_{t-1} Wuu) over t. x: (B, T, R), u_start: (B, R), Wuu: (R, R) -> (B, T, R)."""

    @staticmethod
    def forward(ctx, x, u_start, Wuu):
        x_np = x.detach().transpose(0, 1).contiguous().numpy()  # (T, B, R)
        w = Wuu.detach().numpy()
        u = np.empty_like(x_np)
        u_prev = u_start.detach().numpy()
        for t in range(x_np.shape[0]):
            np.dot(u_prev, w, out=u[t])
            u[t] += x_np[t]
            np.tanh(u[t], out=u[t])
            u_prev = u[t]
        ctx.save_for_backward(u_start, Wuu)
        ctx.u = u
        return torch.from_numpy(u).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_u):
        u_start, Wuu = ctx.saved_tensors
        u = ctx.u  # (T, B, R)
        g = grad_u.transpose(0, 1).contiguous().numpy()  # (T, B, R)
        w_t = Wuu.detach().numpy().T
        grad_a = 1.0 - u * u  # tanh's derivative at every step at once; then, in place, the gradient
        carry = np.zeros_like(u[0])  # at the tanh input of each step (two operations a step)
        for t in range(u.shape[0] - 1, -1, -1):
            a = grad_a[t]
            a *= g[t] + carry
            carry = a @ w_t
        u_start_np = u_start.detach().numpy()
        u_prev = np.concatenate([u_start_np[None], u[:-1]], axis=0)  # (T, B, R)
        R = u.shape[-1]
        grad_w = u_prev.reshape(-1, R).T @ grad_a.reshape(-1, R)
        grad_x = torch.from_numpy(grad_a).transpose(0, 1)
        return grad_x, torch.from_numpy(carry), torch.from_numpy(grad_w)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In place; 0.5 (1 + tanh(x / 2)) never overflows, as 1 / (1 + exp(-x)) does for x << 0."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


class GruRecurrence(torch.autograd.Function):
    """The gated recurrence over t (module docstring).

    x: (B, T, 3R), each frame's input terms [xz | xr | xn] (biases included); u_start: (B, R);
    U: (R, 3R) = [Wuz | Wur | Wuu] -> u: (B, T, R).
    """

    @staticmethod
    def forward(ctx, x, u_start, U):
        x_np = x.detach().transpose(0, 1).contiguous().numpy()  # (T, B, 3R)
        w = U.detach().numpy()
        T, B, R3 = x_np.shape
        R = R3 // 3
        u = np.empty((T, B, R), dtype=x_np.dtype)
        gates = np.empty((T, B, 2 * R), dtype=x_np.dtype)  # [z | r] of each step
        m = np.empty((T, B, R), dtype=x_np.dtype)  # u_{t-1} Wuu, which r_t scales
        n = np.empty((T, B, R), dtype=x_np.dtype)
        u_prev = u_start.detach().numpy()
        for t in range(T):
            a = u_prev @ w  # (B, 3R)
            np.add(x_np[t, :, :2 * R], a[:, :2 * R], out=gates[t])
            _sigmoid(gates[t])
            m[t] = a[:, 2 * R:]
            np.multiply(gates[t, :, R:], m[t], out=n[t])
            n[t] += x_np[t, :, 2 * R:]
            np.tanh(n[t], out=n[t])
            np.subtract(u_prev, n[t], out=u[t])  # u_t = n + z (u_{t-1} - n)
            u[t] *= gates[t, :, :R]
            u[t] += n[t]
            u_prev = u[t]
        ctx.save_for_backward(u_start, U)
        ctx.saved = u, gates, m, n
        return torch.from_numpy(u).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_u):
        u_start, U = ctx.saved_tensors
        u, gates, m, n = ctx.saved
        T, B, R = u.shape
        g = grad_u.transpose(0, 1).contiguous().numpy()  # (T, B, R)
        w_t = U.detach().numpy().T  # (3R, R)
        u_start_np = u_start.detach().numpy()
        u_prev_all = np.concatenate([u_start_np[None], u[:-1]], axis=0)  # (T, B, R)
        grad_x = np.empty((T, B, 3 * R), dtype=u.dtype)  # at [z | r | n]'s pre-activations
        grad_a = np.empty((T, B, 3 * R), dtype=u.dtype)  # at u_{t-1} U: the same, but r_t * ... at Wuu's
        carry = np.zeros((B, R), dtype=u.dtype)  # dLoss/du_t from the steps after t
        for t in range(T - 1, -1, -1):
            z, r, n_t, u_prev = gates[t, :, :R], gates[t, :, R:], n[t], u_prev_all[t]
            dh = g[t] + carry
            d_an = dh * (1.0 - z) * (1.0 - n_t * n_t)
            grad_x[t, :, :R] = dh * (u_prev - n_t) * z * (1.0 - z)
            grad_x[t, :, R:2 * R] = d_an * m[t] * r * (1.0 - r)
            grad_x[t, :, 2 * R:] = d_an
            grad_a[t, :, :2 * R] = grad_x[t, :, :2 * R]
            np.multiply(d_an, r, out=grad_a[t, :, 2 * R:])
            carry = dh * z + grad_a[t] @ w_t
        grad_w = u_prev_all.reshape(-1, R).T @ grad_a.reshape(-1, 3 * R)  # (R, 3R)
        return torch.from_numpy(grad_x).transpose(0, 1), torch.from_numpy(carry), torch.from_numpy(grad_w)
