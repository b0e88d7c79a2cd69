from .stgt import STGT
