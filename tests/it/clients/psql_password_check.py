"""psql's \\password against Sabot: psql reads password_encryption, computes a SCRAM
verifier itself and sends ALTER USER ... PASSWORD '<verifier>'; the new password must then
work. psql asks for the password on its terminal, so it runs in a pseudo-terminal.

Run by tests/it/security.rs with the port and the current password of the superuser.
"""
import os
import pty
import select
import subprocess
import sys
import time

port, password = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["PGPASSWORD"] = password
    os.execvp("psql", ["psql", "-X", "-h", "127.0.0.1", "-p", port, "-U", "sabot", "-d", "sabot"])

seen = b""


def read_until(marker, timeout=15):
    global seen
    end = time.time() + timeout
    while marker not in seen and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 1024)
            except OSError:
                break
    assert marker in seen, f"no {marker!r} in {seen!r}"


read_until(b"sabot=")
os.write(fd, b"\\password sabot\n")
read_until(b"Enter new password")
os.write(fd, b"changed by psql\n")
read_until(b"again")
os.write(fd, b"changed by psql\n")
seen = b""
read_until(b"sabot=")
assert b"ERROR" not in seen, seen
os.write(fd, b"\\q\n")
os.waitpid(pid, 0)

check = subprocess.run(
    ["psql", "-X", "-h", "127.0.0.1", "-p", port, "-U", "sabot", "-d", "sabot", "-A", "-t", "-c", "SELECT 42"],
    env={**os.environ, "PGPASSWORD": "changed by psql"},
    capture_output=True,
    text=True,
)
assert check.returncode == 0 and check.stdout.strip() == "42", check
print("ok")
