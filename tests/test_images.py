"""Images: a featured image with required alt text, resized renditions, body images."""

import re
import struct
from html import unescape
from io import BytesIO

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.http import Http404
from django.utils import timezone
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin

from posts import images
from posts.images import ImageUploadField
from posts.models import Post, PostImage
from posts.tasks import ring_lost_doorbells
from posts.views import uploaded_file

from .factories import (
    PostFactory,
    PublishedPostFactory,
    UserFactory,
    admin_post_form,
    admin_post_form_of,
    bomb,
    png,
)
from .migrating import migrate_again_after

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


@pytest.fixture
def author(client):
    client.force_login(UserFactory())
    return client


@pytest.mark.usefixtures("celery_eager")
def test_featured_image_gets_renditions_and_shows_with_alt_text_and_srcset(
    author, media, on_commit
):
    response = on_commit(
        author.post,
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=png(1600, 900),
            featured_image_alt="Maidstone Crown Court from the street",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    post = Post.objects.get()
    assert (post.featured_image_width, post.featured_image_height) == (1600, 900)
    renditions = sorted(p.name for p in (media / "renditions").rglob("*.webp"))
    assert len(renditions) == 3
    with Image.open(next((media / "renditions").rglob("*-480w.webp"))) as small:
        assert small.size == (480, 270)
    Post.objects.filter(pk=post.pk).update(
        status="published", published_at=post.created_at
    )
    html = author.get(post.get_absolute_url()).content.decode()
    assert 'alt="Maidstone Crown Court from the street"' in html
    assert "-480w.webp 480w" in html and "1600w" in html
    assert 'width="1600" height="900"' in html
    assert '<meta property="og:image" content="http' in html


def test_a_featured_image_without_alt_text_is_refused(author):
    response = author.post(
        "/admin/posts/post/add/", admin_post_form(featured_image=png(800, 600))
    )
    assert response.status_code == 200
    assert "Describe the featured image in its alt text." in response.content.decode()
    assert not Post.objects.exists()


@pytest.mark.usefixtures("celery_eager")
def test_a_small_image_is_never_enlarged(author, media, on_commit):
    on_commit(
        author.post,
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=png(300, 200), featured_image_alt="A small chart"
        ),
    )
    assert not (media / "renditions").exists()


def test_a_file_that_is_not_an_image_is_refused(author):
    fake = SimpleUploadedFile("x.png", b"<script>alert(1)</script>", "image/png")
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(featured_image=fake, featured_image_alt="Not really"),
    )
    assert response.status_code == 200
    assert "Upload a valid image." in response.text
    assert not Post.objects.exists()


