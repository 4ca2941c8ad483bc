"""Write an OCI runtime bundle (``config.json`` beside ``rootfs/``) that runs an image like Docker.

The process gets the image's entrypoint, cmd, env, working directory and user. The container
shares the host's network namespace, because the engines on the build machines this targets
run without bridge networking, and probes reach services on 127.0.0.1.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetrim.errors import ContainerRunError
from edgetrim.image.model import ImageConfig

if TYPE_CHECKING:
    from edgetrim.fs.beneath import RootfsReader
    from edgetrim.fs.tree import FileTree

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default capability set, so the traced run can do what `docker run` allows.
DOCKER_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


@dataclass(frozen=True)
class ProcessSpec:
    """The container's process: argv, environment, working directory and numeric user."""

    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]


def process_spec(
    config: ImageConfig, files: RootfsReader, *, source: str, args: list[str] | None = None
) -> ProcessSpec:
    """Derive the process from the image config as ``docker run`` does.

    ``args`` replaces the image's cmd, as arguments after the image name in ``docker run`` do.
    The user is looked up in the image's /etc/passwd and /etc/group, read through ``files``.
    """
    argv = config.entrypoint + (args if args is not None else config.cmd)
    if not argv:
        raise ContainerRunError(
            f"{source}: the image has neither an entrypoint nor a cmd; set one in the image, "
            "or give the command to run with --cmd-probe='ARGS'"
        )
    env = process_env(config)
    uid, gid, groups, home = resolve_user(config.user, files, source=source)
    if not any(item.startswith("HOME=") for item in env):
        env = [*env, f"HOME={home}"]
    return ProcessSpec(argv, env, config.working_dir or "/", uid, gid, groups)


def process_env(config: ImageConfig) -> list[str]:
    """Return the image's environment with Docker's default PATH when the image sets none."""
    env = config.env or [f"PATH={DEFAULT_PATH}"]
    if not any(item.startswith("PATH=") for item in env):
        env = [f"PATH={DEFAULT_PATH}", *env]
    return env


def find_program(spec: ProcessSpec, tree: FileTree) -> str | None:
    """Return the path of the program the process starts, as runc's PATH lookup finds it.

    The path is the one the lookup tried, before its symlinks are resolved, so that keeping
    it keeps every symlink on the way to the file. None when the image lacks the program.
    """
    for candidate in _program_candidates(spec):
        resolution = tree.resolve(candidate)
        entry = tree.get(resolution.path) if resolution.path else None
        if entry is not None and not entry.is_dir:
            return candidate
    return None


def check_entrypoint(spec: ProcessSpec, tree: FileTree, *, source: str) -> str:
    """Return :func:`find_program`'s path of the program the process starts.

    Raises ContainerRunError naming the program when the image does not contain it, because
    running it would only fail later with a less helpful runtime message.
    """
    found = find_program(spec, tree)
    if found is not None:
        return found
    raise ContainerRunError(
        f"{source}: the program {spec.args[0]!r} that the container starts does not exist in "
        f"the image (looked in {', '.join(_program_candidates(spec)[:6])}); fix the image's "
        "ENTRYPOINT, CMD or PATH, or the --cmd-probe ARGS"
    )


def _program_candidates(spec: ProcessSpec) -> list[str]:
    program = spec.args[0]
    if "/" in program:
        return [posixpath.normpath(posixpath.join(spec.cwd, program))]
    path_value = next((item[5:] for item in spec.env if item.startswith("PATH=")), DEFAULT_PATH)
    return [
        posixpath.normpath(posixpath.join(directory or "/", program))
        for directory in path_value.split(":")
    ]


def resolve_user(user: str, files: RootfsReader, *, source: str) -> tuple[int, int, list[int], str]:
    """Turn the config's ``user[:group]`` into uid, gid, supplementary gids and home directory.

    /etc/passwd and /etc/group may be symlinks, which are followed inside the image as the
    container engine follows them.
    """
    name, _, group = (user or "0").partition(":")
    passwd = _read_table(files, "/etc/passwd")
    groups = _read_table(files, "/etc/group")
    home = "/"
    if name.isdigit():
        uid = int(name)
        row = next((r for r in passwd if len(r) > 3 and r[2] == name), None)
        gid = int(row[3]) if row and row[3].isdigit() else 0
        name = row[0] if row else name
        home = row[5] if row and len(row) > 5 else "/"
    else:
        row = next((r for r in passwd if r[0] == name and len(r) > 3), None)
        if row is None or not row[2].isdigit() or not row[3].isdigit():
            raise ContainerRunError(
                f"{source}: user {name!r} from the image config is not in the image's "
                "/etc/passwd; "
                "add the user to the image or use a numeric uid"
            )
        uid, gid = int(row[2]), int(row[3])
        home = row[5] if len(row) > 5 else "/"
    if group:
        gid = _group_id(group, groups, source=source)
    supplementary = [
        int(r[2]) for r in groups if len(r) > 3 and r[2].isdigit() and name in r[3].split(",")
    ]
    return uid, gid, sorted(set(supplementary) - {gid}), home or "/"


def _group_id(group: str, groups: list[list[str]], *, source: str) -> int:
    if group.isdigit():
        return int(group)
    row = next((r for r in groups if r[0] == group and len(r) > 2 and r[2].isdigit()), None)
    if row is None:
        raise ContainerRunError(
            f"{source}: group {group!r} from the image config is not in /etc/group of the image"
        )
    return int(row[2])


def _read_table(files: RootfsReader, path: str) -> list[list[str]]:
    text = files.read_text(path, limit=4 << 20)
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def write_bundle(bundle: Path, spec: ProcessSpec, *, hostname: str = "edgetrim") -> Path:
    """Write ``bundle/config.json`` for a rootfs at ``bundle/rootfs`` and return its path."""
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {
                key: DOCKER_CAPABILITIES for key in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    config["mounts"] = _MOUNTS + _network_files(bundle, hostname)
    path = bundle / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _network_files(bundle: Path, hostname: str) -> list[dict[str, Any]]:
    """Write /etc/hosts, /etc/hostname and /etc/resolv.conf and return their bind mounts.

    Docker mounts its own copies of these three files into every container, even during
    `docker build`, so images usually lack them. A program that resolves "localhost" fails
    without /etc/hosts.
    """
    # The container shares the host's network namespace, so like `docker run --network=host`
    # it gets the host's resolver and hosts files. A generated hosts file that also maps
    # localhost to ::1 would make a service bind an address the host does not have.
    files = {
        "hosts": _host_file("/etc/hosts") or f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n",
        "hostname": f"{hostname}\n",
        "resolv.conf": _host_file("/etc/resolv.conf"),
    }
    mounts = []
    for name, text in files.items():
        source = bundle / f"etc-{name}"
        source.write_text(text)
        mounts.append({
            "destination": f"/etc/{name}",
            "type": "bind",
            "source": str(source),
            "options": ["rbind", "rprivate"],
        })  # fmt: skip
    return mounts


def _host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
]
