"""The macro spatio-temporal branch (paper eqs. 6-9): two ConvLSTMs and context attention pooling.

Attention pooling (eqs. 7-8), additive "context attention" in the spirit of the paper's ref. [19]:
for micro step p at every location::

    e_p = v^T tanh(W_h h_p + W_x X)          (1x1 convolutions W_h, W_x, v; X = eq. 5 context)
    a_p = softmax_p(e_p)                      (over the NUM_MICRO steps, per location)
    ph  = sum_p a_p h_p,   pc = sum_p a_p c_p (the same weights pool hidden and cell states)

LSTM_1 starts from zero state in every second; LSTM_2 (eq. 9) takes ``[ph_t, pc_t]`` and carries
its state across the T seconds of a sample, in order.
"""
from typing import List, Optional, Tuple

import torch
from torch import nn

__all__ = ["ConvLSTMCell", "ContextAttentionPool", "MacroBranch"]

State = Tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: the gates are one convolution over ``[x, h]``."""

    def __init__(self, *, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvLSTM kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        with torch.no_grad():  # forget-gate bias 1: remember by default at initialisation
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels: 2 * hidden_channels].fill_(1.0)

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        """One step. x: (N, C_in, H, W); state: (h, c) or None for zeros. Returns (h, c)."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ContextAttentionPool(nn.Module):
    """Eqs. 7-8: pool per-step (h, c) with softmax weights scored against a context map."""

    def __init__(self, *, hidden_channels: int, context_channels: int,
                 attention_channels: Optional[int] = None):
        super().__init__()
        attention_channels = attention_channels or hidden_channels
        self.proj_h = nn.Conv2d(hidden_channels, attention_channels, 1, bias=False)
        self.proj_x = nn.Conv2d(context_channels, attention_channels, 1)
        self.score = nn.Conv2d(attention_channels, 1, 1)

    def forward(self, hs: torch.Tensor, cs: torch.Tensor, context: torch.Tensor) -> State:
        """Eqs. 7-8. hs, cs: (S, N, hidden, H, W) per-step states; context: (N, C_x, H, W).

        Returns the pooled (ph, pc), each (N, hidden, H, W).
        """
        s, n = hs.shape[:2]
        keys = self.proj_h(hs.flatten(0, 1)).unflatten(0, (s, n))
        scores = self.score(torch.tanh(keys + self.proj_x(context)).flatten(0, 1))
        weights = torch.softmax(scores.unflatten(0, (s, n)), dim=0)  # (S, N, 1, H, W)
        return (weights * hs).sum(0), (weights * cs).sum(0)


class MacroBranch(nn.Module):
    """LSTM_1 over micro steps, attention pooling, LSTM_2 over seconds -> hh (eqs. 6-9)."""

    def __init__(self, *, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.out_channels = hidden_channels
        self.lstm1 = ConvLSTMCell(in_channels=in_channels, hidden_channels=hidden_channels,
                                  kernel_size=kernel_size)
        self.pool = ContextAttentionPool(hidden_channels=hidden_channels,
                                         context_channels=in_channels)
        self.lstm2 = ConvLSTMCell(in_channels=2 * hidden_channels, hidden_channels=hidden_channels,
                                  kernel_size=kernel_size)

    def forward(self, micro_steps: List[torch.Tensor], context: torch.Tensor,
                num_seconds: int) -> torch.Tensor:
        """Eqs. 6 and 9 (LSTM_1 within a second, LSTM_2 across seconds) around the pooling.

        micro_steps: NUM_MICRO tensors Tm_p, each (B*T, C_m, H, W), index b*T + t;
        context: X_Vs (B*T, C_m, H, W). Returns hh: (B*T, hidden, H, W)."""
        state = None
        hs, cs = [], []
        for tm_p in micro_steps:  # eq. 6, zero state at the start of every second
            state = self.lstm1(tm_p, state)
            hs.append(state[0])
            cs.append(state[1])
        ph, pc = self.pool(torch.stack(hs), torch.stack(cs), context)  # eqs. 7-8
        x = torch.cat([ph, pc], dim=1).unflatten(0, (-1, num_seconds))  # (B, T, 2*hidden, H, W)
        state2 = None
        out = []
        for t in range(num_seconds):  # eq. 9, state carried across the seconds of a sample
            state2 = self.lstm2(x[:, t], state2)
            out.append(state2[0])
        return torch.stack(out, dim=1).flatten(0, 1)
