"""Parsing of `strace -f -y` logs of `runc run`, on lines in the exact form strace 6.1 writes."""

from edgetrim.trace.strace_log import parse, unescape

RUNC_LOG = """\
100   execve("/usr/sbin/runc", ["runc", "run"], 0x7ffd /* 20 vars */) = 0
100   openat(AT_FDCWD</work/bundle>, "/work/bundle/config.json", O_RDONLY|O_CLOEXEC) = 3</work/bundle/config.json>
100   clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 101
101   newfstatat(AT_FDCWD</work/bundle>, "/etc/hostname", 0xc00026a858, 0) = 0
101   chdir("/work/bundle/rootfs")    = 0
101   pivot_root(".", ".")              = 0
101   chdir("/")                        = 0
101   newfstatat(AT_FDCWD</>, "/usr/local/bin/app", 0xc000156d38, 0) = -1 ENOENT (No such file or directory)
101   openat(AT_FDCWD</>, "/proc/self/fd/5", O_WRONLY|O_CLOEXEC <unfinished ...>
100   openat(AT_FDCWD</work/bundle>, "/work/state/exec.fifo", O_RDONLY|O_CLOEXEC <unfinished ...>
101   <... openat resumed>)             = 3</work/state/exec.fifo>
100   <... openat resumed>)             = 8</work/state/exec.fifo>
101   execve("/usr/bin/app", ["app", "/srv/data.txt"], 0xc000024800 /* 3 vars */ <unfinished ...>
101   <... execve resumed>)             = 0
101   openat(AT_FDCWD</>, "/lib/x86_64-linux-gnu/libz.so.1", O_RDONLY|O_CLOEXEC) = 3</usr/lib/x86_64-linux-gnu/libz.so.1.2.13>
101   chdir("srv")                      = 0
101   open("data.txt", O_RDONLY)        = 4</srv/data.txt>
101   openat(AT_FDCWD</srv>, "sub/f\\303\\251", O_RDONLY) = -1 ENOENT (No such file or directory)
101   clone3({flags=CLONE_VM, exit_signal=SIGCHLD}, 88 <unfinished ...>
101   vfork( <unfinished ...>
103   execve("/usr/bin/ls", ["ls", "/srv"], 0x5626fb565948 /* 3 vars */ <unfinished ...>
101   <... vfork resumed>)              = 7 /* 103 in strace's PID NS */
103   <... execve resumed>)             = 0
102   readlink("/usr/bin/tool", "busybox", 4096) = 7
101   <... clone3 resumed>) = 102
102   symlinkat("target-text", 5</tmp>, "link") = 0
102   renameat(AT_FDCWD</srv>, "a.tmp", AT_FDCWD</srv>, "a") = 0
102   openat(AT_FDCWD</srv>, "/srv/firmware", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 4</srv/firmware>
102   getdents64(4</srv/firmware>, 0x55d0c0a0 /* 5 entries */, 32768) = 144
102   getdents64(4</proc/1/fd>, 0x55d0c0a0 /* 5 entries */, 32768) = 144
102   newfstatat(3</etc/ld.so.cache>, "", {st_mode=S_IFREG|0644, st_size=5639, ...}, AT_EMPTY_PATH) = 0
102   openat(AT_FDCWD</srv>, "/sys/fs/cgroup/cpu.max", O_RDONLY) = -1 ENOENT (No such file or directory)
102   --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
102   +++ exited with 0 +++
"""


def test_only_container_side_counts():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert "/work/bundle/config.json" not in summary.paths
    assert "/etc/hostname" not in summary.paths  # looked up by runc before the pivot
    assert all(not path.startswith("/work") for path in summary.paths)


def test_paths_resolved_with_fd_annotations():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert "/usr/local/bin/app" in summary.paths
    assert "/lib/x86_64-linux-gnu/libz.so.1" in summary.paths
    assert "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13" in summary.paths
    assert "/srv/data.txt" in summary.paths
    assert "/srv/sub/f\u00e9" in summary.paths
    assert "/etc/ld.so.cache" in summary.paths


def test_children_and_multi_path_calls():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert "/usr/bin/tool" in summary.paths
    assert "/usr/bin/busybox" not in summary.paths  # the readlink buffer is not a path
    assert "/tmp/link" in summary.paths
    assert "/srv/target-text" not in summary.paths
    assert {"/srv/a.tmp", "/srv/a"} <= summary.paths
    assert summary.processes == 3


def test_kernel_filesystems_ignored():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert not any(path.startswith(("/proc", "/sys", "/dev")) for path in summary.paths)


def test_executed_programs():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert summary.executed == ["/usr/bin/app", "/usr/bin/ls"]


def test_directory_listings_recorded():
    summary = parse(RUNC_LOG.splitlines(), host_prefixes=("/work",))
    assert summary.listed == {"/srv/firmware"}


def test_unescape_octal_hex_and_quotes():
    assert unescape(r"caf\303\251") == "caf\u00e9"
    assert unescape(r"a\x41\"b\\") == 'aA"b\\'
    assert unescape(r"\377") == "\udcff"  # not UTF-8: a surrogate escape, as os.fsdecode gives
    assert unescape("plain") == "plain"


# Lines as strace 6.1 -f -y prints them for a file named "report (deleted)", for a file that
# was unlinked while open, and for a directory that was removed while the process held it.
DELETED_LOG = """\
300   pivot_root(".", ".")              = 0
300   openat(AT_FDCWD</srv>, "report (deleted)", O_RDONLY) = 3</srv/report (deleted)>
300   openat(AT_FDCWD</srv>, "data", O_RDONLY) = 3</srv/data>
300   unlinkat(AT_FDCWD</srv>, "data", 0) = 0
300   openat(AT_FDCWD</srv>, "/proc/self/fd/3", O_RDONLY) = 4</srv/data>(deleted)
300   openat(5</srv/cache>(deleted), "entry", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
300   newfstatat(AT_FDCWD</srv/gone (deleted)>, "y", 0x7fffd7716d60, 0) = -1 ENOENT (No such file or directory)
"""


def test_name_ending_in_deleted_kept():
    summary = parse(DELETED_LOG.splitlines())
    assert "/srv/report (deleted)" in summary.paths


def test_deleted_marker_not_part_of_path():
    summary = parse(DELETED_LOG.splitlines())
    assert "/srv/data" in summary.paths
    assert not any(path.endswith(")(deleted)") for path in summary.paths)


def test_deleted_dirfd_resolves_relative_name():
    summary = parse(DELETED_LOG.splitlines())
    assert "/srv/cache/entry" in summary.paths
    assert "/srv/entry" not in summary.paths
