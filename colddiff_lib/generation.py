"""Generation: sample a starting point x_T, then invert the degradation with Algorithm 2.

Cold generation starts where the degradation ends: a flat colour for the blur that collapses to its
mean, a random colour for inpainting with a fill, a tiny random image for super-resolution, a
second-set image for blending. The paper fits a Gaussian (one component, full covariance) to what
the training images become at T; :class:`GaussianPrior` does that in the degradation's latent space
(``D.latent``: colours for blur and fill, the 2^T-times smaller image for super-resolution).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import torch

from .checks import is_int, is_number
from .degradations.base import check_images
from .runtime import resolve_device
from .sampling import sample


class Generated(NamedTuple):
    """What :func:`generate` returns: the samples and the starts they were restored from (it unpacks as the
    pair ``x0, x_T = generate(...)``)."""

    x0: torch.Tensor  #: the generated images [n, C, H, W], in about [-1, 1]
    # : their starts [n, C, H, W], at the prior's level, the symmetry noise included
    x_T: torch.Tensor


def adds_second_signal(D, level: int) -> bool:
    """Whether a start of D at ``level`` below T is the digit's part plus a second signal drawn as D draws it:
    D is random and ``D(x0, t) = clean(x0, t) + sigma_t z`` with z independent of x0 (a blend target, noise),
    so that an image at that level cannot show which z it holds (:class:`GaussianPrior`)."""
    return bool(
        level < D.T and getattr(D, "random", False) and D.noise_schedule() is not None
    )


class GaussianPrior:
    """A Gaussian mixture with full covariances fitted to what training images become at a level of D.

    At ``level = T`` (the paper's choice) the mixture is fitted to the latents ``D.latent(D(x, T))`` (a flat
    colour, a 2 x 2 image) and a start is painted by ``D.from_latent``. At a level ``t0 < T`` the end state
    still carries the digit's identity, and one colour says nothing about it: the mixture is fitted to the
    first ``dims`` principal components of the images D(x, t0), and generation starts there (chapter 6: where
    the identity is decided). That needs a D whose random state, if any, a start image shows
    (``D.freeze_at``: a deterministic blur or super-resolution, an inpainting fill colour), or one that adds a
    second signal independent of the digit, ``D(x0, t) = clean(x0, t) + sigma_t z`` (a face to blend toward,
    noise: ``D.noise_schedule()``). For those the mixture is fitted to the digit's part ``D.clean(x, t0)``
    alone, and each start adds a z drawn as D draws it, with D frozen on it (:meth:`start`): a face alone
    names no digit, and a deterministic sampler from M faces can make at most M images.

    Args:
        D: the degradation (for ``level = T``: one with ``latent`` and ``from_latent``).
        images: training images [N, C, H, W] in [-1, 1].
        components: number of mixture components (1, the paper's choice, is fitted in closed form;
            more use scikit-learn's EM).
        level: the level t0 to start from, 1..T (default T).
        dims: principal components kept below T (default 64; at most C * H * W).
        iterations: EM iterations of a mixture (components > 1); each costs about a second for 32
            components on 256 principal components of 4,000 images, and ten give most of the quality.
        jitter: added to the covariance diagonal so that it is positive definite.
        batch_size: training images degraded at a time.
        seed: seed of the EM initialisation (components > 1).

    Attributes: ``level`` (where :func:`generate` starts), ``weights`` [K], ``means`` [K, d], ``scale_trils``
    [K, d, d]; below T also ``offset`` [C * H * W] and ``basis`` [d, C * H * W], with a start
    ``offset + z @ basis`` (plus D's second signal where ``second_signal`` is True).
    """

    def __init__(
        self,
        D,
        images: torch.Tensor,
        components: int = 1,
        level: Optional[int] = None,
        dims: int = 64,
        iterations: int = 100,
        jitter: float = 1e-5,
        batch_size: int = 1000,
        seed: int = 0,
    ):
        for name, value in (
            ("components", components),
            ("dims", dims),
            ("iterations", iterations),
            ("batch_size", batch_size),
        ):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_images(images, "images", getattr(D, "channels", None))
        self.level = D.T if level is None else level
        if not is_int(self.level) or not 1 <= self.level <= D.T:
            raise ValueError(f"level must be an int in 1..T = 1..{D.T}, got {level!r}")
        self.D = D
        self.shape = tuple(images.shape[1:])
        random = getattr(D, "random", False)
        #: starts below T add D's own second signal (a face, noise) to a draw of the digit's part
        self.second_signal = adds_second_signal(D, self.level)
        if self.level == D.T:
            if not getattr(D, "has_latent", False):
                raise ValueError(
                    f"{type(D).__name__} has no latent(): it has no flat or low-resolution end state to "
                    f"fit; fit a level below T instead (level=...)"
                )
            self.offset = self.basis = None
            z = torch.cat(
                [
                    D.latent((D.freeze(chunk) if random else D)(chunk, D.T)).double()
                    for chunk in images.split(batch_size)
                ]
            )
        else:
            try:  # a sampler will need D frozen from the start image alone
                if random and not self.second_signal:
                    D.freeze_at(images[:1], self.level)
            except NotImplementedError as err:
                raise ValueError(f"level {self.level} < T: {err}") from None
            g = torch.Generator().manual_seed(seed)

            def at_level(chunk):
                frozen = D.freeze(chunk, g) if random else D
                if self.second_signal:  # the digit's part; z is drawn at each start
                    return frozen.clean(chunk, self.level)
                return frozen(chunk, self.level)

            flat = torch.cat(
                [
                    at_level(chunk).double().flatten(1)
                    for chunk in images.split(batch_size)
                ]
            )
            dims = min(dims, flat.shape[1], len(flat) - 1)
            self.offset = flat.mean(0)
            _, _, vh = torch.linalg.svd(flat - self.offset, full_matrices=False)
            self.basis = vh[:dims]  # [d, C * H * W], orthonormal rows
            z = (flat - self.offset) @ self.basis.T
        self._fit(z, components, jitter, seed, iterations)

    def _fit(
        self,
        z: torch.Tensor,
        components: int,
        jitter: float,
        seed: int,
        iterations: int,
    ) -> None:
        d = z.shape[1]
        eye = torch.eye(d, dtype=z.dtype)
        if components == 1:
            self.weights = torch.ones(1, dtype=z.dtype)
            self.means = z.mean(0, keepdim=True)
            covs = (torch.cov(z.T).reshape(d, d) + jitter * eye).unsqueeze(0)
        else:
            from sklearn.mixture import GaussianMixture

            import warnings

            from sklearn.exceptions import ConvergenceWarning

            # a few EM iterations are a choice (the fit's cost), not a failure
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm = GaussianMixture(
                    components,
                    covariance_type="full",
                    reg_covar=jitter,
                    max_iter=iterations,
                    random_state=seed,
                ).fit(z.numpy())
            self.weights = torch.from_numpy(gm.weights_)
            self.means = torch.from_numpy(gm.means_)
            covs = torch.from_numpy(gm.covariances_)
        self.scale_trils = torch.linalg.cholesky(covs)  # [K, d, d]

    def linear_form(self, tolerance: float = 1e-5) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(offset [C * H * W], basis [d, C * H * W])`` (float64) with every start ``clamp(offset + z @ basis)``
        for the mixture's draws z [d]: one form for every prior, what the book's page draws from
        (:mod:`colddiff_lib.export`).

        Below T these are the fitted mean image and principal components. At T they are read off
        ``D.from_latent``: ``offset = from_latent(0)`` and row i of the basis ``from_latent(e_i) - offset``;
        ``from_latent`` must then be affine, which is checked on the mixture's own draws (largest gap at most
        ``tolerance``), and a ValueError names the degradation otherwise."""
        if self.second_signal:
            raise ValueError(
                f"the starts of {type(self.D).__name__} at level {self.level} add its second signal "
                f"(drawn per start), so they have no linear form"
            )
        if self.basis is not None:
            return self.offset.clone(), self.basis.clone()
        d = self.means.shape[1]

        def paint(z):
            return self.D.from_latent(z, self.shape).double().reshape(len(z), -1)

        offset = paint(torch.zeros(1, d, dtype=torch.float64))[0]
        basis = paint(torch.eye(d, dtype=torch.float64)) - offset
        z = self.draw_latents(64, torch.Generator().manual_seed(0))
        gap = float((paint(z) - (offset + z @ basis)).abs().max())
        if not gap <= tolerance:
            raise ValueError(
                f"{type(self.D).__name__}.from_latent is not affine in its latent (off by up to {gap:.3g} "
                f"from offset + z @ basis), so its starts have no linear form"
            )
        return offset, basis

    def draw_latents(
        self, n: int, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """``n`` draws z [n, d] (float64) of the mixture: a component by its weight, then its mean plus its
        Cholesky factor times standard normal noise."""
        # no draw for the component: one Gaussian consumes only eps
        if len(self.weights) == 1:
            k = torch.zeros(n, dtype=torch.long)
        else:
            k = torch.multinomial(
                self.weights, n, replacement=True, generator=generator
            )
        eps = torch.randn(
            n, self.means.shape[1], generator=generator, dtype=torch.float64
        )
        return self.means[k] + torch.einsum("nij,nj->ni", self.scale_trils[k], eps)

    def start(
        self, n: int, generator: Optional[torch.Generator] = None, device="cpu"
    ) -> Tuple[torch.Tensor, Optional[object]]:
        """``(x_level [n, C, H, W], frozen)``: ``n`` starts and, where they carry D's second signal, D frozen
        on the signal drawn for them (what a sampler must use); else ``frozen`` is None and
        ``D.freeze_at(x_level, level)`` recovers D's state from the images."""
        z = self.draw_latents(n, generator)
        if self.basis is None:
            x = self.D.from_latent(z.float(), self.shape)
        else:
            x = (self.offset + z @ self.basis).float().view(n, *self.shape)
        x, frozen = x.clamp(-1, 1), None
        if self.second_signal:
            frozen = self.D.freeze(x, generator)
            empty = torch.zeros_like(x)
            x = x + frozen(empty, self.level) - frozen.clean(empty, self.level)
        return x.to(resolve_device(device)), frozen

    def __call__(
        self, n: int, generator: Optional[torch.Generator] = None, device="cpu"
    ) -> torch.Tensor:
        """``n`` starting images x_level [n, C, H, W]: the mixture's draws clamped to [-1, 1] (plus D's second
        signal, see :meth:`start`)."""
        return self.start(n, generator, device)[0]


@torch.no_grad()
def generate(
    R: Callable,
    D,
    n: int,
    shape: Sequence[int],
    prior: Optional[Callable] = None,
    noise_std: Optional[float] = None,
    algorithm: str = "improved",
    generator: Optional[torch.Generator] = None,
    device="cpu",
    callback: Optional[Callable[[dict], None]] = None,
) -> Generated:
    """Generate ``n`` images by inverting D from a random x_T.

    Args:
        R: restoration network ``R(x, t)``.
        D: the degradation the network was trained on (its ``T`` is the starting level).
        n: number of images.
        shape: (C, H, W) of an image.
        prior: ``prior(n, generator=..., device=...) -> x_T``; by default ``D.prior``. A prior with a
            ``level`` attribute (a :class:`GaussianPrior` fitted below T) starts the sampler at that level;
            one with a ``start`` method (:meth:`GaussianPrior.start`) may hand D frozen for its starts.
        noise_std: standard deviation of Gaussian noise added to x_T to break the symmetry of a flat
            start; default ``D.symmetry_noise`` (the paper's 0.002 for a blur that collapses to a flat
            colour, a noisy degradation's sigma_T, else 0; 0 is "perfect symmetry").
        algorithm: ``"improved"`` (Algorithm 2, the paper's choice), ``"naive"``, or for a degradation with
            a noise schedule ``"ddim"`` or ``"ancestral"`` (fresh noise at every step).
        generator: draws x_T, its noise and the ancestral sampler's fresh noise.
        device: where the samples are made (R's device).
        callback: as :func:`~colddiff_lib.sampling.sample`'s, once per step.
    Returns:
        :class:`Generated` ``(x0, x_T)``: x0 [n, C, H, W] in about [-1, 1], x_T [n, C, H, W] the start, at the
        prior's level.
    """
    if not is_int(n) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    device = resolve_device(device)
    if noise_std is None:
        noise_std = D.symmetry_noise
    if not is_number(noise_std) or not noise_std >= 0:
        raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}")
    frozen = None
    if prior is None:
        x_T = D.prior(n, shape, generator=generator, device=device)
    elif hasattr(prior, "start"):
        x_T, frozen = prior.start(n, generator=generator, device=device)
    else:
        x_T = prior(n, generator=generator, device=device)
    if noise_std:
        noise = torch.randn(
            x_T.shape,
            generator=generator,
            device=generator.device if generator else device,
        )
        x_T = x_T + noise_std * noise.to(x_T.device)
    x_T = x_T.to(device)
    level = getattr(prior, "level", D.T)  # a GaussianPrior fitted below T starts there
    if frozen is None:
        frozen = D.freeze_at(x_T, level)
    return Generated(
        sample(
            R,
            frozen,
            x_T,
            level,
            algorithm=algorithm,
            callback=callback,
            generator=generator,
        ),
        x_T,
    )
