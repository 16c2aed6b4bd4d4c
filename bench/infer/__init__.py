"""Real inference of exported W1A1 models: a bit-packed CPU engine (XNOR-popcount in C, ``engine.c``).

``build`` compiles and loads the C library, ``layers`` is the engine's binary conv/linear layer, ``model``
turns a packed export into the engine model and the PyTorch deployed model and compares them, ``commands``
is ``python -m bench infer``.
"""
