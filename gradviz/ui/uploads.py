"""A user's uploaded images, read for a model, with a message for every problem.

Kept free of widgets so that it can be tested without a browser: :func:`read_upload`
turns one file's bytes into a model input or a clear refusal; the page shows the
messages with :func:`show_messages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st
import torch

from gradviz.data import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageInputError, load_image

__all__ = ["INVERT_OPTIONS", "UPLOAD_HELP", "UPLOAD_TYPES", "UploadResult", "read_upload", "show_messages"]

#: File types the uploader accepts.
UPLOAD_TYPES = ("png", "jpg", "jpeg")

#: The bounds on an upload, said to the user before they upload.
UPLOAD_HELP = (
    f"PNG or JPEG, up to {MAX_IMAGE_BYTES // 2**20} MiB and {MAX_IMAGE_PIXELS:,} pixels "
    f"(e.g. 4096 x 4096). Colour or transparent images are converted and resized to the "
    f"model's input, and you are told what was changed."
)

#: The upload's inversion choices: label shown -> ``invert`` of :func:`gradviz.data.load_image`.
INVERT_OPTIONS = {
    "auto": "auto",
    "always": True,
    "never": False,
}


@dataclass
class UploadResult:
    """One uploaded file, read for a model.

    Attributes:
        name: the file name.
        x: (1, C, H, W) float32 in [0, 1], or None when the file was refused.
        infos: what was converted (shown with st.info).
        errors: why the file was refused (shown with st.error); empty when ``x`` is set.
    """

    name: str
    x: torch.Tensor | None
    infos: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.x is not None


def read_upload(data: bytes, name: str, *, channels: int, size: int, invert="auto") -> UploadResult:
    """Read an uploaded file's bytes into a model input (never raises for bad files).

    Args:
        data: the file's bytes.
        name: the file name, for the messages.
        channels: the model's input channels (1 grayscale, 3 RGB).
        size: the model's input height and width in pixels.
        invert: ``"auto"`` (default: a grayscale image on a light background, e.g. a digit
            drawn in black on white, is inverted to the dataset's light-on-dark convention),
            ``True`` or ``False``; see :func:`gradviz.data.load_image`.

    Returns:
        :class:`UploadResult`: ``x`` (1, channels, size, size) with one info sentence
        listing the conversions (grayscale/RGB, transparency, inversion, resizing) if any; or ``x``
        None with an error sentence (not an image, not PNG/JPEG, corrupt, more than
        :data:`gradviz.data.MAX_IMAGE_BYTES` bytes, or too large: more than
        :data:`gradviz.data.MAX_IMAGE_PIXELS` pixels, with its size).
    """
    try:
        x, notes = load_image(bytes(data), channels=channels, size=size, invert=invert)
    except ImageInputError as err:
        return UploadResult(name, None, errors=[f"**{name}** was not used: {err}."])
    infos = []
    if notes:
        kind = "grayscale" if channels == 1 else "RGB"
        infos.append(
            f"**{name}**: " + "; ".join(notes)
            + f" (the model takes {size} x {size} {kind} images)."
        )
    return UploadResult(name, x, infos=infos)


def show_messages(results: list[UploadResult]) -> None:
    """Show each result's errors with st.error and its conversions with st.info."""
    for r in results:
        for msg in r.errors:
            st.error(msg, icon=":material/block:")
        for msg in r.infos:
            st.info(msg, icon=":material/transform:")
