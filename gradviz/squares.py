"""The synthetic ``squares`` dataset, with its exact ground-truth residual per image.

Source: Bigolin Lanfredi, Schroeder, Tasdizen, "Quantifying the Preferential Direction of the
Model Gradient in Adversarial Training With Projected Gradient Descent" (docs/methods.md section 1,
"Synthetic Squares data"). Two classes, one channel:

* class 0 ``"small"`` / class 1 ``"large"``: a centred square of half-side
  ``h = round(S / 2 * 0.8 * t)`` with ``t = 0.5`` / ``t = 0.8`` (S = 28: h = 6 / 9, i.e. a
  12 x 12 / 18 x 18 square, rows and columns ``S/2 - h .. S/2 + h - 1``);
* on the authors' [-1, 1] scale the clean image is +0.5 inside the square and -0.5 outside;
  Gaussian white noise is smoothed with a Gaussian of sigma 2.5 px (torchvision
  ``gaussian_blur``, kernel 17, reflect padding), rescaled per image to standard deviation
  0.5 and added;
* gradviz works on [0, 1]: ``x01 = clamp((x + 1) / 2, 0, 1)``, so the clean image is 0.25 /
  0.75 and the noise has standard deviation 0.25.

Exact residual (the point of the dataset): ``dx = clean(other class) - clean(this class)``,
on the [0, 1] scale (+0.5 on the ring between the two squares for a small square, -0.5 for a
large one, 0 elsewhere). Before clamping, ``x + dx`` is exactly the image of the other class
with the same noise. **Clamping**: with noise std 0.25 around 0.25 / 0.75, about 17 % of the
pixels fall outside [0, 1] and are clamped (the dark background below 0, the bright square
above 1). ``dx`` is the residual of the *unclamped* images, as the paper defines it; where a
pixel was clamped, ``x + dx`` differs from the clamped other-class image with the same noise
(and may leave [0, 1]: clamp it for display). The dataset's images carry ``extras["clean"]``
and ``extras["residual"]`` so callers can see both.

This module only generates (:func:`make_squares`) and imports no other gradviz module: the
fixed splits as an :class:`gradviz.data.ImageDataset` come from
:func:`gradviz.data.load_squares` (``load_dataset("squares", split)``), the exact residuals as
a :class:`gradviz.generative.ResidualCache` from :func:`gradviz.generative.exact_residual_cache`.

Default size 28 (the small-cnn architecture needs ``size % 4 == 0``; 32 works too and is the
authors' small version). Differences from the authors' public code (which docs/methods.md does not
follow): their 32 px generator uses ``int()`` for the half-side, a noise sigma of 1 px, noise
std 0.25 clipped to +-0.5; gradviz uses docs/methods.md's values above.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

#: Size ratios t of the two classes (class 0 small, class 1 large).
SQUARE_T = (0.5, 0.8)
SQUARES_CLASSES = ["small", "large"]
#: Default image size (28: fits small-cnn, like MNIST).
SQUARES_SIZE = 28
#: Noise smoothing sigma in pixels and the noise std on the authors' [-1, 1] scale.
NOISE_SIGMA = 2.5
NOISE_STD = 0.5
#: The fixed splits: images per split and the seed each is generated with.
SQUARES_SPLITS = {"train": (2000, 1), "test": (500, 2)}


@dataclass
class Squares:
    """A generated batch.

    Attributes:
        x: (N, 1, S, S) float32 images in [0, 1] (clamped, see the module docstring).
        y: (N,) int64 labels, 0 small, 1 large.
        residual: (N, 1, S, S) float32, exact residual on the [0, 1] scale, values in
            {-0.5, 0, +0.5}: ``clean(1 - y) - clean(y)``.
        clean: (N, 1, S, S) float32 noise-free images on the [0, 1] scale (0.25 / 0.75).
        clamped_fraction: fraction of pixels that clamping to [0, 1] changed.
    """

    x: torch.Tensor
    y: torch.Tensor
    residual: torch.Tensor
    clean: torch.Tensor
    clamped_fraction: float


def half_side(label: int, size: int = SQUARES_SIZE) -> int:
    """Half-side in pixels of class ``label``'s square: ``round(size / 2 * 0.8 * t)``."""
    return int(round(size / 2 * 0.8 * SQUARE_T[int(label)]))


def clean_squares(y: torch.Tensor, size: int = SQUARES_SIZE) -> torch.Tensor:
    """Noise-free images of classes ``y`` (N,) on the authors' [-1, 1] scale: +0.5 inside
    the centred square, -0.5 outside. Returns (N, 1, size, size) float32."""
    y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
    c = size // 2
    coords = torch.arange(size)
    halves = torch.tensor([half_side(0, size), half_side(1, size)])[y]  # (N,)
    inside_1d = (coords[None, :] >= c - halves[:, None]) & (coords[None, :] < c + halves[:, None])  # (N, S)
    inside = inside_1d[:, :, None] & inside_1d[:, None, :]
    return (inside.float() - 0.5).unsqueeze(1)


def make_squares(
    n: int,
    *,
    size: int = SQUARES_SIZE,
    seed: int = 0,
    noise_sigma: float = NOISE_SIGMA,
    noise_std: float = NOISE_STD,
) -> Squares:
    """Generate ``n`` squares images, balanced (``n // 2`` small, the rest large, shuffled).

    Args:
        n: number of images (>= 1).
        size: height and width S in pixels (>= 8; 28 default, 32 the authors' small size).
        seed: seed of the labels' order and of the noise (same seed, same images).
        noise_sigma: smoothing sigma of the noise in pixels (default 2.5).
        noise_std: per-image std of the smoothed noise on the [-1, 1] scale (default 0.5;
            0 gives the clean images).

    Returns:
        :class:`Squares` with x, y, residual, clean (see there) and the clamped fraction.

    Raises:
        ValueError: n < 1, size < 8, a negative sigma or std.
    """
    from torchvision.transforms.functional import gaussian_blur

    if n < 1 or size < 8 or noise_sigma < 0 or noise_std < 0:
        raise ValueError(f"need n >= 1, size >= 8, noise_sigma >= 0, noise_std >= 0; got {n}, {size}, "
                         f"{noise_sigma}, {noise_std}")
    gen = torch.Generator().manual_seed(int(seed))
    y = torch.cat([torch.zeros(n // 2, dtype=torch.long), torch.ones(n - n // 2, dtype=torch.long)])
    y = y[torch.randperm(n, generator=gen)]
    clean_pm = clean_squares(y, size)
    noise = torch.randn(n, 1, size, size, generator=gen)
    if noise_sigma > 0:
        k = 2 * int(torch.ceil(torch.tensor(3 * noise_sigma)).item()) + 1
        noise = gaussian_blur(noise, [k, k], [noise_sigma, noise_sigma])
    noise = noise / noise.flatten(1).std(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * noise_std
    raw01 = (clean_pm + noise + 1) / 2
    x = raw01.clamp(0, 1)
    residual = (clean_squares(1 - y, size) - clean_pm) / 2
    return Squares(
        x=x.contiguous(), y=y, residual=residual, clean=(clean_pm + 1) / 2,
        clamped_fraction=(x != raw01).float().mean().item(),
    )
