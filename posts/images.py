"""Uploaded images: refused above a size, cleaned of what the camera wrote, and
resized renditions made by a worker.

Renditions are WebP files under renditions/, named after the original's whole name
(renditions/posts/2024/photo.jpg-480w.webp), so a page only has to list the ones that
exist: until the worker has made them, pages show the original. The original is
served as stored, so it is cleaned before it is stored, while the author waits; the
resizing is not. An email shows an image as a JPEG or PNG (email_image).
"""

import os
import re
import secrets
from io import SEEK_CUR, BytesIO
from urllib.parse import unquote

from django import forms
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models.fields.files import ImageFieldFile
from django.utils import timezone
from django.utils.encoding import filepath_to_uri
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, PngImagePlugin

# Phone, tablet and the reading column at high density; never enlarged.
RENDITION_WIDTHS = (480, 800, 1200)
WEBP_QUALITY = 80
# A worker decodes the whole image to resize it, at 4 bytes a pixel: 40 megapixels
# (a large camera's photo) cost 160 MB, twice that for a moment where it turns or
# converts it (_renditions_of). A small file can claim far more pixels (a
# "decompression bomb"), which Pillow refuses only beyond 179 megapixels. Uploads
# over it are refused, and so are, by the worker, images stored before that.
MAX_PIXELS = 40_000_000
# What pages serve: a TIFF would not display, a BMP is uncompressed, and other
# formats' metadata is not cleaned here.
# An MPO is a phone's JPEG with a second picture (a depth map) after it.
WEB_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "WEBP": "WEBP",
}
# What an original is stored as, by what it was saved as: nginx (and Django in
# debug) serve a file as its extension says, and a PNG uploaded as chart.pdf was
# served as a PDF.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}
# What an original keeps besides its pixels: its colour profile, without which
# colours shift, and its transparent colour. Not its EXIF (a phone's GPS position,
# its serial number, the time), XMP, IPTC or comments: an author's photo of an
# office would tell every reader where the author lives.
KEPT_INFO = ("icc_profile", "transparency", "background")
# A lossy WebP's own quality is not in the file: saved again at 90, it loses little.
WEBP_ORIGINAL_QUALITY = 90
# Outlook for Windows (Word's renderer), where much of this audience reads its mail,
# shows no WebP, and sizes an image by its width attribute alone, never by CSS. An
# email shows an image at most its column wide (templates/email/_layout.html: 600px
# less 24px padding each side), from a JPEG (a PNG where it has transparency) twice
# that wide at most, sharp on a high-density screen: its email rendition, made
# where the original is wider or in a format not every mail program shows.
EMAIL_COLUMN_WIDTH = 552
EMAIL_RENDITION_WIDTH = 2 * EMAIL_COLUMN_WIDTH
EMAIL_FORMATS = {"JPEG", "PNG", "GIF"}
EMAIL_JPEG_QUALITY = 85


class ImageUploadField(forms.ImageField):
    """Django's image field, refusing images too large to resize, with the reason."""

    def to_python(self, data):
        if data is not None and hasattr(data, "seek"):
            _refuse_too_many_pixels(data)
        upload = super().to_python(data)
        # Here, not in a storage: every image field of the site is uploaded
        # through this field (tests/test_images.py checks it).
        return None if upload is None else original_clean(upload=upload)


def upload_name(instance, filename: str) -> str:
    """Where a post's image is stored: posts/<year>/<a random folder>/<its name>.
    nginx serves every upload, a draft's too, so an address guessed from a file's
    name (kent-inspection-chart.png, IMG_0001.jpg) showed an embargoed post's
    images before it was published; the folder, 12 random bytes, cannot be
    guessed, and the name stays the author's."""
    return f"posts/{timezone.now():%Y}/{secrets.token_urlsafe(12)}/{filename}"


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


