"""What confines a submission's kernel: resource limits, no privileges, and (on Linux) Landlock.

The grading kernel process calls :func:`confine` on itself before it imports
ipykernel, so everything the student's code runs inherits it:

* ``setrlimit``: CPU seconds, address space (memory), size of any file written,
  no core dumps. A kernel that exceeds the CPU limit gets SIGXCPU and dies; one
  that asks for too much memory gets ``MemoryError``.
* no privileges: ``PR_SET_NO_NEW_PRIVS``, and when the grader runs as root every
  capability is dropped, so the kernel cannot raise its own limits again
  (root could, with ``CAP_SYS_RESOURCE``) nor regain them through a setuid program.
* Landlock (Linux 5.13+, unprivileged): the kernel may write only below the
  folders it is given, read only the Python installation, the system folders and
  the course's library, bind only its own ZeroMQ ports and connect to no TCP port,
  and (Linux 6.12+) send no signal to a process outside the sandbox. Where the
  running kernel has no Landlock, this part is skipped and :func:`confine` says so.

None of this is a container: see the README's instructor section for what it does not stop.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys
from dataclasses import asdict, dataclass, field

__all__ = ["Limits", "landlock_abi", "apply_rlimits", "drop_privileges", "landlock_restrict", "confine"]


@dataclass
class Limits:
    """Resource limits for grading one submission (the defaults suit the course's exercises)."""

    cell_timeout_s: int = 300  # one cell may run this long before it is interrupted (nbgrader's default is 30 s)
    cpu_s: int = 1200  # CPU seconds of one kernel process (RLIMIT_CPU); a restarted kernel gets a fresh budget
    wall_s: int = 1800  # the whole submission (nbgrader, kernel, feedback); past it everything is killed
    memory_mb: int = 4096  # address space of the kernel (RLIMIT_AS); importing torch alone takes about 600 MB
    file_mb: int = 256  # largest file the kernel may write (RLIMIT_FSIZE)
    output_chars: int = 1_000_000  # output kept per cell; the rest is dropped with a note
    max_restarts: int = 3  # kernel deaths survived (restart, replay the cells before, skip the fatal one)
    submission_mb: int = 50  # a handed-in notebook larger than this is not graded

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- rlimits and privileges
def apply_rlimits(cpu_s: int, memory_mb: int, file_mb: int) -> list[str]:
    """Cap this process (and what it starts) at ``cpu_s`` CPU seconds, ``memory_mb`` of address space, ``file_mb`` files.

    Returns notes on limits the system refused (none on Linux).
    """
    for name, value in (("cpu_s", cpu_s), ("memory_mb", memory_mb), ("file_mb", file_mb)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    mem, size = memory_mb * 2**20, file_mb * 2**20
    notes = []
    # The hard CPU limit kills with SIGKILL a process that ignores the soft limit's SIGXCPU.
    for name, limit, value in (("CPU", resource.RLIMIT_CPU, (cpu_s, cpu_s + 5)), ("memory", resource.RLIMIT_AS, (mem, mem)),
                               ("file size", resource.RLIMIT_FSIZE, (size, size)), ("core", resource.RLIMIT_CORE, (0, 0))):
        try:
            resource.setrlimit(limit, value)
        except (ValueError, OSError) as exc:  # macOS, for one, refuses an address-space limit
            notes.append(f"{name} limit not set: {exc}")
    return notes


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine) if hasattr(os, "uname") else None


def drop_privileges() -> list[str]:
    """Set no_new_privs; as root, also drop every capability. Returns notes on what could not be done."""
    notes = []
    if _libc is None:
        return ["no_new_privs and capabilities: not Linux, skipped"]
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        notes.append(f"no_new_privs failed: {os.strerror(ctypes.get_errno())}")
    if os.geteuid() == 0:
        for cap in range(64):  # the bounding set first (needs CAP_SETPCAP, which we still hold)
            _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
        if _SYS_CAPSET is None:
            notes.append("running as root on an architecture whose capset number is unknown: capabilities kept")
        else:
            header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
            data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words: all zero
            if _libc.syscall(_SYS_CAPSET, header, data) != 0:
                notes.append(f"dropping capabilities failed: {os.strerror(ctypes.get_errno())}")
    return notes


# ---------------------------------------------------------------- Landlock
# Numbers from linux/landlock.h; the syscalls are 444-446 on every architecture.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_FS = {name: 1 << i for i, name in enumerate((
    "EXECUTE", "WRITE_FILE", "READ_FILE", "READ_DIR", "REMOVE_DIR", "REMOVE_FILE", "MAKE_CHAR", "MAKE_DIR",
    "MAKE_REG", "MAKE_SOCK", "MAKE_FIFO", "MAKE_BLOCK", "MAKE_SYM", "REFER", "TRUNCATE", "IOCTL_DEV",
))}
_FS_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # how many of the flags above each ABI knows
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none, or not Linux)."""
    if _libc is None:
        return 0
    _libc.syscall.restype = ctypes.c_long
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def landlock_restrict(read_paths, write_paths, bind_ports=()) -> str:
    """Restrict this process to reading ``read_paths``, writing ``write_paths`` and binding ``bind_ports``.

    Writing implies reading. Paths that do not exist are skipped. Returns a note
    saying what is enforced (or why nothing is). Needs no_new_privs set first.
    """
    abi = landlock_abi()
    if abi < 1:
        return "landlock: unavailable on this system (reads, writes and network are not restricted)"
    all_fs = 0
    for name in list(_FS)[: _FS_ABI.get(abi, len(_FS))]:
        all_fs |= _FS[name]
    read = _FS["EXECUTE"] | _FS["READ_FILE"] | _FS["READ_DIR"]
    attr = _RulesetAttr(handled_access_fs=all_fs)
    size = 8
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = 24
    fd = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return f"landlock: could not create a ruleset ({os.strerror(ctypes.get_errno())}); nothing restricted"
    try:
        def allow(path, access):
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            try:
                # A rule on a file may only carry file rights.
                if not os.path.isdir(path):
                    access &= _FS["EXECUTE"] | _FS["READ_FILE"] | _FS["WRITE_FILE"] | _FS.get("TRUNCATE", 0) | _FS.get("IOCTL_DEV", 0)
                rule = _PathBeneathAttr(allowed_access=access & all_fs, parent_fd=pfd)
                if _libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock rule for {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(pfd)

        for path in read_paths:
            allow(path, read)
        for path in write_paths:
            allow(path, all_fs)
        if abi >= 4:
            for port in bind_ports:
                rule = _NetPortAttr(allowed_access=_NET_BIND_TCP, port=int(port))
                if _libc.syscall(_SYS_ADD_RULE, fd, _RULE_NET_PORT, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock port rule: {os.strerror(ctypes.get_errno())}")
        if _libc.syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
            err = ctypes.get_errno()
            hint = " (set no_new_privs first)" if err == errno.EPERM else ""
            return f"landlock: restrict_self failed: {os.strerror(err)}{hint}; nothing restricted"
    finally:
        os.close(fd)
    parts = ["files"]
    if abi >= 4:
        parts.append("TCP")
    if abi >= 6:
        parts.append("signals")
    return f"landlock ABI {abi}: " + ", ".join(parts) + " restricted"


@dataclass
class Confinement:
    """Everything :func:`confine` needs; travels to the kernel as JSON."""

    cpu_s: int
    memory_mb: int
    file_mb: int
    read_paths: list[str] = field(default_factory=list)
    write_paths: list[str] = field(default_factory=list)
    bind_ports: list[int] = field(default_factory=list)


def confine(c: Confinement) -> list[str]:
    """Apply limits, drop privileges, then Landlock, in that order. Returns notes for the grading log."""
    notes = apply_rlimits(c.cpu_s, c.memory_mb, c.file_mb)
    notes += drop_privileges()
    notes.append(landlock_restrict(c.read_paths, c.write_paths, c.bind_ports))
    return notes


def system_read_paths() -> list[str]:
    """Folders a Python kernel needs to read: the system's and the interpreter's (site-packages included)."""
    # Not all of /etc: it holds host keys and other secrets a grader running as root could read.
    etc = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "zoneinfo", "passwd", "group",
           "nsswitch.conf", "hosts", "host.conf", "resolv.conf", "gai.conf", "protocols", "services", "ssl",
           "ca-certificates", "pki", "mime.types", "fonts", "os-release", "lsb-release", "debian_version",
           "alternatives", "matplotlibrc"]
    paths = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/opt/conda", *(f"/etc/{e}" for e in etc),
             "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/shm",
             "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys/kernel", "/sys/devices/system/cpu",
             "/sys/fs/cgroup"]
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}:
        paths.append(p)
    for p in sys.path:
        if p and os.path.isabs(p) and ("site-packages" in p or "dist-packages" in p or p.startswith(sys.base_prefix)):
            paths.append(p)
    return sorted({os.path.realpath(p) for p in paths} | set(paths))
