"""Images: a featured image with required alt text, resized renditions, body images."""

from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from posts.models import Post, PostImage

from .factories import PublishedPostFactory, UserFactory, admin_post_form

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def png(width: int, height: int, name: str = "photo.png") -> SimpleUploadedFile:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (30, 90, 150)).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


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


# Large images (issue 17, finding 9) -----------------------------------------------


def bomb(width: int, height: int) -> SimpleUploadedFile:
    """A one-bit PNG: a few kilobytes on the wire, width by height pixels decoded."""
    buffer = BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return SimpleUploadedFile("bomb.png", buffer.getvalue(), content_type="image/png")


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
