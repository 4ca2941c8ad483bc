"""Waste on the shared fixtures, with every expected number worked out from `tar -tvf` listings.

The tests pin down four cases that dive 0.13 gets wrong. It counts the copy still in use as
waste, ignores opaque directories, counts hardlinks twice and divides by zero on an image that
stores no bytes.
"""

from __future__ import annotations

import pytest

from edgetrim.analyze import Category, analyze_image
from edgetrim.transports import open_image

# dive/test-docker-image.tar, listed with `tar -tvf` layer by layer (docker save, 14 layers):
#   0  busybox: bin/[ 1075464, bin/getconf 77880, etc/group 307, etc/localtime 127,
#      etc/passwd 340, etc/shadow 243, and 392 hardlinks to bin/[ (no content of their own)
#   1  /somefile.txt 6405                      (every 6405-byte file below is a copy of it)
#   2  mkdir -p /root/example/really/nested    (directories only)
#   3  /root/example/somefile1.txt 6405
#   4  /root/example/somefile1.txt 6405        (chmod 444: a new copy hides layer 3's)
#   5  /root/example/somefile2.txt 6405
#   6  /root/example/somefile3.txt 6405
#   7  whiteout of /root/example/somefile3.txt, /root/saved.txt 6405 (the mv)
#   8  /root/.saved.txt 6405
#   9  whiteout of /root/example               (rm -rf: hides layers 4 and 5's copies)
#   10 /root/.data/tag.sh 917, /root/.data/test.sh 1270
#   11 /tmp/saved.again1.txt 6405
#   12 /root/.data/saved.again2.txt 6405
#   13 /root/saved.txt 6405                    (chmod +x: hides layer 7's copy)
BUSYBOX_BYTES = 1075464 + 77880 + 307 + 127 + 340 + 243  # 1,154,361
COPY = 6405
STORED = BUSYBOX_BYTES + 10 * COPY + 917 + 1270  # ten 6405-byte members: 1,220,598
OVERWRITTEN = 2 * COPY  # layer 3 (by 4) and layer 7 (by 13); the copies in use do not count
DELETED = 3 * COPY  # layers 4 and 5 (by 9's directory whiteout) and 6 (by 7's file whiteout)
# Visible copies of the same content: /somefile.txt, /root/.saved.txt, /tmp/saved.again1.txt,
# /root/.data/saved.again2.txt, /root/saved.txt. One is kept, four are duplicates. The 392
# hardlinks share bin/['s inode and are not duplicates of it.
DUPLICATE = 4 * COPY


@pytest.fixture(scope="module")
def dive_image(fixtures_dir):
    with open_image(f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}") as image:
        return analyze_image(image)


def test_dive_image_stored_bytes(dive_image):
    assert dive_image.waste.stored_bytes == STORED


def test_dive_image_overwritten_counts_hidden_copies_only(dive_image):
    assert dive_image.waste.overwritten_bytes == OVERWRITTEN
    overwritten = {
        (c.path, c.layer, c.hidden_in) for c in dive_image.copies_in(Category.OVERWRITTEN)
    }
    assert overwritten == {("/root/example/somefile1.txt", 3, 4), ("/root/saved.txt", 7, 13)}


def test_dive_image_deleted_by_file_and_directory_whiteouts(dive_image):
    assert dive_image.waste.deleted_bytes == DELETED
    deleted = {(c.path, c.layer, c.hidden_in) for c in dive_image.copies_in(Category.DELETED)}
    assert deleted == {
        ("/root/example/somefile1.txt", 4, 9),
        ("/root/example/somefile2.txt", 5, 9),
        ("/root/example/somefile3.txt", 6, 7),
    }


def test_dive_image_duplicates_exclude_hardlinks(dive_image):
    assert dive_image.waste.duplicate_bytes == DUPLICATE
    assert len(dive_image.duplicates) == 1
    group = dive_image.duplicates[0]
    assert group.kept == "/somefile.txt"
    assert len(group.duplicates) == 4


def test_dive_image_hardlinks_count_once(dive_image):
    busybox = [c for c in dive_image.copies if c.path == "/bin/["]
    assert len(busybox) == 1
    # bin/[ itself plus the 392 hardlinks of the base layer share one stored copy.
    assert len(busybox[0].paths) == 393
    assert busybox[0].category is Category.IN_USE
    assert dive_image.layers[0].content_bytes == BUSYBOX_BYTES


def test_dive_image_totals_and_efficiency(dive_image):
    waste = dive_image.waste
    assert waste.wasted_bytes == OVERWRITTEN + DELETED + DUPLICATE == 57645
    assert waste.in_use_bytes + waste.wasted_bytes + waste.likely_unused_bytes == STORED
    assert waste.final_bytes == BUSYBOX_BYTES + 5 * COPY + 917 + 1270
    assert waste.efficiency == pytest.approx((STORED - 57645) / STORED)


