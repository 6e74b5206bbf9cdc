"""Reading image files for the builders: check they decode, hand TFDS encoded bytes.

TFDS stores the encoded bytes it is given and decodes them with PIL (or OpenCV) when
read, so an 8-bit RGB PNG or JPEG is passed through untouched (no re-encoding, no
quality loss) and anything else (grey, palette, alpha, 16-bit, BMP, TIFF, CMYK) is
converted to RGB with Pillow and stored as PNG. Numpy arrays are never handed to TFDS:
encoding them would need TensorFlow.
"""

from __future__ import annotations

import io

from PIL import Image

from mh2f_jax import files
from mh2f_jax.errors import UserError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def load_checked(path: str) -> tuple[bytes, tuple[int, int]]:
  """Reads and fully decodes an image file.

  Args:
    path: image file.

  Returns:
    (encoded bytes for TFDS, (width, height)).

  Raises:
    UserError: the file is missing, unreadable, truncated or not an image.
    files.ImageTooLargeError: it declares more pixels than Pillow's limit, which
      ``files.pixel_limit`` (``--max_pixels``) sets.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f'image file {path} does not exist') from None
  except OSError as e:
    raise UserError(f'cannot read image file {path}: {e}') from None
  try:
    with Image.open(io.BytesIO(data)) as im:
      # A full decode, not just the header: truncated files fail only here.
      im.load()
      if _passes_through(im, data):
        return data, im.size
      rgb = im.convert('RGB')
      size = im.size
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise files.ImageTooLargeError(
        f'image file {path}: {files.too_large_message(e, Image.MAX_IMAGE_PIXELS or 0)}'
    ) from None
  except _DECODE_ERRORS as e:
    raise UserError(f'image file {path} is corrupt or not an image ({e}); '
                    're-download or remove it') from None
  buf = io.BytesIO()
  rgb.save(buf, format='PNG')
  return buf.getvalue(), size


def _passes_through(im: Image.Image, data: bytes) -> bool:
  """True when the bytes decode to 8-bit RGB (H, W, 3) with PIL and OpenCV alike."""
  if im.mode != 'RGB' or 'transparency' in im.info:
    return False
  if im.format == 'JPEG':
    return True
  # IHDR byte 24 is the bit depth: PIL reads 16-bit PNG as 8-bit RGB, OpenCV does not.
  return im.format == 'PNG' and len(data) > 25 and data[24] == 8
