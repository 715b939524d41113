"""Uploaded images: refused above a size, and resized renditions made by a worker.

Renditions are WebP files under renditions/, named after the original, so a page only
has to list the ones that exist: until the worker has made them, pages show the
original, and no image work happens while a reader, or the author, waits.
"""

from io import BytesIO
from pathlib import PurePosixPath

from django import forms
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models.fields.files import ImageFieldFile
from PIL import Image, ImageOps

# Phone, tablet and the reading column at high density; never enlarged.
RENDITION_WIDTHS = (480, 800, 1200)
WEBP_QUALITY = 80
# A worker decodes the whole image to resize it, at 4 bytes a pixel: 40 megapixels
# (a large camera's photo) cost 160 MB. A small file can claim far more pixels (a
# "decompression bomb"), which Pillow refuses only beyond 179 megapixels.
MAX_PIXELS = 40_000_000


class ImageUploadField(forms.ImageField):
    """Django's image field, refusing images too large to resize, with the reason."""

    def to_python(self, data):
        if data is not None and hasattr(data, "seek"):
            _refuse_too_many_pixels(data)
        return super().to_python(data)


def _refuse_too_many_pixels(upload) -> None:
    try:
        # Reads the header only: the size, not the pixels.
        with Image.open(upload) as picture:
            pixels = picture.width * picture.height
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        pixels = MAX_PIXELS + 1
    except Exception:  # not an image: Django's own check says so
        pixels = 0
    finally:
        upload.seek(0)
    if pixels > MAX_PIXELS:
        raise forms.ValidationError(
            "This image has more than %(limit)s million pixels, too many to resize: "
            "please make it smaller (e.g. 6000 by 4000 pixels) and upload it again.",
            code="too_many_pixels",
            params={"limit": MAX_PIXELS // 10**6},
        )


def rendition_name(original: str, width: int) -> str:
    stem = PurePosixPath(original).with_suffix("")
    return f"renditions/{stem}-{width}w.webp"


def renditions_make(*, name: str) -> list[str]:
    """Write the renditions of a stored image narrower than it; return their names.
    Again for the same image, the same files."""
    names = []
    with default_storage.open(name, "rb") as file, Image.open(file) as source:
        picture = ImageOps.exif_transpose(source)
        if picture.mode not in ("RGB", "RGBA"):
            picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
        for width in RENDITION_WIDTHS:
            if width >= picture.width:
                break
            height = round(picture.height * width / picture.width)
            resized = picture.resize((width, height), Image.Resampling.LANCZOS)
            rendition = rendition_name(name, width)
            buffer = BytesIO()
            resized.save(buffer, "WEBP", quality=WEBP_QUALITY)
            default_storage.delete(rendition)
            names.append(
                default_storage.save(rendition, ContentFile(buffer.getvalue()))
            )
    return names


def srcset(image: ImageFieldFile, width: int | None) -> str:
    """The srcset of an image: its renditions that exist, then the original."""
    if not image:
        return ""
    candidates = [
        f"{default_storage.url(rendition_name(image.name, w))} {w}w"
        for w in RENDITION_WIDTHS
        if (width is None or w < width)
        and default_storage.exists(rendition_name(image.name, w))
    ]
    if width:
        candidates.append(f"{image.url} {width}w")
    return ", ".join(candidates)


def largest_url(image: ImageFieldFile) -> str:
    """The URL to put in a post body: the widest rendition, or the original."""
    name = rendition_name(image.name, max(RENDITION_WIDTHS))
    return default_storage.url(name) if default_storage.exists(name) else image.url
