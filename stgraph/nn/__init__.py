"""Building blocks of stgraph models. Tensors are ``[B, T, N, D]``; graphs are
PyG ``edge_index`` ``[2, E]`` (source -> target) with ``edge_weight`` ``[E]``."""
from .embedding import InputEmbedding, NodeEmbedding, TimeEmbedding
from .spatial import LoopedGraph, SpatialGraphAttention, add_self_loops, segment_softmax
from .temporal import CrossAttention, FeedForward, TemporalTransformerBlock, attention

__all__ = [
    "InputEmbedding", "NodeEmbedding", "TimeEmbedding",
    "LoopedGraph", "SpatialGraphAttention", "add_self_loops", "segment_softmax",
    "CrossAttention", "FeedForward", "TemporalTransformerBlock", "attention",
]
