"""Resized renditions of uploaded images, made once when the image is saved.

Renditions are WebP files under renditions/, named after the original, so a page only
has to list the ones that exist: no image work happens while a reader waits.
"""

from io import BytesIO
from pathlib import PurePosixPath

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models.fields.files import ImageFieldFile
from PIL import Image, ImageOps

# Phone, tablet and the reading column at high density; never enlarged.
RENDITION_WIDTHS = (480, 800, 1200)
WEBP_QUALITY = 80


def rendition_name(original: str, width: int) -> str:
    stem = PurePosixPath(original).with_suffix("")
    return f"renditions/{stem}-{width}w.webp"


def make_renditions(image: ImageFieldFile) -> list[str]:
    """Write the renditions narrower than the original; return their names."""
    if not image:
        return []
    names = []
    with image.open("rb"), Image.open(image) as source:
        picture = ImageOps.exif_transpose(source)
        if picture.mode not in ("RGB", "RGBA"):
            picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
        for width in RENDITION_WIDTHS:
            if width >= picture.width:
                break
            height = round(picture.height * width / picture.width)
            resized = picture.resize((width, height), Image.Resampling.LANCZOS)
            name = rendition_name(image.name, width)
            buffer = BytesIO()
            resized.save(buffer, "WEBP", quality=WEBP_QUALITY)
            default_storage.delete(name)
            names.append(default_storage.save(name, ContentFile(buffer.getvalue())))
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
