"""image-transform end to end: real images in real buckets, a bucket trigger, Pillow reading
the results back; every guard refuses with a clear error and writes nothing."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import pytest
from builtin_helpers import (
    add_bucket_trigger,
    deploy_builtin,
    deployed,
    invoke,
    keys,
    s3_client,
    s3_event,
    wait_for,
)

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402


def photo(w: int, h: int, fmt: str = "JPEG", **save) -> bytes:
    """A photo-like image: gradients plus a shape, so encoders have real work."""
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(200, 40, 40))
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def png_bomb(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb's header)."""
    raw = photo(4, 4, "PNG")
    ihdr = struct.pack(">II", w, h) + raw[24:29]
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + \
        raw[33:]


def opened(s3, bucket: str, key: str) -> Image.Image:
    img = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    img.load()
    return img


@pytest.fixture(scope="module")
def s3(server):
    client = s3_client(server)
    for b in ("photos", "thumbs", "guarded"):
        client.create_bucket(Bucket=b)
    return client


@pytest.fixture(scope="module")
def thumbs(server, s3):
    """256-px WebP thumbnails of photos/*.jpg, wired to the bucket's creates."""
    deployed(server, "image-transform", "thumbs", {
        "source_bucket": "photos", "source_suffix": ".jpg", "target_bucket": "thumbs",
        "target_key": "small/{dir}/{stem}-{width}.{ext}", "width": 256, "format": "webp"})
    add_bucket_trigger(server, "thumbs", "photos", suffix=".jpg")
    return "thumbs"


def test_bucket_trigger_makes_a_webp_thumbnail(server, s3, thumbs):
    s3.put_object(Bucket="photos", Key="2024/cat pic.jpg", Body=photo(1600, 1200))
    assert wait_for(lambda: keys(s3, "thumbs", "small/2024/"))
    out = opened(s3, "thumbs", "small/2024/cat pic-256.webp")
    assert (out.format, out.size) == ("WEBP", (256, 192))
    head = s3.head_object(Bucket="thumbs", Key="small/2024/cat pic-256.webp")
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"]["dayfly-source"] == "photos/2024/cat pic.jpg"


def test_exif_orientation_is_applied_and_metadata_stripped(server, s3, thumbs):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90° clockwise)
    exif[0x010F] = "TestCam"
    s3.put_object(Bucket="photos", Key="rot.jpg", Body=photo(800, 400, exif=exif.tobytes()))
    err, out = invoke(server, "thumbs", s3_event("photos", "rot.jpg"))
    assert err is None, out
    img = opened(s3, "thumbs", "small/rot-256.webp")
    assert img.size == (256, 512)
    assert not img.getexif() and "icc_profile" not in img.info


def test_small_images_are_not_upscaled_unless_asked(server, s3, thumbs):
    s3.put_object(Bucket="photos", Key="tiny.jpg", Body=photo(100, 50))
    err, out = invoke(server, "thumbs", s3_event("photos", "tiny.jpg"))
    assert err is None and out["written"][0]["width"] == 100, out


def test_operation_chain_cover_rotate_flip_watermark_to_jpeg(server, s3):
    deployed(server, "image-transform", "chain", {
        "source_bucket": "photos", "target_bucket": "thumbs", "target_key": "chain/{stem}.{ext}",
        "format": "jpeg", "quality": 90, "background": "#00ff00",
        "operations": [{"op": "resize", "width": 300, "height": 300, "fit": "cover"},
                       {"op": "crop", "width": 200, "height": 100, "gravity": "north"},
                       {"op": "rotate", "degrees": 90}, {"op": "flip", "direction": "vertical"},
                       {"op": "watermark", "text": "dayfly", "size": 20, "opacity": 1.0}]})
    rgba = Image.new("RGBA", (640, 480), (255, 0, 0, 0))  # fully transparent: JPEG gets the bg
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    s3.put_object(Bucket="photos", Key="alpha.png", Body=buf.getvalue())
    err, out = invoke(server, "chain", {"bucket": "photos", "key": "alpha.png"})
    assert err is None, out
    img = opened(s3, "thumbs", "chain/alpha.jpg")
    assert (img.format, img.size) == ("JPEG", (100, 200))  # cropped 200x100, then rotated
    r, g, b = img.getpixel((5, 100))
    assert g > 200 and r < 60 and b < 60  # the transparent input became the background
    assert img.getpixel((85, 190)) != img.getpixel((5, 100))  # watermark, bottom right


def test_fill_letterboxes_and_exact_stretches(server, s3):
    s3.put_object(Bucket="photos", Key="wide.jpg", Body=photo(800, 200))
    for fit, size in (("fill", (200, 200)), ("exact", (200, 200)), ("contain", (200, 50))):
        name = f"fit-{fit}"
        deployed(server, "image-transform", name, {
            "source_bucket": "photos", "target_bucket": "thumbs",
            "target_key": f"{fit}/{{stem}}.{{ext}}", "format": "png", "width": 200,
            "height": 200, "fit": fit})
        err, out = invoke(server, name, {"bucket": "photos", "key": "wide.jpg"})
        assert err is None, out
        assert opened(s3, "thumbs", f"{fit}/wide.png").size == size