@pytest.mark.usefixtures("celery_eager")
def test_body_images_need_alt_text_and_offer_their_markdown(author, media, on_commit):
    post = PublishedPostFactory()
    form = admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        status="draft",
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": png(1400, 700, "chart.png"),
            "images-0-alt": "",
        },
    )
    response = author.post(f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 200  # the form again, with the error
    assert not PostImage.objects.exists()
    form["images-0-image"] = png(1400, 700, "chart.png")
    form["images-0-alt"] = "Caseloads per officer, 2019 to 2024"
    response = on_commit(author.post, f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 302
    image = PostImage.objects.get()
    html = author.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "![Caseloads per officer, 2019 to 2024](/media/renditions/" in html
    assert image.image.name.endswith(".png")


@pytest.mark.parametrize(
    "alt",
    [
        "Caseloads [2019 to 2024] by region",  # a bracket the Markdown had half of
        "Officers *per* team, C:\\data\\",  # emphasis, and a closing backslash
        "`Good` & <Outstanding> ratings!",
    ],
)
def test_an_images_markdown_shows_it_with_its_alt_text_as_written(author, alt):
    # The desk wrote the alt text into ![…](…) as typed, but for "]": a "[" in it
    # showed readers "![Caseloads " and a link where the image was, and Markdown's
    # own characters were lost from what a screen reader says.
    post = PublishedPostFactory()
    PostImage.objects.create(post=post, image=png(800, 400, "chart.png"), alt=alt)
    html = author.get(f"/admin/posts/post/{post.pk}/change/").text
    markdown = unescape(re.search(r"<code>(!\[.*?)</code>", html)[1])

    post.body = markdown
    post.save()

    assert re.fullmatch(
        r'<p><img src="/media/posts/[^"]+" alt="[^"]*"></p>\s*', post.body_html
    )
    assert unescape(re.search(r'alt="([^"]*)"', post.body_html)[1]) == alt


@pytest.mark.usefixtures("celery_eager")
def test_two_images_named_alike_but_for_their_extension_keep_their_own_renditions(
    author, media, on_commit
):
    """photo.jpg and photo.png shared their renditions: a post's page showed the
    picture uploaded last under that name, whichever post it was for."""

    def photo(name: str, image_format: str, colour: tuple) -> SimpleUploadedFile:
        buffer = BytesIO()
        Image.new("RGB", (1600, 900), colour).save(buffer, image_format)
        return SimpleUploadedFile(name, buffer.getvalue())

    red, blue = (200, 0, 0), (0, 0, 200)
    for slug, upload in (
        ("kent", photo("photo.jpg", "JPEG", red)),
        ("devon", photo("photo.png", "PNG", blue)),
    ):
        on_commit(
            author.post,
            "/admin/posts/post/add/",
            admin_post_form(
                title=slug,
                slug=slug,
                featured_image=upload,
                featured_image_alt="Office",
            ),
        )
    Post.objects.update(status="published", published_at=models.F("created_at"))

    for slug, colour in (("kent", red), ("devon", blue)):
        html = author.get(f"/posts/{slug}/").text
        smallest = re.search(r'srcset="/media/(\S+) 480w', html).group(1)
        with Image.open(media / smallest) as shown:
            assert shown.convert("RGB").getpixel((10, 10)) == pytest.approx(
                colour, abs=10
            ), slug


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_eager")
def test_an_image_uploaded_before_shows_and_gets_its_renditions_again_at_deploy(
    author, media
):
    """Renditions made before were named without the original's extension: not
    found under the new names, the page shows the original until a worker has made
    them again, which the migration asks for."""
    post = PublishedPostFactory(
        featured_image=png(1600, 900), featured_image_alt="An office"
    )
    html = author.get(post.get_absolute_url()).text
    assert f'src="{post.featured_image.url}"' in html
    assert ".webp" not in html

    migrate_again_after("posts", "0010_search_words_across_hyphens")

    html = author.get(post.get_absolute_url()).text
    assert f"/media/renditions/{post.featured_image.name}-480w.webp 480w" in html


# Large images (issue 17, finding 9) -----------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [(8000, 6000), (20_000, 10_000)],
    ids=["48-megapixels", "200-megapixels-beyond-pillows-own-limit"],
)
def test_a_decompression_bomb_is_refused_in_the_form_with_the_reason(
    author, media, width, height
):
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(featured_image=bomb(width, height), featured_image_alt="Bomb"),
    )
    assert response.status_code == 200
    assert "more than 40 million pixels" in response.content.decode()
    assert not Post.objects.exists()
    assert not any(media.rglob("*.png"))


