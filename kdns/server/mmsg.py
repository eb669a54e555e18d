"""recvmmsg(2) / sendmmsg(2) through ctypes: up to ``SLOTS`` datagrams per system call each way,
which is what a Python DNS server spends most of its time on otherwise (kdns.server.udp).

``LIBC`` is None where the C structures laid out here do not match the machine (not Linux, not
a 64-bit ABI): the UDP server then reads with non-blocking recvfrom, one datagram per call.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import sys
from typing import Any

SLOTS = 64  # datagrams per system call
# Bytes per receive slot: any datagram (a UDP payload is at most 65,507 bytes), so the batched
# path takes every query the standard path takes. The receive area is an anonymous mapping:
# pages are backed only once the kernel writes into them (a page or two per slot in use).
RECV_SLOT = 65536
SLOT = 4096  # bytes per reply slot (replies larger than this are sent alone)
NAME = 28  # bytes per address buffer (sockaddr_in6)
MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc() -> Any:
    """libc with recvmmsg/sendmmsg, when this is Linux on a 64-bit ABI we laid out above."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(_MMsgHdr) != 64:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.recvmmsg.restype = ctypes.c_int
        libc.sendmmsg.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


LIBC: Any = _libc()


class Batch:
    """The C buffers of one socket: SLOTS receive and send slots sharing address buffers."""

    def __init__(self) -> None:
        self.recv_map = mmap.mmap(-1, SLOTS * RECV_SLOT)
        self.recv_buf = (ctypes.c_char * (SLOTS * RECV_SLOT)).from_buffer(self.recv_map)
        self.send_buf = ctypes.create_string_buffer(SLOTS * SLOT)
        self.names = ctypes.create_string_buffer(SLOTS * NAME)
        self.recv_iov = (_IoVec * SLOTS)()
        self.send_iov = (_IoVec * SLOTS)()
        self.recv_hdrs = (_MMsgHdr * SLOTS)()
        self.send_hdrs = (_MMsgHdr * SLOTS)()
        recv_base = ctypes.addressof(self.recv_buf)
        send_base = ctypes.addressof(self.send_buf)
        self.names_base = ctypes.addressof(self.names)
        for i in range(SLOTS):
            self.recv_iov[i].base = recv_base + i * RECV_SLOT
            self.recv_iov[i].len = RECV_SLOT
            self.send_iov[i].base = send_base + i * SLOT
            hdr = self.recv_hdrs[i].hdr
            hdr.name = self.names_base + i * NAME
            hdr.namelen = NAME
            hdr.iov = ctypes.addressof(self.recv_iov[i])
            hdr.iovlen = 1
            out = self.send_hdrs[i].hdr
            out.iov = ctypes.addressof(self.send_iov[i])
            out.iovlen = 1
        # Views to read and write the C structures as numbers, without ctypes attributes.
        self.recv = memoryview(self.recv_buf).cast("B")
        self.send = memoryview(self.send_buf).cast("B")
        self.name_view = memoryview(self.names).cast("B")
        self.recv_u32 = memoryview(self.recv_hdrs).cast("B").cast("I")  # len at i*16+14
        self.send_u32 = memoryview(self.send_hdrs).cast("B").cast("I")  # namelen at i*16+2
        self.send_u64 = memoryview(self.send_hdrs).cast("B").cast("Q")  # name at i*8
        self.send_iov_u64 = memoryview(self.send_iov).cast("B").cast("Q")  # len at i*2+1
        self.recv_ref = ctypes.byref(self.recv_hdrs)
        self.send_ref = ctypes.byref(self.send_hdrs)

    def peer(self, i: int, v6: bool) -> Any:
        """The address of datagram ``i`` as a socket module address tuple."""
        at = i * NAME
        view = self.name_view
        port = (view[at + 2] << 8) | view[at + 3]
        if v6:
            ip = socket.inet_ntop(socket.AF_INET6, view[at + 8 : at + 24].tobytes())
            flow = int.from_bytes(view[at + 4 : at + 8], "big")
            scope = int.from_bytes(view[at + 24 : at + 28], sys.byteorder)
            return (ip, port, flow, scope)
        return (socket.inet_ntop(socket.AF_INET, view[at + 4 : at + 8].tobytes()), port)

    def client(self, i: int, v6: bool) -> bytes:
        """The address of datagram ``i`` as packed bytes (4 or 16)."""
        at = i * NAME
        view = self.name_view
        return view[at + 8 : at + 24].tobytes() if v6 else view[at + 4 : at + 8].tobytes()


def batched() -> bool:
    """Whether this machine serves UDP with recvmmsg/sendmmsg."""
    return LIBC is not None
