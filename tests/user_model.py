"""A user's own model, outside stgraph, for the registry-by-import-path test."""
import torch
from torch import nn


class TinyUserModel(nn.Module):
    """Per-sensor linear map of the input window: ``[B, T_in, N, C_in]`` -> ``[B, T_out, N, C_out]``."""

    def __init__(self, input_len: int, horizon: int, in_channels: int, out_channels: int, width: int = 8):
        super().__init__()
        self.horizon, self.out_channels = horizon, out_channels
        self.net = nn.Sequential(nn.Linear(input_len * in_channels, width), nn.ReLU(),
                                 nn.Linear(width, horizon * out_channels))

    def forward(self, x, graph, covariates):
        B, T, N, C = x.shape
        out = self.net(x.permute(0, 2, 1, 3).reshape(B, N, T * C))
        return out.reshape(B, N, self.horizon, self.out_channels).permute(0, 2, 1, 3)