def test_a_body_image_of_too_many_pixels_is_refused_too(author):
    post = PublishedPostFactory()
    form = admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": bomb(8000, 6000),
            "images-0-alt": "A chart",
        },
    )
    response = author.post(f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 200
    assert "more than 40 million pixels" in response.content.decode()
    assert not PostImage.objects.exists()


@pytest.mark.usefixtures("celery_eager")
def test_renditions_are_made_by_a_worker_and_the_page_shows_the_original_until_then(
    author, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as after_commit:
        response = author.post(
            "/admin/posts/post/add/",
            admin_post_form(
                featured_image=png(1600, 900),
                featured_image_alt="Maidstone Crown Court from the street",
                status="published",
            ),
        )
    assert response.status_code == 302
    assert not (media / "renditions").exists()  # nothing resized in the request
    post = Post.objects.get()
    html = author.get(post.get_absolute_url()).content.decode()
    assert f'src="{post.featured_image.url}"' in html
    assert "-480w.webp" not in html

    for callback in after_commit:  # the worker's turn
        callback()
    assert len(list((media / "renditions").rglob("*.webp"))) == 3
    html = author.get(post.get_absolute_url()).content.decode()
    assert "-480w.webp 480w" in html


def sideways(image_format: str, exif_in: str = "eXIf") -> bytes:
    """A 1000 by 600 image stored before uploads were cleaned, its orientation tag
    6 (turn clockwise to show: 600 wide), in a JPEG's EXIF or in a PNG's eXIf
    chunk (where Pillow writes it, before the pixels) or its "Raw profile type
    exif" text (GIMP's and ImageMagick's)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = BytesIO()
    picture = Image.new("RGB", (1000, 600), (30, 90, 150))
    if exif_in == "eXIf":
        picture.save(buffer, image_format, exif=exif)
    else:
        raw = exif.tobytes()
        text = PngImagePlugin.PngInfo()
        text.add_text(exif_in, f"\nexif\n{len(raw):8}\n{raw.hex()}\n", zip=True)
        picture.save(buffer, image_format, pnginfo=text)
    return buffer.getvalue()


def after_the_pixels(png: bytes) -> bytes:
    """The PNG with its eXIf and text chunks moved after its pixels, where
    ImageMagick writes its eXIf and where the PNG standard allows text."""
    chunks, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        chunks.append(png[offset : offset + 12 + length])
        offset += 12 + length
    moved = [c for c in chunks if c[4:8] in (b"eXIf", b"zTXt")]
    assert moved  # the test's own premise
    kept = [c for c in chunks if c not in moved]
    return png[:8] + b"".join(kept[:-1] + moved + kept[-1:])


@pytest.mark.parametrize(
    ("original", "widths"),
    [
        (lambda: sideways("JPEG"), [480]),
        (lambda: sideways("PNG"), [480]),
        (lambda: after_the_pixels(sideways("PNG")), [480]),
        (
            lambda: after_the_pixels(sideways("PNG", "Raw profile type exif")),
            [480],
        ),
        (lambda: png(1000, 600).read(), [480, 800]),
    ],
    ids=[
        "sideways-jpeg",
        "sideways-png",
        "sideways-png-exif-after-the-pixels",
        "sideways-png-exif-text-after-the-pixels",
        "upright-png",
    ],
)
def test_whether_renditions_are_made_is_read_without_decoding_the_image(
    media, monkeypatch, original, widths
):
    """Asked once of every upload, after its ring: Pillow's getexif of a PNG
    decodes it all first, for metadata that may follow the pixels. The widths
    still follow the orientation tag, as the renditions' do."""
    name = default_storage.save("posts/2018/office.img", ContentFile(original()))
    made = images.renditions_make(name=name)
    assert made == [images.rendition_name(name, w) for w in widths]
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda image: decoded.append(image) or load(image)
    )

    assert images.renditions_made(name)
    default_storage.delete(made[-1])
    assert not images.renditions_made(name)
    assert decoded == []


# What the camera wrote (issue: an author's phone photo told readers where it was
# taken) ----------------------------------------------------------------------------


# Made once: a profile holds the time it was made.
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_photo() -> SimpleUploadedFile:
    """A 600 by 400 JPEG as a phone held upright writes it: the pixels sideways,
    orientation 6 (turn clockwise to show), GPS, the phone's serial number, XMP,
    a comment and a colour profile. Its top-left corner is red."""
    picture = Image.new("RGB", (600, 400), (30, 90, 150))
    picture.paste((220, 20, 20), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Phone maker"
    exif[ExifTags.Base.BodySerialNumber] = "SN-12345"
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (51.0, 16.0, 30.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (0.0, 31.0, 12.0),
    }
    buffer = BytesIO()
    picture.save(
        buffer,
        "JPEG",
        quality=85,
        exif=exif,
        icc_profile=SRGB,
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Home</x:xmpmeta>',
        comment=b"Taken at home",
    )
    with Image.open(BytesIO(buffer.getvalue())) as check:  # the test's own premise
        assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    return SimpleUploadedFile("office.jpg", buffer.getvalue(), "image/jpeg")


def test_a_phone_photo_is_stored_upright_without_its_gps_and_with_its_colours(
    author, media
):
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(featured_image=phone_photo(), featured_image_alt="An office"),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    post = Post.objects.get()
    assert (post.featured_image_width, post.featured_image_height) == (400, 600)
    with Image.open(post.featured_image.path) as stored:
        assert stored.format == "JPEG"
        assert stored.size == (400, 600)
        assert dict(stored.getexif()) == {}
        assert "exif" not in stored.info and "xmp" not in stored.info
        assert "comment" not in stored.info
        assert not any(marker == "APP1" for marker, _ in stored.applist)
        assert stored.info["icc_profile"] == SRGB
        red, green, blue = stored.getpixel((350, 50))  # turned: now top right
        assert red > 180 and green < 70 and blue < 70
    raw = (media / post.featured_image.name).read_bytes()
    assert b"SN-12345" not in raw and b"Phone maker" not in raw
    assert b"Taken at home" not in raw and b"xmpmeta" not in raw


@pytest.mark.parametrize("mode", ["RGB", "CMYK"])
def test_an_original_stored_sideways_before_cleaning_gets_upright_renditions(
    media, mode
):
    """Turned in place, then converted to RGB with the original let go (a 40
    megapixel photo is 160 MB a copy): the renditions still come out upright."""
    picture = Image.new("RGB", (1000, 600), (30, 90, 150))
    picture.paste((220, 20, 20), (0, 0, 100, 100))  # top left, as stored
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # turn clockwise to show
    buffer = BytesIO()
    picture.convert(mode).save(buffer, "JPEG", quality=90, exif=exif)
    name = default_storage.save("posts/2018/office.jpg", ContentFile(buffer.getvalue()))

    made = images.renditions_make(name=name)

    assert made == [images.rendition_name(name, 480)]
    with Image.open(media / made[0]) as rendition:
        assert (rendition.size, rendition.mode) == ((480, 800), "RGB")
        red, green, blue = rendition.getpixel((440, 40))  # turned: now top right
        assert red > 180 and green < 70 and blue < 70


def test_a_png_keeps_its_pixels_and_loses_its_text(author, media):
    picture = Image.new("RGB", (64, 48), (30, 90, 150))
    picture.putpixel((3, 4), (1, 2, 3))
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "A. Writer, 12 Home Street")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>Home</x:xmpmeta>")
    text.add_text("Comment", "drafted at home", zip=True)
    buffer = BytesIO()
    picture.save(buffer, "PNG", pnginfo=text, icc_profile=SRGB)
    post = PublishedPostFactory()
    form = admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": SimpleUploadedFile(
                "chart.png", buffer.getvalue(), "image/png"
            ),
            "images-0-alt": "A chart",
        },
    )
    response = author.post(f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    with Image.open(PostImage.objects.get().image.path) as stored:
        assert stored.text == {}
        assert stored.info["icc_profile"] == SRGB
        assert stored.tobytes() == picture.tobytes()
    raw = (media / PostImage.objects.get().image.name).read_bytes()
    assert b"Home" not in raw and b"home" not in raw


def test_a_webp_with_exif_loses_it(author):
    exif = Image.Exif()
    exif[ExifTags.Base.BodySerialNumber] = "SN-12345"
    buffer = BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 150)).save(buffer, "WEBP", exif=exif)
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=SimpleUploadedFile("a.webp", buffer.getvalue()),
            featured_image_alt="A chart",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    with Image.open(Post.objects.get().featured_image.path) as stored:
        assert stored.format == "WEBP" and dict(stored.getexif()) == {}