def original_clean(*, upload) -> SimpleUploadedFile:
    """The upload as it will be served: its pixels turned as the camera meant them
    shown (the orientation tag goes with the rest of the EXIF), its colour profile,
    and nothing else the camera or an editor wrote, named with the extension of
    the format it is saved in."""
    upload.seek(0)
    data = upload.read()
    with Image.open(BytesIO(data)) as source:
        if source.format not in WEB_FORMATS:
            # No article before the format: "a" or "an" goes by how its name
            # is said (an ICO, a TIFF), which its letters do not tell.
            raise forms.ValidationError(
                "This image is in the %(format)s format: please save it as a JPEG, "
                "PNG, GIF or WebP and upload it again.",
                code="not_a_web_format",
                params={"format": source.format},
            )
        saved_as = WEB_FORMATS[source.format]
        # A page, an email and the renditions show one picture: of an animation,
        # only some screens would show it moving, and the rest its first frame.
        # An MPO's second picture is no frame but a phone's depth map: it goes.
        if source.format != "MPO" and getattr(source, "is_animated", False):
            raise forms.ValidationError(
                "This image is animated, and the pages show only still images: "
                "please upload a still image, one frame of it.",
                code="animated",
            )
        options = {}
        if source.format in ("JPEG", "MPO"):
            # What quality="keep" does, which Pillow allows only on the
            # unturned original: its own quantisation tables and chroma
            # subsampling, so one more generation loses the least.
            options["qtables"] = source.quantization
            options["subsampling"] = JpegImagePlugin.get_sampling(source)
        elif source.format == "WEBP" and not _webp_is_lossless(data):
            options["quality"] = WEBP_ORIGINAL_QUALITY
        elif source.format == "WEBP":
            options["lossless"] = True
        buffer = BytesIO()
        try:
            picture = ImageOps.exif_transpose(source)
            picture.info = {k: v for k, v in picture.info.items() if k in KEPT_INFO}
            picture.save(
                buffer,
                saved_as,
                icc_profile=picture.info.get("icc_profile"),
                **options,
            )
        except (OSError, ValueError, SyntaxError) as error:  # damaged, or odd
            raise forms.ValidationError(
                "This image could not be saved again (%(error)s): please save it "
                "as an ordinary JPEG or PNG and upload it again.",
                code="not_saved",
                params={"error": error},
            ) from error
    stem, _ = os.path.splitext(upload.name)
    return SimpleUploadedFile(
        stem + EXTENSIONS[saved_as], buffer.getvalue(), Image.MIME[saved_as]
    )


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP's picture is a lossless one (a VP8L chunk), not a lossy VP8."""
    offset = 12  # after "RIFF", the size and "WEBP"
    while offset + 8 <= len(data):
        chunk = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk in (b"VP8L", b"VP8 "):
            return chunk == b"VP8L"
        offset += 8 + size + size % 2
    return False


def rendition_name(original: str, width: int) -> str:
    # The original's whole name, its extension too: photo.jpg and photo.png are two
    # pictures, and shared their renditions when it was left out.
    return f"renditions/{original}-{width}w.webp"


def _email_rendition_name(original: str, *, transparent: bool) -> str:
    return f"renditions/{original}-email{'.png' if transparent else '.jpg'}"


def _email_rendition_names(original: str) -> list[str]:
    """Where the original's email rendition is, whichever it is made as."""
    return [_email_rendition_name(original, transparent=t) for t in (False, True)]


def _email_rendition_needed(image_format: str | None, width: int) -> bool:
    return image_format not in EMAIL_FORMATS or width > EMAIL_RENDITION_WIDTH


class NotResizable(Exception):
    """The stored image itself cannot be resized (damaged, truncated, a
    decompression bomb, more pixels than uploads take, a rendition larger than
    WebP allows): trying again fails the same way. Storage's own failures are not
    this: they may pass."""


# What Pillow raises on an image it cannot read or write; read from memory, so
# never a failure of storage. Not MemoryError: the worker may have more later.
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def renditions_make(*, name: str) -> list[str]:
    """Write the renditions of a stored image narrower than it; return their names.
    Again for the same image, the same files. Raises NotResizable."""
    with default_storage.open(name, "rb") as file:
        data = file.read()
    try:
        renditions = _renditions_of(data, name)
    except _UNREADABLE as error:
        raise NotResizable(str(error)) from error
    names = []
    for rendition, content in renditions.items():
        default_storage.delete(rendition)
        names.append(default_storage.save(rendition, ContentFile(content)))
    return names


def _renditions_of(data: bytes, name: str) -> dict[str, bytes]:
    """Each rendition's name and file (WebP, and the email's), made in memory."""
    renditions = {}
    with Image.open(BytesIO(data)) as source:
        image_format = source.format
        # From the header, before decoding: an original stored before uploads were
        # limited took up to 700 MB, and a worker killed for it is given the task
        # again at once (acks_late), a loop beat's count of rings never sees.
        if source.width * source.height > MAX_PIXELS:
            raise NotResizable(f"more than {MAX_PIXELS // 10**6} million pixels")
        # Originals stored before uploads were cleaned still carry their
        # orientation tag, and the rest of what the camera wrote. Turned in place:
        # a copy, as Pillow makes by default even of an upright image, is another
        # full image in memory.
        ImageOps.exif_transpose(source, in_place=True)
        # Its colour profile, as the original keeps it (a phone's Display P3 photo
        # shown as sRGB is dull), when it describes RGB: a CMYK or grey one does
        # not describe the pixels converted to RGB below (its header says which).
        profile = source.info.get("icc_profile") or b""
        icc_profile = profile if profile[16:20] == b"RGB " else None
        # A transparent colour (a palette logo's, a PNG's tRNS) is no band:
        # converted to RGB, it showed black or white around the logo.
        transparent = "A" in source.getbands() or "transparency" in source.info
        mode = "RGBA" if transparent else "RGB"
        picture = source
        if source.mode != mode:
            picture = source.convert(mode)
            source.close()  # the decoded original's memory, before resizing

        def resized(width: int) -> Image.Image:
            if width == picture.width:
                return picture
            height = round(picture.height * width / picture.width)
            return picture.resize((width, height), Image.Resampling.LANCZOS)

        for width in _widths_below(picture.width):
            buffer = BytesIO()
            resized(width).save(
                buffer, "WEBP", quality=WEBP_QUALITY, icc_profile=icc_profile
            )
            renditions[rendition_name(name, width)] = buffer.getvalue()
        if _email_rendition_needed(image_format, picture.width):
            buffer = BytesIO()
            email = resized(min(picture.width, EMAIL_RENDITION_WIDTH))
            if transparent:
                email.save(buffer, "PNG", optimize=True, icc_profile=icc_profile)
            else:
                email.save(
                    buffer,
                    "JPEG",
                    quality=EMAIL_JPEG_QUALITY,
                    optimize=True,
                    icc_profile=icc_profile,
                )
            renditions[_email_rendition_name(name, transparent=transparent)] = (
                buffer.getvalue()
            )
    return renditions


