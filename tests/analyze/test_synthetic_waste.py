"""Waste accounting on layers written here, for the cases that no shared fixture contains."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrim.analyze import Category, analyze_image, chain_ids
from edgetrim.errors import UnsafeLayerError
from edgetrim.fs.tree import FileTree
from tests.analyze.synthetic import (
    directory,
    file,
    hardlink,
    layer_tar,
    make_image,
    opaque,
    symlink,
    whiteout,
)


def hidden(result, category):
    return sorted((c.path, c.layer, c.hidden_in) for c in result.copies_in(category))


def test_opaque_directory_deletes_lower_content():
    # Layer 1's opaque marker on /d hides /d/a (10 bytes) and /d/b (20 bytes). The /d/c that
    # layer 1 writes next to the marker stays.
    image = make_image(
        layer_tar(directory("d"), file("d/a", b"a" * 10), file("d/b", b"b" * 20)),
        layer_tar(directory("d"), opaque("d"), file("d/c", b"c" * 5)),
    )
    result = analyze_image(image)
    assert result.waste.deleted_bytes == 30
    assert hidden(result, Category.DELETED) == [("/d/a", 0, 1), ("/d/b", 0, 1)]
    assert result.waste.in_use_bytes == 5
    assert result.layers[1].whiteouts == 1


def test_hardlink_keeps_replaced_copy_in_use():
    # /a and /b share one inode. Layer 1 replaces /a, but /b still shows layer 0's content,
    # so nothing is overwritten. Layer 2 deletes /b: then the copy is hidden, by layer 2.
    base = layer_tar(file("a", b"x" * 100), hardlink("b", "a"))
    replace_a = layer_tar(file("a", b"y" * 50))
    image = make_image(base, replace_a)
    result = analyze_image(image)
    assert result.waste.overwritten_bytes == 0
    assert result.waste.stored_bytes == 150
    (first,) = [c for c in result.copies if c.layer == 0]
    assert first.paths == ["/b"]

    result = analyze_image(make_image(base, replace_a, layer_tar(whiteout("b"))))
    assert hidden(result, Category.DELETED) == [("/a", 0, 2)]
    assert result.waste.deleted_bytes == 100


def test_hardlinks_are_not_duplicates_but_copies_are():
    content = b"same content\n" * 10
    image = make_image(
        layer_tar(file("x", content), hardlink("y", "x"), hardlink("w", "y"), file("z", content))
    )
    result = analyze_image(image)
    assert result.waste.stored_bytes == 2 * len(content)
    assert result.waste.duplicate_bytes == len(content)
    (group,) = result.duplicates
    assert (group.kept, group.duplicates) == ("/w", ["/z"])


def test_duplicate_keeps_the_copy_in_use():
    # The doc copy is likely unused, so the copy kept as "in use" is /app/LICENSE even
    # though the doc copy is in a lower layer.
    text = b"license text\n" * 20
    image = make_image(
        layer_tar(file("usr/share/doc/lib/LICENSE", text)),
        layer_tar(file("app/LICENSE", text)),
    )
    result = analyze_image(image)
    (group,) = result.duplicates
    assert group.kept == "/app/LICENSE"
    assert group.duplicates == ["/usr/share/doc/lib/LICENSE"]
    assert result.waste.likely_unused_bytes == 0
    assert result.waste.duplicate_bytes == len(text)


def test_same_path_twice_in_one_layer():
    image = make_image(layer_tar(file("f", b"aaa"), file("f", b"bbbb")))
    result = analyze_image(image)
    assert hidden(result, Category.OVERWRITTEN) == [("/f", 0, 0)]
    assert result.waste.in_use_bytes == 4


def test_directory_replaced_by_file_hides_its_content():
    image = make_image(
        layer_tar(directory("d"), file("d/x", b"1234567")),
        layer_tar(file("d", b"12")),
    )
    result = analyze_image(image)
    assert hidden(result, Category.OVERWRITTEN) == [("/d/x", 0, 1)]


def rejection(tars: list[bytes]) -> tuple[str, str]:
    """Return the messages with which FileTree and the analysis reject the same layers."""
    with pytest.raises(UnsafeLayerError) as by_tree:
        FileTree.from_image(make_image(*tars))
    with pytest.raises(UnsafeLayerError) as by_analysis:
        analyze_image(make_image(*tars))
    return str(by_tree.value), str(by_analysis.value)


def test_opaque_marker_in_symlinked_directory_rejected():
    # Unpacking the marker would clear /usr/lib, where the symlink /lib points.
    lower = layer_tar(directory("usr/lib"), file("usr/lib/x", b"x"), symlink("lib", "usr/lib"))
    tree_message, message = rejection([lower, layer_tar(opaque("lib"))])
    assert message == tree_message
    assert "opaque marker /lib/.wh..wh..opq lies under the symlink /lib -> usr/lib" in message


def test_opaque_marker_under_symlinked_directory_rejected():
    lower = layer_tar(directory("usr/lib/d"), symlink("lib", "usr/lib"))
    tree_message, message = rejection([lower, layer_tar(opaque("lib/d"))])
    assert message == tree_message
    assert "lies under the symlink /lib -> usr/lib" in message


def test_whiteout_and_hardlink_through_symlink_rejected():
    lower = layer_tar(directory("usr/lib"), file("usr/lib/x", b"x"), symlink("lib", "usr/lib"))
    for upper in (layer_tar(whiteout("lib/x")), layer_tar(hardlink("y", "lib/x"))):
        tree_message, message = rejection([lower, upper])
        assert message == tree_message
        assert "lies under the symlink /lib -> usr/lib" in message


def test_opaque_directory_made_a_file_rejected():
    tree_message, message = rejection([layer_tar(opaque("d"), file("d", b"file"))])
    assert message == tree_message
    assert "/d has an opaque-directory marker but the layer makes it a file" in message


def test_empty_image_has_efficiency_one():
    result = analyze_image(make_image())
    assert result.waste.stored_bytes == 0
    assert result.waste.efficiency == 1.0
    assert result.layers == []
    assert result.final_entries == 1


def test_history_with_empty_layers_aligns():
    history = [
        {"created_by": "ADD base"},
        {"created_by": "ENV A=1", "empty_layer": True},
        {"created_by": "RUN make"},
    ]
    image = make_image(layer_tar(file("a", b"1")), layer_tar(file("b", b"2")), history=history)
    result = analyze_image(image)
    assert [layer.created_by for layer in result.layers] == ["ADD base", "RUN make"]


def test_history_that_does_not_match_is_noted():
    image = make_image(layer_tar(file("a", b"1")), history=[])
    result = analyze_image(image)
    assert result.layers[0].created_by == ""
    assert any("history lists 0 layer-creating steps for 1 layers" in n for n in result.notes)


def test_chain_ids_follow_the_oci_definition():
    image = make_image(layer_tar(file("a", b"1")), layer_tar(file("b", b"2")))
    first, second = (str(d) for d in image.config.diff_ids)
    expected = "sha256:" + hashlib.sha256(f"{first} {second}".encode()).hexdigest()
    assert chain_ids(image.config.diff_ids) == [first, expected]
    result = analyze_image(image)
    assert [layer.chain_id for layer in result.layers] == [first, expected]


# -- property: the categories partition the stored bytes, and the final filesystem agrees with
# the FileTree that the rest of edgetrim uses.

_NAMES = ["a", "b", "d/a", "d/b", "d/e/f"]
# Symlinks to directories, so that later members may lie under them.
_LINKS = {"l": "d", "d/m": "e", "d/e": "/d"}


@st.composite
def _layer(draw):
    members = []
    for name in draw(st.lists(st.sampled_from(_NAMES + ["l/a", "d/m/f"]), max_size=5)):
        action = draw(st.sampled_from(["file", "file", "whiteout", "opaque", "symlink"]))
        if action == "file":
            size = draw(st.integers(min_value=0, max_value=40))
            members.append(file(name, bytes([draw(st.integers(0, 2))]) * size))
        elif action == "whiteout":
            members.append(whiteout(name))
        elif action == "opaque" and "/" in name:
            members.append(opaque(name.rsplit("/", 1)[0]))
        elif action == "symlink":
            link = draw(st.sampled_from(sorted(_LINKS)))
            members.append(symlink(link, _LINKS[link]))
    return members


@settings(max_examples=150, deadline=None)
@given(st.lists(_layer(), min_size=1, max_size=4))
def test_categories_partition_stored_bytes(layers):
    tars = [layer_tar(*members) for members in layers]
    try:
        tree = FileTree.from_image(make_image(*tars))
    except UnsafeLayerError as exc:
        # A path under a regular file or a symlink: the analysis rejects it with the same
        # message, except that the analysis writes "lies under" for a non-directory.
        with pytest.raises(UnsafeLayerError) as caught:
            analyze_image(make_image(*tars))
        if "symlink" in str(exc):
            assert str(caught.value) == str(exc)
        return
    result = analyze_image(make_image(*tars))
    waste = result.waste
    parts = (
        waste.in_use_bytes
        + waste.overwritten_bytes
        + waste.deleted_bytes
        + waste.duplicate_bytes
        + waste.likely_unused_bytes
    )
    assert parts == waste.stored_bytes
    written = [m for members in layers for m in members if ".wh." not in m.path]
    assert waste.stored_bytes == sum(len(m.data) for m in written)
    assert 0.0 <= waste.efficiency <= 1.0
    visible = sorted(path for copy in result.copies for path in copy.paths)
    assert visible == sorted(e.path for e in tree.entries() if e.is_regular)
    assert waste.final_bytes == tree.total_size