def test_animated_gif_to_animated_webp_and_refused_when_configured(server, s3):
    frames = [Image.new("RGB", (120, 80), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    s3.put_object(Bucket="photos", Key="anim.gif", Body=buf.getvalue())
    deployed(server, "image-transform", "anim", {
        "source_bucket": "photos", "target_bucket": "thumbs", "target_key": "anim/{stem}.{ext}",
        "width": 60, "animated": "all", "format": "webp"})
    err, out = invoke(server, "anim", {"bucket": "photos", "key": "anim.gif"})
    assert err is None and out["written"][0]["frames"] == 3, out
    img = opened(s3, "thumbs", "anim/anim.webp")
    assert img.n_frames == 3 and img.size == (60, 40)
    deployed(server, "image-transform", "noanim", {
        "source_bucket": "photos", "target_bucket": "thumbs", "target_key": "noanim/{stem}.{ext}",
        "width": 60, "animated": "refuse"})
    err, out = invoke(server, "noanim", {"bucket": "photos", "key": "anim.gif"})
    assert err == "Unhandled" and out["errorType"] == "ImageRefused"
    assert "animated image (3 frames) refused" in out["errorMessage"]
    assert keys(s3, "thumbs", "noanim/") == []


def test_format_conversion_and_inline_requests(server, s3):
    from PIL import features

    formats = ["png", "gif", "jpeg"] + (["avif"] if features.check("avif") else [])
    for fmt in formats:
        deployed(server, "image-transform", f"to-{fmt}", {
            "source_bucket": "photos", "target_bucket": "thumbs", "format": fmt, "width": 64})
        data = base64.b64encode(photo(320, 240)).decode()
        err, out = invoke(server, f"to-{fmt}", {"image_base64": data})
        assert err is None, out
        img = Image.open(io.BytesIO(base64.b64decode(out["image_base64"])))
        assert img.format == fmt.upper() and img.size == (64, 48)


@pytest.fixture(scope="module")
def guarded(server, s3):
    deployed(server, "image-transform", "guarded", {
        "source_bucket": "guarded", "target_bucket": "thumbs", "target_key": "guarded/{stem}.{ext}",
        "width": 64, "max_pixels": 4_000_000, "max_input_bytes": 2_000_000})
    return "guarded"


@pytest.mark.parametrize(("key", "data", "error", "words"), [
    ("bomb.png", png_bomb(60000, 60000), "ImageRefused", "decompression bomb"),
    ("big.png", png_bomb(2100, 2000), "ImageRefused", "over max_pixels=4000000"),
    ("truncated.jpg", photo(1000, 800, quality=95)[:3000], "ImageError", "corrupt"),
    ("noise.jpg", b"\xff\xd8 definitely not a jpeg" * 100, "ImageError", "corrupt"),
    ("text.png", b"hello, I am text", "ImageError", "not an image"),
    ("huge.jpg", b"\xff\xd8" + b"\0" * 2_100_000, "ImageRefused", "over max_input_bytes"),
], ids=["bomb", "over-max-pixels", "truncated", "corrupt", "not-an-image", "too-many-bytes"])
def test_guards_refuse_with_a_clear_error_and_write_nothing(server, s3, guarded, key, data,
                                                            error, words):
    s3.put_object(Bucket="guarded", Key=key, Body=data)
    err, out = invoke(server, "guarded", s3_event("guarded", key, len(data)))
    assert err == "Unhandled" and out["errorType"] == error, out
    assert words in out["errorMessage"]
    assert keys(s3, "thumbs", "guarded/") == []


def test_configuration_is_validated_at_deploy(server, s3):
    cases = [
        ({"target_bucket": "thumbs", "width": 10}, "option 'source_bucket' is required"),
        ({"source_bucket": "photos", "target_bucket": "thumbs", "widht": 10},
         "unknown option 'widht' (did you mean 'width'?)"),
        ({"source_bucket": "photos", "target_bucket": "thumbs", "fit": "squash", "width": 5},
         "must be one of contain, cover, fill, exact"),
        ({"source_bucket": "photos", "target_bucket": "thumbs", "target_key": "{stem}{oops}"},
         "unknown placeholder {oops}"),
        ({"source_bucket": "photos", "width": 10, "format": "jpeg"},
         "the function would trigger itself"),
        ({"source_bucket": "photos", "target_bucket": "thumbs", "quality": 101},
         "'quality' must be an integer from 1 to 100"),
        ({"source_bucket": "photos", "target_bucket": "thumbs",
          "operations": [{"op": "crop", "box": [10, 10, 5, 5]}]}, "left < right"),
        ({"source_bucket": "photos", "target_bucket": "thumbs", "animated": "all",
          "format": "jpeg"}, "needs an animated output format"),
    ]
    for config, words in cases:
        out = deploy_builtin(server, "image-transform", "invalid", config)
        assert out["error"]["status"] == 400 and words in out["error"]["message"], (config, out)
    assert httpx.get(f"{server.url}/2015-03-31/functions/invalid").status_code == 404


def test_same_bucket_outputs_outside_the_trigger_path_are_allowed(server, s3):
    out = deployed(server, "image-transform", "inplace", {
        "source_bucket": "photos", "source_prefix": "in/", "target_key": "out/{stem}.{ext}",
        "width": 32})
    assert out["function"]["Dayfly"]["Buckets"] == ["photos:readwrite"]
    assert out["builtin"]["trigger"] == {"bucket": "photos", "prefix": "in/", "suffix": ""}