def test_dive_image_history_skips_empty_layer(dive_image):
    # History has 15 entries; the second (CMD ["sh"]) is empty_layer and matches no layer.
    assert len(dive_image.layers) == 14
    assert dive_image.layers[1].created_by.endswith("in /somefile.txt ")
    assert dive_image.layers[13].created_by == "/bin/sh -c chmod +x /root/saved.txt"
    assert dive_image.notes == [
        "no dpkg database (/var/lib/dpkg/status), so files are not attributed to packages"
    ]


def test_dive_image_layer_counts(dive_image):
    first = dive_image.layers[0]
    assert first.files == 398  # 6 regular files and 392 hardlinks
    assert first.whiteouts == 0
    assert [layer.whiteouts for layer in dive_image.layers].count(1) == 2
    assert dive_image.layers[9].bytes_by_category == dict.fromkeys(
        ["in_use", "overwritten", "deleted", "duplicate", "likely_unused"], 0
    )
    assert dive_image.layers[4].bytes_by_category["deleted"] == COPY


def test_kaniko_build_of_same_steps_agrees(fixtures_dir):
    # The same steps built by kaniko, with gzip layers. Its /somefile.txt is another file of
    # 9249 bytes (`tar -tvzf` of layer 1), copied the same way, so each category has the
    # same number of copies as in the docker build: 2 overwritten, 3 deleted, 4 duplicates.
    path = fixtures_dir / "dive" / "test-kaniko-image.tar"
    with open_image(f"docker-archive:{path}") as image:
        kaniko = analyze_image(image)
    size = kaniko.layers[1].content_bytes
    assert size == 9249
    assert kaniko.blob_bytes < kaniko.uncompressed_bytes
    assert all(layer.compressed for layer in kaniko.layers)
    assert kaniko.waste.overwritten_bytes == 2 * size
    assert kaniko.waste.deleted_bytes == 3 * size
    assert kaniko.waste.duplicate_bytes == 4 * size


def test_overwritten_file_replaced_by_symlink(fixtures_dir):
    # layer 0: foo.txt "foo\n" (4 bytes); layer 1: bar.txt "bar\n" (4 bytes) and the symlink
    # foo.txt -> bar.txt, which hides layer 0's foo.txt; layer 2: an empty tar of 10240 bytes.
    path = fixtures_dir / "go-containerregistry" / "overwritten_file.tar"
    with open_image(f"docker-archive:{path}") as image:
        result = analyze_image(image)
    assert result.waste.stored_bytes == 8
    assert result.waste.overwritten_bytes == 4
    assert result.waste.deleted_bytes == 0
    assert result.waste.efficiency == 0.5
    (hidden,) = result.copies_in(Category.OVERWRITTEN)
    assert (hidden.path, hidden.layer, hidden.hidden_in) == ("/foo.txt", 0, 1)
    assert result.layers[2].entries == 0
    assert result.layers[2].uncompressed_bytes == 10240


def test_whiteout_image_with_empty_top_layer(fixtures_dir):
    # layer 0: bar.txt and foo.txt, 4 bytes each; layer 1: the whiteout .wh.foo.txt;
    # layer 2: a tar with no entries at all.
    path = fixtures_dir / "go-containerregistry" / "whiteout_image.tar"
    with open_image(f"docker-archive:{path}") as image:
        result = analyze_image(image)
    assert result.waste.stored_bytes == 8
    assert result.waste.deleted_bytes == 4
    assert result.waste.in_use_bytes == 4
    assert result.waste.efficiency == 0.5
    assert [layer.whiteouts for layer in result.layers] == [0, 1, 0]
    # Layers 0 and 1 also have an entry for the root, "./".
    assert [layer.entries for layer in result.layers] == [3, 1, 0]


def test_whiteout_dir_with_only_empty_files(fixtures_dir):
    # Four gzip layers: a/foo, b/bar, the whiteout .wh.a, then a/baz. Every file is empty, so
    # the image stores 0 bytes: efficiency is 1.0, not a division by zero.
    path = fixtures_dir / "go-containerregistry" / "whiteout_dir.tar"
    with open_image(f"docker-archive:{path}") as image:
        result = analyze_image(image)
    assert result.waste.stored_bytes == 0
    assert result.waste.efficiency == 1.0
    deleted = [(c.path, c.layer, c.hidden_in) for c in result.copies_in(Category.DELETED)]
    assert deleted == [("/a/foo", 0, 2)]
    visible = sorted(path for c in result.copies for path in c.paths)
    assert visible == ["/a/baz", "/b/bar"]
    assert result.layers[2].created_by.startswith("/bin/sh -c #(nop) COPY file:")