def test_a_phones_two_picture_jpeg_is_stored_as_its_first_picture(author):
    # Phones write an MPO: a JPEG and, after it, a depth map with EXIF of its own.
    # Pillow calls it animated, and it was refused as an animation.
    first, depth = Image.new("RGB", (60, 40), "red"), Image.new("L", (30, 20))
    exif = Image.Exif()
    exif[ExifTags.Base.BodySerialNumber] = "SN-12345"
    buffer = BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[depth], exif=exif)
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=SimpleUploadedFile("photo.jpg", buffer.getvalue()),
            featured_image_alt="An office",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    stored = Post.objects.get().featured_image
    assert b"SN-12345" not in stored.read()
    with Image.open(stored.path) as picture:
        assert (picture.format, picture.size) == ("JPEG", (60, 40))


def test_an_animated_gif_is_refused_with_the_reason(author):
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue")]
    buffer = BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=SimpleUploadedFile("moving.gif", buffer.getvalue()),
            featured_image_alt="A moving chart",
        ),
    )
    assert response.status_code == 200
    assert "This image is animated" in response.text
    assert not Post.objects.exists()


@pytest.mark.parametrize("image_format", ["TIFF", "ICO", "EPS"])
def test_a_format_other_than_jpeg_png_gif_or_webp_is_refused_with_the_reason(
    author, image_format
):
    """Worded with no article, which read "a ICO", "a EPS": whether a format
    takes "a" or "an" is how its name is said, which its letters do not tell."""
    buffer = BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, image_format)
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=SimpleUploadedFile("scan", buffer.getvalue()),
            featured_image_alt="A scan",
        ),
    )
    assert response.status_code == 200
    assert (
        f"This image is in the {image_format} format: please save it as a JPEG, "
        "PNG, GIF or WebP and upload it again."
    ) in response.text
    assert not Post.objects.exists()


