"""colddiff_lib: Cold Diffusion (Bansal et al., 2022) in a small, fast PyTorch library.

Modules follow the book's chapters:

* :mod:`colddiff_lib.degradations` -- the operators D(x0, t) (chapter 2);
* :mod:`colddiff_lib.models` and :mod:`colddiff_lib.training` -- R_theta and the l1 objective (chapter 3);
* :mod:`colddiff_lib.sampling` -- direct restoration, Algorithms 1 and 2 (chapter 4);
* :mod:`colddiff_lib.generation` -- generation from a random x_T (chapter 6);
* :mod:`colddiff_lib.data`, :mod:`colddiff_lib.checkpoint`, :mod:`colddiff_lib.cli` -- the plumbing.

Images are [B, C, H, W] tensors with values in [-1, 1]; levels t are ints or LongTensor[B].
"""

__version__ = "0.1.0"
