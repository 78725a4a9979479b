"""Temporal heads on (B, T, D) feature sequences with a (B, T) validity mask."""

from __future__ import annotations

import math

import torch
from torch import nn

from vidfeat.config import HEADS
from vidfeat.errors import ConfigError


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def _mlp(in_dim: int, hidden: int, classes: int, dropout: float, layer_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(in_dim) if layer_norm else nn.Identity(),
        nn.Dropout(dropout),
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


class MeanPool(nn.Module):
    """The order-blind baseline: an MLP on the mean feature."""

    def __init__(
        self, in_dim: int, hidden: int, classes: int, dropout: float, layer_norm: bool
    ) -> None:
        super().__init__()
        self.mlp = _mlp(in_dim, hidden, classes, dropout, layer_norm)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(masked_mean(x, mask))
        return out


class Recurrent(nn.Module):
    """LSTM/GRU (optionally bidirectional); the last valid step of each direction, or
    attention pooling over all valid steps."""

    def __init__(
        self,
        kind: str,
        in_dim: int,
        hidden: int,
        layers: int,
        classes: int,
        dropout: float,
        layer_norm: bool,
        bidirectional: bool,
        attention: bool = False,
    ) -> None:
        super().__init__()
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.norm = nn.LayerNorm(in_dim) if layer_norm else nn.Identity()
        self.rnn = rnn(
            in_dim,
            hidden,
            layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        width = hidden * (2 if bidirectional else 1)
        self.attention = nn.Linear(width, 1) if attention else None
        self.bidirectional = bidirectional
        self.hidden = hidden
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Packed, so that no direction reads the zero padding of short clips (the backward
        # one would start in it); padded steps come back as zeros and are masked below.
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.norm(x), lengths, batch_first=True, enforce_sorted=False
        )
        y, _ = nn.utils.rnn.pad_packed_sequence(
            self.rnn(packed)[0], batch_first=True, total_length=x.shape[1]
        )
        if self.attention is not None:
            scores = self.attention(y).squeeze(-1).masked_fill(~mask, float("-inf"))
            pooled = (torch.softmax(scores, dim=1).unsqueeze(-1) * y).sum(1)
        else:
            last = (mask.sum(1) - 1).clamp_min(0)
            fwd = y[torch.arange(len(y)), last, : self.hidden]
            pooled = torch.cat([fwd, y[:, 0, self.hidden :]], 1) if self.bidirectional else fwd
        out: torch.Tensor = self.out(pooled)
        return out


class TemporalTransformer(nn.Module):
    def __init__(
        self,
        in_dim: int,
        hidden: int,
        layers: int,
        heads: int,
        classes: int,
        dropout: float,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(
                f"--hidden ({hidden}) must be divisible by --attention-heads ({heads})."
            )
        self.proj = nn.Linear(in_dim, hidden)
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, hidden, 2) * (-math.log(10000.0) / hidden))
        table = torch.zeros(max_len, hidden)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div[: hidden // 2])
        self.register_buffer("positions", table, persistent=False)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) + self.positions[: x.shape[1]]  # type: ignore[index]
        h = self.encoder(h, src_key_padding_mask=~mask)
        out: torch.Tensor = self.out(masked_mean(h, mask))
        return out


class SeedHead(nn.Module):
    """The classic recipe: LSTM(256) → BatchNorm → Dropout(0.3) → Dense(512, ReLU) → Dense."""

    def __init__(self, in_dim: int, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, 256, batch_first=True)
        self.out = nn.Sequential(
            nn.BatchNorm1d(256),
            nn.Dropout(0.3),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, classes),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        last = (mask.sum(1) - 1).clamp_min(0)
        out: torch.Tensor = self.out(y[torch.arange(len(y)), last])
        return out


def build_head(
    head: str,
    in_dim: int,
    classes: int,
    hidden: int = 256,
    layers: int = 1,
    dropout: float = 0.3,
    layer_norm: bool = False,
    bidirectional: bool = False,
    attention_heads: int = 4,
) -> nn.Module:
    if head == "meanpool":
        return MeanPool(in_dim, hidden, classes, dropout, layer_norm)
    if head in ("lstm", "bilstm", "gru", "attention"):
        kind = "gru" if head == "gru" else "lstm"
        bi = bidirectional or head == "bilstm"
        return Recurrent(
            kind, in_dim, hidden, layers, classes, dropout, layer_norm, bi, head == "attention"
        )
    if head == "transformer":
        return TemporalTransformer(in_dim, hidden, layers, attention_heads, classes, dropout)
    if head == "seed":
        return SeedHead(in_dim, classes)
    raise ConfigError(f"Invalid head ({head!r}). Supported: {', '.join(HEADS)}.")
