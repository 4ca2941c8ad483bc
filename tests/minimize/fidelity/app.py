"""Print facts that only hold if the image's metadata survived: run as a --cmd-probe job."""

import os
import pwd
import socket
import stat
import sys

mode = sys.argv[1] if len(sys.argv) > 1 else "facts"
if mode == "facts":
    print("user", pwd.getpwuid(os.getuid()).pw_name)
    print("tmp mode", oct(stat.S_IMODE(os.stat("/tmp").st_mode)))
    print("state dir mode", oct(stat.S_IMODE(os.stat("/var/lib/sensor").st_mode)))
    with open("/var/lib/sensor/state", "w") as state:
        state.write("ok\n")
    print("wrote state", os.path.getsize("/var/lib/sensor/state"))
    print("run dir entries", len(os.listdir("/run/sensor")))
    first = os.stat("/opt/app/current/calibration.txt")
    second = os.stat("/opt/app/data/calibration-link.txt")
    print("hardlinked", first.st_ino == second.st_ino, first.st_nlink)
    with open("/opt/app/current/calibration.txt") as data:
        print("calibration", data.read().strip())
    # Port 80 is privileged: binding it as a non-root user needs the file capability.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 80))
        print("bound privileged port")
else:
    print("mode", mode)