def test_every_image_field_in_the_admin_is_cleaned_on_upload(rf):
    request = rf.get("/")
    request.user = UserFactory(is_superuser=True)
    fields = []
    for model, model_admin in admin.site._registry.items():
        inlines = [inline(model, admin.site) for inline in model_admin.inlines]
        for each in [model_admin, *inlines]:
            if not each.has_change_permission(request):  # read only: no uploads
                continue
            for field in each.model._meta.get_fields():
                if isinstance(field, models.ImageField):
                    form_field = each.formfield_for_dbfield(field, request=request)
                    fields.append((each.model.__name__, field.name, type(form_field)))
    assert len(fields) == 3, fields  # featured images, body images, sponsors' logos
    assert {form_field for *_, form_field in fields} == {ImageUploadField}, fields


def test_an_image_address_too_long_for_the_disk_is_a_404_in_development(rf, settings):
    # make run serves uploads through Django (DEBUG; the tests run without it, so
    # the view is called as its URL would): Django's view asked the file system
    # about the name, which answered "File name too long", a 500.
    name = "a/" * 3000 + "b.png"
    with pytest.raises(Http404):
        uploaded_file(
            rf.get(f"/media/{name}"), path=name, document_root=settings.MEDIA_ROOT
        )


# Renditions show what the original shows ------------------------------------------


