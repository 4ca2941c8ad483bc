"""LayerStack path lookups: the cached lookup agrees with a plain walk from the root."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgetrim.analyze.stack import MAX_SYMLINKS, ROOT, LayerChanges, LayerStack
from edgetrim.fs.entry import FileEntry, FileType

_DIRS = ["/a", "/a/b", "/a/b/c", "/d", "/d/e"]
_LINK_PATHS = ["/l", "/a/l", "/a/b/l", "/d/l", "/d/e/l"]
_TARGETS = ["a", "/a/b", "..", "../..", "b/c", "/d/e", "l", "/l", "./b", "missing", "/a/b/c/f"]
_QUERIES = [
    "/",
    "/a/b/c",
    "/l",
    "/l/b",
    "/l/l/b",
    "/a/l/c",
    "/a/b/l/l",
    "/d/l/b/c",
    "/d/e/l/..",
    "/a//b",
    "/a/./b",
    "/a/../d",
    "a/b",
    "/a/b/c/f",
    "/a/b/c/f/g",
    "/missing/x",
]


def _stack(links: dict[str, str]) -> LayerStack:
    entries = [FileEntry(path=path, type=FileType.DIRECTORY, mode=0o755) for path in _DIRS]
    entries.append(FileEntry(path="/a/b/c/f", type=FileType.REGULAR, mode=0o644))
    for path, target in sorted(links.items()):
        entries.append(FileEntry(path=path, type=FileType.SYMLINK, mode=0o777, link_target=target))
    stack = LayerStack()
    copies: list[int | None] = [None] * len(entries)
    stack.apply(0, LayerChanges(entries, copies, [], []), "layer 0")
    return stack


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_LINK_PATHS), st.sampled_from(_TARGETS)),
    st.permutations(_QUERIES),
)
def test_cached_lookup_matches_walk_from_root(links, queries):
    stack = _stack(links)
    for query in queries:
        expected = stack._walk(query.split("/"), ROOT, 0)[0]
        assert stack.resolve_directory(query) == expected, query


def test_symlink_loop_fails_after_max_symlinks():
    stack = _stack({"/l": "/a/l", "/a/l": "/l"})
    assert stack.resolve_directory("/l") is None
    assert stack.resolve_directory("/l/b") is None


def test_symlink_chain_fails_past_max_symlinks():
    # Each /dN is a symlink to d(N-1), so a lookup of /dN follows N links.
    entries = [FileEntry(path="/d0", type=FileType.DIRECTORY, mode=0o755)]
    entries.append(FileEntry(path="/d0/x", type=FileType.DIRECTORY, mode=0o755))
    for index in range(1, MAX_SYMLINKS + 2):
        entries.append(
            FileEntry(
                path=f"/d{index}",
                type=FileType.SYMLINK,
                mode=0o777,
                link_target=f"d{index - 1}",
            )
        )
    stack = LayerStack()
    stack.apply(0, LayerChanges(entries, [None] * len(entries), [], []), "layer 0")
    assert stack.resolve_directory(f"/d{MAX_SYMLINKS}") == "/d0"
    assert stack.resolve_directory(f"/d{MAX_SYMLINKS}/x") == "/d0/x"
    assert stack.resolve_directory(f"/d{MAX_SYMLINKS + 1}") is None
    assert stack.resolve_directory(f"/d{MAX_SYMLINKS + 1}/x") is None


def test_symlinks_in_successive_components_add_up():
    # /l points to the root, so /l/l/.../l follows one link per component.
    stack = _stack({"/l": "/"})
    allowed = "/l" * MAX_SYMLINKS
    assert stack.resolve_directory(allowed) == ROOT
    assert stack.resolve_directory(allowed + "/a") == "/a"
    assert stack.resolve_directory(allowed + "/l") is None
    assert stack.resolve_directory(allowed + "/l/a") is None
