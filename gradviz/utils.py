"""Small shared helpers: device choice, progress callbacks, input checks."""

from __future__ import annotations

from typing import Callable, Optional

import torch

#: A progress callback: ``progress(fraction in [0, 1], message)``. The UI turns it into
#: ``st.progress``, the command line into tqdm.
Progress = Callable[[float, str], None]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"`` / ``None`` / a name into a :class:`torch.device`.

    ``"auto"`` (default) picks CUDA when torch sees a GPU, else the CPU.

    Raises:
        ValueError: ``"cuda"`` asked for on a machine without a usable GPU, or an
            unknown device string.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU on this machine")
    return dev


def available_devices() -> list[str]:
    """Device names a user can choose here: ``["auto", "cpu"]`` plus ``"cuda"`` with a GPU."""
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Check that ``x`` is an image batch (N, C, H, W), finite, in [0, 1].

    Raises:
        ValueError: wrong rank, NaN/inf entries, or values outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1] (got min {x.min().item():.3g}, max {x.max().item():.3g})"
        )


def report(progress: Optional[Progress], fraction: float, message: str) -> None:
    """Call ``progress`` if given, with the fraction clipped to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def tqdm_progress(desc: str, *, leave: bool = True) -> tuple[Progress, Callable[[], None]]:
    """A :data:`Progress` callback drawn as a tqdm bar in per mille (the command line's and
    the benchmarks'), and the function that closes the bar. ``leave``: keep the finished bar
    on the terminal."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", leave=leave)

    def progress(fraction: float, message: str) -> None:
        bar.n = int(min(max(float(fraction), 0.0), 1.0) * 1000)
        bar.set_postfix_str(message[-60:], refresh=True)

    return progress, bar.close
