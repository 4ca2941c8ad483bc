"""The final filesystem of an image.

``entry`` (FileEntry, FileType), ``safetar`` (the only reader of untrusted layer tars),
``tree`` (FileTree, the merged filesystem), ``unpack`` (materialize it in a directory) and
``layerwrite`` (write a subset as one deterministic layer).
"""
