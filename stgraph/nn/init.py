"""Parameter initialisation shared by the layers."""
from torch import nn


def xavier_linear(*layers: nn.Linear) -> None:
    """Xavier-uniform weights and zero biases for each ``nn.Linear`` given."""
    for lin in layers:
        nn.init.xavier_uniform_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