def rendition_of_featured_image(author, on_commit, media, upload) -> Image.Image:
    """The 480 pixel wide rendition of `upload`, uploaded as a featured image."""
    response = on_commit(
        author.post,
        "/admin/posts/post/add/",
        admin_post_form(featured_image=upload, featured_image_alt="A logo"),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    return Image.open(next((media / "renditions").rglob("*-480w.webp")))


def transparent_logo(image_format: str) -> SimpleUploadedFile:
    """A red square on a transparent background: a palette image whose colour 0
    is transparent, as logos are saved."""
    picture = Image.new("P", (1000, 600), 0)
    picture.putpalette([0, 0, 0, 200, 30, 30])
    picture.paste(1, (400, 200, 600, 400))
    buffer = BytesIO()
    picture.save(buffer, image_format, transparency=0)
    return SimpleUploadedFile(f"logo.{image_format.lower()}", buffer.getvalue())


def transparent_rgb_png() -> SimpleUploadedFile:
    """An RGB PNG whose white is transparent (a tRNS chunk, no alpha channel)."""
    picture = Image.new("RGB", (1000, 600), (255, 255, 255))
    picture.paste((200, 30, 30), (400, 200, 600, 400))
    buffer = BytesIO()
    picture.save(buffer, "PNG", transparency=(255, 255, 255))
    return SimpleUploadedFile("logo.png", buffer.getvalue())


@pytest.mark.parametrize(
    "upload",
    [
        lambda: transparent_logo("PNG"),
        lambda: transparent_logo("GIF"),
        transparent_rgb_png,
    ],
    ids=["palette-png", "gif", "rgb-png"],
)
@pytest.mark.usefixtures("celery_eager")
def test_a_transparent_image_keeps_its_transparency_in_its_renditions(
    author, media, on_commit, upload
):
    """A logo's transparent background was black (or white) in its renditions,
    a box around it on the page, where the original showed none."""
    with rendition_of_featured_image(author, on_commit, media, upload()) as shown:
        shown = shown.convert("RGBA")
        assert shown.getpixel((10, 10))[3] == 0
        assert shown.getpixel((240, 144)) == pytest.approx((200, 30, 30, 255), abs=10)


# A CMYK profile, as far as anything reading it can tell: the colour space its
# header declares.
CMYK_PROFILE = SRGB[:16] + b"CMYK" + SRGB[20:]


@pytest.mark.parametrize(
    ("mode", "profile", "kept"),
    [("RGB", SRGB, SRGB), ("CMYK", CMYK_PROFILE, None)],
    ids=["rgb", "cmyk"],
)
@pytest.mark.usefixtures("celery_eager")
def test_renditions_keep_the_colour_profile_of_the_original_when_it_fits_them(
    author, media, on_commit, mode, profile, kept
):
    """The original keeps its profile, without which colours shift (a phone's
    Display P3 photo shown as sRGB is dull); its renditions lost it. A CMYK
    photo's renditions are RGB, which its profile does not describe."""
    buffer = BytesIO()
    Image.new(mode, (1000, 600)).save(buffer, "JPEG", icc_profile=profile)
    upload = SimpleUploadedFile("office.jpg", buffer.getvalue())
    with rendition_of_featured_image(author, on_commit, media, upload) as shown:
        assert shown.info.get("icc_profile") == kept


# Stored under the extension of what it is (a PNG uploaded as chart.pdf was served
# as a PDF) ---------------------------------------------------------------------------


def picture(name: str, image_format: str, width: int = 1000) -> SimpleUploadedFile:
    buffer = BytesIO()
    Image.new("RGB", (width, 600), (30, 90, 150)).save(buffer, image_format)
    return SimpleUploadedFile(name, buffer.getvalue())


@pytest.mark.parametrize(
    ("uploaded_as", "image_format", "stored_as", "content_type"),
    [
        ("x.pdf", "PNG", "x.png", "image/png"),
        ("y.png", "JPEG", "y.jpg", "image/jpeg"),
        ("x.svg", "PNG", "x.png", "image/png"),
        ("photo.JPG.exe", "JPEG", "photo.JPG.jpg", "image/jpeg"),
        ("chart", "GIF", "chart.gif", "image/gif"),
    ],
)
@pytest.mark.usefixtures("celery_eager")
def test_a_featured_image_is_stored_and_served_as_the_format_it_is(
    author, media, on_commit, rf, uploaded_as, image_format, stored_as, content_type
):
    response = on_commit(
        author.post,
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=picture(uploaded_as, image_format),
            featured_image_alt="An office",
            status="published",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    name = Post.objects.get().featured_image.name
    assert name.rsplit("/", 1)[1] == stored_as
    assert sorted(p.name for p in (media / "renditions").rglob("*.webp")) == [
        f"{stored_as}-480w.webp",
        f"{stored_as}-800w.webp",
    ]
    html = author.get(Post.objects.get().get_absolute_url()).text
    assert f'src="/media/{name}"' in html
    assert f"/media/renditions/{name}-480w.webp 480w" in html
    served = uploaded_file(rf.get(f"/media/{name}"), path=name, document_root=media)
    assert served["Content-Type"] == content_type


@pytest.mark.usefixtures("celery_eager")
def test_a_body_image_is_stored_as_the_format_it_is_and_its_markdown_says_so(
    author, on_commit
):
    post = PublishedPostFactory()
    form = admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": picture("y.png", "JPEG", width=1600),
            "images-0-alt": "A chart",
        },
    )
    response = on_commit(author.post, f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    name = PostImage.objects.get().image.name
    assert name.rsplit("/", 1)[1] == "y.jpg"
    html = author.get(f"/admin/posts/post/{post.pk}/change/").text
    assert f"![A chart](/media/renditions/{name}-1200w.webp)" in html


# What emails show (Outlook for Windows shows no WebP; tests/test_emails.py shows
# them in the email) ------------------------------------------------------------------


def email_renditions(media) -> list[tuple[str, tuple[int, int], str]]:
    """Each email rendition made: its format, size and mode."""
    made = []
    for path in sorted((media / "renditions").rglob("*-email.*")):
        with Image.open(path) as shown:
            made.append((shown.format, shown.size, "A" in shown.getbands()))
    return made


def transparent_png(width: int, height: int) -> bytes:
    picture = Image.new("RGBA", (width, height), (200, 30, 30, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 40, 40))
    buffer = BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("original", "made"),
    [
        (lambda: picture("a.jpg", "JPEG", 3000).read(), [("JPEG", (1104, 221), False)]),
        (lambda: png(2400, 1200).read(), [("JPEG", (1104, 552), False)]),
        (lambda: transparent_png(2400, 1200), [("PNG", (1104, 552), True)]),
        (lambda: picture("a.webp", "WEBP", 700).read(), [("JPEG", (700, 600), False)]),
        (lambda: picture("a.jpg", "JPEG", 1000).read(), []),
        (lambda: transparent_logo("GIF").read(), []),
    ],
    ids=["wide-jpeg", "wide-png", "transparent-png", "webp", "narrow-jpeg", "gif"],
)
def test_an_image_gets_an_email_rendition_where_mail_programs_need_one(
    media, original, made
):
    """A JPEG (a PNG where it has transparency) at most twice the email's column
    wide, never enlarged; none where the original is one already, and no wider."""
    name = default_storage.save("posts/2024/chart.img", ContentFile(original()))
    images.renditions_make(name=name)
    assert email_renditions(media) == made
    assert images.renditions_made(name)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_eager")
