import io

import pytest
from PIL import Image

from imgroute.net import images
from tests.fakes.server import make_image


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", [(1024, 1024), (1536, 1024), (3840, 2160)])
def test_sniff_reads_format_and_size_from_the_header(fmt, size):
    data = make_image(*size, fmt)
    info = images.sniff(data[: images.HEADER_BYTES])
    assert (info.format, info.width, info.height) == (fmt, *size)


def test_sniff_png_alpha_and_lossless_webp():
    buf = io.BytesIO()
    Image.new("RGBA", (64, 48)).save(buf, "PNG")
    assert images.sniff(buf.getvalue()) == images.ImageInfo("png", 64, 48, True)
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (1, 2, 3, 4)).save(buf, "WEBP", lossless=True)
    info = images.sniff(buf.getvalue())
    assert (info.format, info.width, info.height, info.has_alpha) == ("webp", 40, 30, True)


def test_not_an_image():
    with pytest.raises(images.NotAnImage):
        images.sniff(b"<html>404</html>")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_stage_rejects_truncated_files_and_leaves_nothing(tmp_path, fmt):
    data = make_image(300, 200, fmt)
    with pytest.raises(images.NotAnImage):
        images.stage(tmp_path, [data[: len(data) - 40]], lambda info: None)
    assert list(tmp_path.iterdir()) == []


def test_stage_and_place_never_overwrite(tmp_path):
    data = make_image(32, 32)
    first = images.place(images.stage(tmp_path, [data], lambda i: None), tmp_path, "pic")
    second = images.place(images.stage(tmp_path, [data[:10], data[10:]], lambda i: None), tmp_path, "pic")
    assert (first.name, second.name) == ("pic.png", "pic-2.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic-2.png", "pic.png"]


def test_resuming_adopts_an_identical_unrecorded_file_but_never_one_taken_by_another_image(tmp_path):
    data = make_image(32, 32)
    first = images.place(images.stage(tmp_path, [data], lambda i: None), tmp_path, "pic")
    # Resuming a save cut short after the file was linked: the same bytes there are this image.
    again = images.place(images.stage(tmp_path, [data], lambda i: None), tmp_path, "pic", adopt_identical=True)
    assert again == first and sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]
    # But a file already recorded for another image of the job is that image's, however alike.
    other = images.place(
        images.stage(tmp_path, [data], lambda i: None), tmp_path, "pic", adopt_identical=True, taken={first}
    )
    assert other.name == "pic-2.png" and sorted(p.name for p in tmp_path.iterdir()) == ["pic-2.png", "pic.png"]


def test_slug_and_names():
    assert images.slug("A Lighthouse, at Dusk! (v2)") == "a-lighthouse-at-dusk-v2"
    assert images.slug("日本") == "image"
    assert len(images.slug("word " * 40)) <= images.SLUG_MAX
    assert images.render_name("{slug}/{index}", {"slug": "a", "index": "1"}) == "a-1"
    with pytest.raises(ValueError):
        images.render_name("{missing}", {})


def test_placed_files_follow_the_umask(tmp_path):
    """Read once at import (reading it means setting it, which threads could race), in a fresh
    process started under umask 027."""
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys; from pathlib import Path; from imgroute.net import images;"
        "from tests.fakes.server import make_image;"
        "out = Path(sys.argv[1]); staged = images.stage(out, [make_image(8, 8)], lambda i: None);"
        "print(images.place(staged, out, 'pic'))"
    )
    old = os.umask(0o027)
    try:
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    finally:
        os.umask(old)
    path = Path(done.stdout.strip())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
