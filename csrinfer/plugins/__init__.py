"""The fused D2S op (design.md §3): ``d2s_fused.cu``, its launch parameters, PTX build and torch op.

Nothing here needs a GPU to import; CUDA work starts only when a CUDA tensor reaches the op.
"""