def test_a_body_image_uploaded_before_gets_its_email_rendition_after_the_deploy(
    media,
):
    """Its WebP renditions made, it had no email rendition: the migration rings it
    as lost, and beat's next ring makes it."""
    post = PublishedPostFactory()
    PostImage.objects.create(
        post=post, image=picture("office.jpg", "JPEG", 2000), alt="An office"
    )
    assert not (media / "renditions").exists()

    migrate_again_after("posts", "0017_inspections_not_yet_reported_last")

    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
    assert email_renditions(media) == [("JPEG", (1104, 331), False)]


# A draft's images before it is published ---------------------------------------------


@pytest.mark.parametrize("field", ["featured_image", "images-0-image"])
def test_a_drafts_image_is_not_found_at_an_address_guessed_from_its_file_name(
    author, media, rf, field
):
    """nginx serves every upload, a draft's too: stored as posts/<year>/<the
    file's name>, an embargoed report's chart (kent-inspection-chart.png) or a
    camera's IMG_0001.jpg was found by anyone who guessed the name, before the
    post was published. Each upload is under a folder of its own, named at random."""
    year = f"{timezone.now():%Y}"
    chart = png(800, 600, "kent-inspection-chart.png")
    if field == "featured_image":
        form = admin_post_form(featured_image=chart, featured_image_alt="A chart")
    else:
        form = admin_post_form(
            **{"images-TOTAL_FORMS": "1", field: chart, "images-0-alt": "A chart"}
        )
    response = author.post("/admin/posts/post/add/", form)
    assert response.status_code == 302, response.content.decode()[-3000:]

    guessed = f"posts/{year}/kent-inspection-chart.png"
    with pytest.raises(Http404):
        uploaded_file(rf.get(f"/media/{guessed}"), path=guessed, document_root=media)
    post = Post.objects.get()
    stored = post.featured_image or post.images.get().image
    assert stored.name.startswith(f"posts/{year}/")
    assert stored.name.endswith("/kent-inspection-chart.png")
    served = uploaded_file(rf.get(stored.url), path=stored.name, document_root=media)
    assert served.status_code == 200


# An image deleted, or replaced -----------------------------------------------------


def uploaded_files(media) -> list[str]:
    """Every file under the uploads, originals and renditions."""
    return sorted(p.name for p in media.rglob("*") if p.is_file())


def body_image_deleted(post: Post, image: PostImage, *, body: str) -> dict:
    return admin_post_form_of(
        post,
        body=body,
        **{
            "images-TOTAL_FORMS": "1",
            "images-INITIAL_FORMS": "1",
            "images-0-id": str(image.pk),
            "images-0-post": str(post.pk),
            "images-0-alt": image.alt,
            "images-0-DELETE": "on",
        },
    )


