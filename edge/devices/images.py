"""Still images as grayscale frames: the simulation's image folder and ``verify --image``.

Pillow, not OpenCV: importing OpenCV and reading one PNG with it made the
kiosk 45 MB larger in memory (measured with ``bench/startup_bench.py``);
Pillow costs about 5 MB. OpenCV stays for video files and USB cameras only
(``devices/camera.py``). The luminance weights are ITU-R 601's in both, and
a photo's EXIF orientation is applied, as OpenCV's ``imread`` does.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from edge.devices.frames import Gray, as_gray

# A QR photo needs no more: a 48-megapixel phone photo is within it. Larger
# images (or "decompression bombs", small files that inflate to gigabytes)
# are refused before they are decoded.
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """Bytes that are not a readable image, with the reason."""


def gray_image(data: bytes) -> Gray:
    """The image in ``data`` as a C-contiguous 2-D uint8 luminance array."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415 - lazy, see above

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{width}x{height} pixels, more than {MAX_PIXELS:,} an image may have"
                    )
                image = ImageOps.exif_transpose(opened) or opened
                gray = image.convert("L")
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not an image format Pillow reads") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"too many pixels ({exc})") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # a truncated or damaged file; Pillow raises these from its plugins
        raise ImageError(f"damaged image: {exc}") from exc
    return as_gray(np.asarray(gray))
