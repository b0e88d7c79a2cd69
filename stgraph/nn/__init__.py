"""Building blocks of stgraph models. Tensors are ``[B, T, N, D]``; graphs are
PyG ``edge_index`` ``[2, E]`` (source -> target) with ``edge_weight`` ``[E]``."""
from .calendar import append_time_of_day, tod_slot
from .edge_attention import CSR, build_csr, edge_attention, edge_attention_weights
from .embedding import InputEmbedding, NodeEmbedding, TimeEmbedding
from .graph_ops import GraphCache, SparseOperator, diffuse, random_walk_operators, scaled_laplacian
from .kernels.graph import AttentionGraph, LoopedGraph, with_self_loops
from .spatial import BACKENDS, GraphAttention, SpatialGraphAttention, choose_backend
from .temporal import CrossAttention, FeedForward, TemporalTransformerBlock, attention

__all__ = [
    "append_time_of_day", "tod_slot",
    "CSR", "build_csr", "edge_attention", "edge_attention_weights",
    "GraphCache", "SparseOperator", "diffuse", "random_walk_operators", "scaled_laplacian",
    "InputEmbedding", "NodeEmbedding", "TimeEmbedding",
    "AttentionGraph", "BACKENDS", "GraphAttention", "LoopedGraph", "SpatialGraphAttention", "choose_backend",
    "with_self_loops",
    "CrossAttention", "FeedForward", "TemporalTransformerBlock", "attention",
]