@pytest.mark.usefixtures("celery_eager")
def test_a_body_image_deleted_is_no_longer_served(author, media, on_commit):
    """Deleted at the desk, a photo uploaded by mistake (a reader's face, a
    document on a desk) stayed on the site at its address, renditions and all."""
    post = PostFactory()
    form = admin_post_form_of(
        post,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": png(1600, 900, "wrong.png"),
            "images-0-alt": "A desk",
        },
    )
    assert (
        on_commit(author.post, f"/admin/posts/post/{post.pk}/change/", form).status_code
        == 302
    )
    assert "wrong.png-480w.webp" in uploaded_files(media)

    image = PostImage.objects.get()
    form = body_image_deleted(post, image, body=post.body)
    response = on_commit(author.post, f"/admin/posts/post/{post.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[-3000:]
    assert not PostImage.objects.exists()
    assert uploaded_files(media) == []


def test_a_body_image_still_in_the_body_is_kept_saying_why(author, media):
    """Deleted while the body showed it, the page showed a broken image."""
    post = PostFactory()
    image = PostImage.objects.create(post=post, image=png(800, 400), alt="A chart")
    post.body = f"Caseloads rose.\n\n![A chart]({image.image.url})"
    post.save()

    form = body_image_deleted(post, image, body=post.body)
    response = author.post(f"/admin/posts/post/{post.pk}/change/", form)

    assert response.status_code == 200
    assert "The image “A chart” is in the body: take it out" in response.text
    assert PostImage.objects.exists()
    assert uploaded_files(media) == ["photo.png"]


@pytest.mark.usefixtures("celery_eager")
def test_a_featured_image_replaced_or_taken_off_is_no_longer_served(
    author, media, on_commit
):
    post = PostFactory()

    def save(**fields):
        form = admin_post_form_of(post, **fields)
        page = on_commit(author.post, f"/admin/posts/post/{post.pk}/change/", form)
        assert page.status_code == 302

    save(featured_image=png(1000, 600, "first.png"), featured_image_alt="An office")
    save(featured_image=png(1000, 600, "second.png"), featured_image_alt="A court")
    assert uploaded_files(media) == [
        "second.png",
        "second.png-480w.webp",
        "second.png-800w.webp",
    ]

    save(**{"featured_image-clear": "on"})
    assert uploaded_files(media) == []


@pytest.mark.usefixtures("celery_eager")
@pytest.mark.parametrize("deleted_by", ["its delete page", "the list's action"])
def test_a_post_deleted_takes_its_images_off_the_site(
    author, media, on_commit, deleted_by
):
    """Deleted at the desk, a post's featured image, its body images and their
    renditions stayed at their addresses for good."""
    post = PostFactory()
    form = admin_post_form_of(
        post,
        featured_image=png(1000, 600, "office.png"),
        featured_image_alt="An office",
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": png(1600, 900, "desk.png"),
            "images-0-alt": "A desk",
        },
    )
    change = f"/admin/posts/post/{post.pk}/change/"
    assert on_commit(author.post, change, form).status_code == 302
    assert "desk.png-480w.webp" in uploaded_files(media)
    assert "office.png-480w.webp" in uploaded_files(media)

    if deleted_by == "its delete page":
        response = on_commit(
            author.post, f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"}
        )
    else:
        response = on_commit(
            author.post,
            "/admin/posts/post/",
            {"action": "delete_selected", "_selected_action": [post.pk], "post": "yes"},
        )

    assert response.status_code == 302
    assert not Post.objects.exists()
    assert uploaded_files(media) == []


def test_a_post_deleted_keeps_an_image_another_posts_body_shows(
    author, media, on_commit
):
    """Its Markdown pasted into another post, the image stays for that post."""
    post = PostFactory()
    image = PostImage.objects.create(post=post, image=png(800, 400), alt="A chart")
    other = PostFactory(body=f"As we showed:\n\n![A chart]({image.image.url})")

    response = on_commit(
        author.post, f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 302
    assert list(Post.objects.all()) == [other]
    assert uploaded_files(media) == ["photo.png"]
