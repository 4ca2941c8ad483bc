"""The exceptions edgetrim raises.

Every error a user can cause derives from :class:`EdgetrimError`. Its message is one line that
names the input and says what to do. The CLI prints that line and exits with ``exit_code``.
"""


class EdgetrimError(Exception):
    """Base of every expected edgetrim failure; the CLI exits with ``exit_code``."""

    exit_code = 2


class InvalidReferenceError(EdgetrimError):
    """An image reference is malformed or names a transport edgetrim does not support."""


class InvalidOptionError(EdgetrimError):
    """A command-line option has a value edgetrim cannot use."""


class ImageNotFoundError(EdgetrimError):
    """The image a reference names does not exist (missing path, unknown tag, unknown ref)."""


class ImageFormatError(EdgetrimError):
    """The input exists but is not a valid image: bad layout, malformed JSON, missing blob."""


class DigestMismatchError(ImageFormatError):
    """A blob's bytes do not match the digest or size that the manifest or config records."""


class UnsafeLayerError(ImageFormatError):
    """A layer tar tries to write outside its root or holds an entry edgetrim must reject."""


class ImageWriteError(EdgetrimError):
    """An image could not be written: the destination folder is missing, not writable or full."""


class RegistryError(EdgetrimError):
    """A registry could not be reached or rejected a request (after bounded retries)."""


class RegistryAuthError(RegistryError):
    """A registry rejected the credentials, or requires credentials that were not found."""


class DockerEngineError(EdgetrimError):
    """The Docker engine did not answer or rejected a request."""


class ToolMissingError(EdgetrimError):
    """An external program edgetrim needs (runc, strace) is not installed."""


class ContainerRunError(EdgetrimError):
    """The image could not be run: missing entrypoint, runtime failure, probe timed out."""


class VerificationError(EdgetrimError):
    """The minimized image behaved differently from the original under the same probes."""

    exit_code = 1
