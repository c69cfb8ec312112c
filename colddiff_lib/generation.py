"""Generation: sample a starting point x_T, then invert the degradation with Algorithm 2.

Cold generation starts where the degradation ends: a flat colour for the blur that collapses to its
mean, a random colour for inpainting with a fill, a tiny random image for super-resolution, a
second-set image for blending. The paper fits a Gaussian (one component, full covariance) to what
the training images become at T; :class:`GaussianPrior` does that in the degradation's latent space
(``D.latent``: colours for blur and fill, the 2^T-times smaller image for super-resolution).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .degradations.base import check_images
from .sampling import sample


class GaussianPrior:
    """A Gaussian mixture with full covariances fitted to what training images become at a level of D.

    At ``level = T`` (the paper's choice) the mixture is fitted to the latents ``D.latent(D(x, T))`` (a flat
    colour, a 2 x 2 image) and a start is painted by ``D.from_latent``. At a level ``t0 < T`` the end state
    still carries the digit's identity, and one colour says nothing about it: the mixture is fitted to the
    first ``dims`` principal components of the images D(x, t0), and generation starts there (chapter 6: where
    the identity is decided). That needs a D whose random state, if any, a start image shows
    (``D.freeze_at``: a deterministic blur or super-resolution, an inpainting fill colour).

    Args:
        D: the degradation (for ``level = T``: one with ``latent`` and ``from_latent``).
        images: training images [N, C, H, W] in [-1, 1].
        components: number of mixture components (1, the paper's choice, is fitted in closed form;
            more use scikit-learn's EM).
        level: the level t0 to start from, 1..T (default T).
        dims: principal components kept below T (default 64; at most C * H * W).
        jitter: added to the covariance diagonal so that it is positive definite.
        batch_size: training images degraded at a time.
        seed: seed of the EM initialisation (components > 1).

    Attributes: ``level`` (where :func:`generate` starts), ``weights`` [K], ``means`` [K, d], ``scale_trils``
    [K, d, d]; below T also ``offset`` [C * H * W] and ``basis`` [d, C * H * W], with a start
    ``offset + z @ basis``.
    """

    def __init__(self, D, images: torch.Tensor, components: int = 1, level: Optional[int] = None,
                 dims: int = 64, jitter: float = 1e-5, batch_size: int = 1000, seed: int = 0):
        for name, value in (("components", components), ("dims", dims), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_images(images, "images", getattr(D, "channels", None))
        self.level = D.T if level is None else level
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 1 <= self.level <= D.T:
            raise ValueError(f"level must be an int in 1..T = 1..{D.T}, got {level!r}")
        self.D = D
        self.shape = tuple(images.shape[1:])
        random = getattr(D, "random", False)
        if self.level == D.T:
            if not getattr(D, "has_latent", False):
                raise ValueError(f"{type(D).__name__} has no latent(): it has no flat or low-resolution end state to "
                                 f"fit; fit a level below T instead (level=...) if it is deterministic")
            self.offset = self.basis = None
            z = torch.cat([D.latent((D.freeze(chunk) if random else D)(chunk, D.T)).double()
                           for chunk in images.split(batch_size)])
        else:
            try:  # a sampler will need D frozen from the start image alone
                D.freeze_at(images[:1], self.level) if random else None
            except NotImplementedError as err:
                raise ValueError(f"level {self.level} < T: {err}") from None
            g = torch.Generator().manual_seed(seed)
            flat = torch.cat([(D.freeze(chunk, g) if random else D)(chunk, self.level).double().flatten(1)
                              for chunk in images.split(batch_size)])
            dims = min(dims, flat.shape[1], len(flat) - 1)
            self.offset = flat.mean(0)
            _, _, vh = torch.linalg.svd(flat - self.offset, full_matrices=False)
            self.basis = vh[:dims]  # [d, C * H * W], orthonormal rows
            z = (flat - self.offset) @ self.basis.T
        self._fit(z, components, jitter, seed)

    def _fit(self, z: torch.Tensor, components: int, jitter: float, seed: int) -> None:
        d = z.shape[1]
        eye = torch.eye(d, dtype=z.dtype)
        if components == 1:
            self.weights = torch.ones(1, dtype=z.dtype)
            self.means = z.mean(0, keepdim=True)
            covs = (torch.cov(z.T).reshape(d, d) + jitter * eye).unsqueeze(0)
        else:
            from sklearn.mixture import GaussianMixture

            gm = GaussianMixture(components, covariance_type="full", reg_covar=jitter, random_state=seed).fit(z.numpy())
            self.weights = torch.from_numpy(gm.weights_)
            self.means = torch.from_numpy(gm.means_)
            covs = torch.from_numpy(gm.covariances_)
        self.scale_trils = torch.linalg.cholesky(covs)  # [K, d, d]

    def __call__(self, n: int, generator: Optional[torch.Generator] = None, device="cpu") -> torch.Tensor:
        """``n`` starting images x_level [n, C, H, W], clamped to [-1, 1]."""
        if len(self.weights) == 1:  # no draw for the component: one Gaussian consumes only eps
            k = torch.zeros(n, dtype=torch.long)
        else:
            k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        z = self.means[k] + torch.einsum("nij,nj->ni", self.scale_trils[k], eps)
        if self.basis is None:
            x = self.D.from_latent(z.float(), self.shape)
        else:
            x = (self.offset + z @ self.basis).float().view(n, *self.shape)
        return x.clamp(-1, 1).to(device)


@torch.no_grad()
def generate(R: Callable, D, n: int, shape: Sequence[int], prior: Optional[Callable] = None,
             noise_std: Optional[float] = None, algorithm: str = "improved", generator: Optional[torch.Generator] = None,
             device="cpu", callback: Optional[Callable[[dict], None]] = None):
    """Generate ``n`` images by inverting D from a random x_T.

    Args:
        R: restoration network ``R(x, t)``.
        D: the degradation the network was trained on (its ``T`` is the starting level).
        n: number of images; shape: (C, H, W).
        prior: ``prior(n, generator=..., device=...) -> x_T``; by default ``D.prior``. A prior with a
            ``level`` attribute (a :class:`GaussianPrior` fitted below T) starts the sampler at that level.
        noise_std: standard deviation of Gaussian noise added to x_T to break the symmetry of a flat
            start; default ``D.symmetry_noise`` (the paper's 0.002 for a blur that collapses to a flat
            colour, a noisy degradation's sigma_T, else 0; 0 is "perfect symmetry").
        algorithm: ``"improved"`` (Algorithm 2, the paper's choice), ``"naive"``, or for a degradation with
            a noise schedule ``"ddim"`` or ``"ancestral"`` (fresh noise at every step).
        generator: draws x_T, its noise and the ancestral sampler's fresh noise.
    Returns:
        (x0 [n, C, H, W] in about [-1, 1], x_T [n, C, H, W]: the start, at the prior's level).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if noise_std is None:
        noise_std = D.symmetry_noise
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std >= 0:
        raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}")
    if prior is None:
        x_T = D.prior(n, shape, generator=generator, device=device)
    else:
        x_T = prior(n, generator=generator, device=device)
    if noise_std:
        noise = torch.randn(x_T.shape, generator=generator, device=generator.device if generator else device)
        x_T = x_T + noise_std * noise.to(x_T.device)
    x_T = x_T.to(device)
    level = getattr(prior, "level", D.T)  # a GaussianPrior fitted below T starts there
    frozen = D.freeze_at(x_T, level)
    return sample(R, frozen, x_T, level, algorithm=algorithm, callback=callback, generator=generator), x_T