def image_files_delete(*, name: str) -> None:
    """Delete a stored image and whichever of its renditions were made."""
    renditions = [rendition_name(name, width) for width in RENDITION_WIDTHS]
    for each in [name, *renditions, *_email_rendition_names(name)]:
        default_storage.delete(each)


def named_as(name: str) -> set[str]:
    """What a post body names the stored image `name` by, whether it shows the
    original or a rendition: its name, and its address's, percent-encoded where it
    has letters beyond ASCII."""
    return {name, filepath_to_uri(name)}


def renditions_made(name: str) -> bool:
    """Whether the stored image has every rendition renditions_make writes, from its
    header alone; True once the image is gone (its post deleted, or replaced)."""
    if not default_storage.exists(name):
        return True
    try:
        image_format, width = _shown_width(name)
    except Exception:
        # Not read, by storage or by Pillow (a decompression bomb): not made. The
        # worker rung for it tells which, and gives up an image it cannot resize.
        return False
    if _email_rendition_needed(image_format, width) and not any(
        map(default_storage.exists, _email_rendition_names(name))
    ):
        return False
    return all(
        default_storage.exists(rendition_name(name, w)) for w in _widths_below(width)
    )


def _shown_width(name: str) -> tuple[str | None, int]:
    """The stored image's format and the width it is shown at, from its header."""
    with default_storage.open(name, "rb") as file, Image.open(file) as source:
        width, height = source.size
        # Turned on its side by its orientation tag, as renditions_make turns it.
        if _orientation(source, file) in (5, 6, 7, 8):
            width = height
        return source.format, width


def _orientation(source: Image.Image, file) -> int:
    """The orientation tag exif_transpose turns `source` by, without decoding it."""
    if not isinstance(source, PngImagePlugin.PngImageFile):
        return source.getexif().get(ExifTags.Base.Orientation, 1)
    # A PNG's getexif decodes the whole image, all its pixels in memory, to read
    # the chunks after them, where ImageMagick writes its eXIf and where text may
    # be. Pillow's own chunk reader reads them here, skipping the pixels.
    file.seek(8)  # after the signature
    chunks = PngImagePlugin.PngStream(file)
    while (chunk := chunks.read())[0] != b"IEND":
        kind, position, length = chunk
        if kind in (b"eXIf", b"tEXt", b"zTXt", b"iTXt"):
            chunks.call(kind, position, length)
        else:
            file.seek(length, SEEK_CUR)
        file.seek(4, SEEK_CUR)  # its CRC
    source.info.update(chunks.im_info)
    # Image's own getexif: what the PNG's adds is the decoding.
    return Image.Image.getexif(source).get(ExifTags.Base.Orientation, 1)


def _widths_below(width: int) -> list[int]:
    return [w for w in RENDITION_WIDTHS if w < width]


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


# A rendition's address in a post body, as largest_url gives it: the original's name
# is in it.
_RENDITION = re.compile(r"renditions/(.+)-\d+w\.webp")


def email_image(url: str) -> tuple[str, int] | None:
    """What an email shows for the image at `url` in a post body (its original's
    address, or a rendition's): the address of a file every mail program shows and
    the width to show it at; None for an image not uploaded here, or gone.

    Until the worker has made the email rendition (seconds after the upload, which
    comes before its Markdown can be pasted), it is the original, as pages show it:
    JPEG, PNG or GIF but for a WebP upload, and held to the column by the width, if
    a camera's photo is megabytes to download. Making it here would decode up to
    160 MB in the sender (see MAX_PIXELS)."""
    path = url.removeprefix(settings.SITE_URL)
    if not path.startswith(settings.MEDIA_URL):
        return None
    original = unquote(path.removeprefix(settings.MEDIA_URL))
    if rendition := _RENDITION.fullmatch(original):
        original = rendition[1]
    for name in [*_email_rendition_names(original), original]:
        try:
            if not default_storage.exists(name):  # not made yet, not needed, or gone
                continue
        except SuspiciousFileOperation:  # out of the uploads: "/media/../"
            return None
        try:
            _, width = _shown_width(name)
        except Exception:  # Pillow refuses it (damaged, a decompression bomb)
            width = EMAIL_COLUMN_WIDTH
        return default_storage.url(name), min(width, EMAIL_COLUMN_WIDTH)
    return None
