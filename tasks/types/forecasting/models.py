"""The forecasting networks: `lstm` and `gru`, float (N, window, n_features) -> (N, horizon) next
values of feature 0 (the target); any window length. Each has a small frozen config dataclass
saved as plain JSON in the model card, so `tasks.core.models.load_model` rebuilds it without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tasks.core.models import check_config


@dataclass(frozen=True)
class RNNConfig:
    n_features: int = 1  # inputs per time step; feature 0 is the forecast target
    horizon: int = 1  # future steps predicted at once (direct multi-step: no error feedback)
    hidden: int = 64  # 64 units fit a seasonal monthly series (CO2) with ~17k parameters
    layers: int = 1
    dropout: float = 0.0  # between stacked layers only (torch ignores it for 1 layer)

    def __post_init__(self) -> None:
        check_config(self, ("n_features", "horizon", "hidden", "layers"), self.dropout)


class _RNNForecaster(nn.Module):
    cell: type[nn.LSTM] | type[nn.GRU]

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = self.cell(
            config.n_features,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden, config.horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])  # the last step's state summarises the window


class LSTMForecaster(_RNNForecaster):
    cell = nn.LSTM


class GRUForecaster(_RNNForecaster):
    cell = nn.GRU


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (RNNConfig, LSTMForecaster),
    "gru": (RNNConfig, GRUForecaster),
}
