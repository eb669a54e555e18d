"""recvmmsg(2) / sendmmsg(2) through ctypes: up to ``SLOTS`` datagrams per system call each way,
which is what a Python DNS server spends most of its time on otherwise (kdns.server.udp).

``LIBC`` is None where the C structures laid out here do not match the machine (not Linux, not
a 64-bit ABI) or where a bytes object's data cannot be found from its ``id()`` (not CPython):
the UDP server then reads with non-blocking recvfrom, one datagram per call.
"""

from __future__ import annotations

import array
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


def _bytes_data() -> int | None:
    """Where a bytes object's data starts, from its ``id()`` (CPython: the ``ob_sval`` field
    of PyBytesObject), checked on a probe: replies are sent from the bytes objects that hold
    them (one iovec per piece, no copy). None where that does not hold."""
    probe = b"kdns probe"
    start = ctypes.cast(ctypes.c_char_p(probe), ctypes.c_void_p).value
    if start is None:
        return None
    offset = start - id(probe)
    return offset if ctypes.string_at(id(probe) + offset, len(probe)) == probe else None


_DATA = _bytes_data()
BYTES_DATA: int = _DATA or 0
LIBC: Any = _libc() if _DATA is not None else None


class Batch:
    """The C buffers of one socket: SLOTS receive slots and SLOTS outgoing messages sharing
    address buffers.

    Outgoing message k is, unless a gap moved it, the reply to datagram k: its address and its
    two iovecs, so a reply is sent from where its bytes already are: either the client's ID
    (the first 2 bytes of receive slot k) and a kept reply after the ID (a reply memo hit), or
    a whole reply and nothing. The ID iovecs are set here and put back after each whole reply;
    a message after a datagram with no reply points at a later datagram's address and iovecs
    (``name_of``, ``iov_of``) for one send."""

    def __init__(self) -> None:
        self.recv_map = mmap.mmap(-1, SLOTS * RECV_SLOT)
        self.recv_buf = (ctypes.c_char * (SLOTS * RECV_SLOT)).from_buffer(self.recv_map)
        self.names = ctypes.create_string_buffer(SLOTS * NAME)
        self.recv_iov = (_IoVec * SLOTS)()
        self.send_iov = (_IoVec * (2 * SLOTS))()
        self.recv_hdrs = (_MMsgHdr * SLOTS)()
        self.send_hdrs = (_MMsgHdr * SLOTS)()
        recv_base = ctypes.addressof(self.recv_buf)
        self.names_base = ctypes.addressof(self.names)
        # Datagram i's address buffer, ID and pair of reply iovecs, as numbers for the views.
        self.name_of = array.array("Q", (self.names_base + i * NAME for i in range(SLOTS)))
        self.id_of = array.array("Q", (recv_base + i * RECV_SLOT for i in range(SLOTS)))
        self.iov_of = array.array("Q", (ctypes.addressof(self.send_iov[2 * i]) for i in range(SLOTS)))  # fmt: skip
        # Every message's first iovec as the ID of its datagram: (id_of[k], 2), k by k.
        self.ids = memoryview(array.array("Q", (x for i in range(SLOTS) for x in (self.id_of[i], 2))))  # fmt: skip
        for i in range(SLOTS):
            self.recv_iov[i].base = recv_base + i * RECV_SLOT
            self.recv_iov[i].len = RECV_SLOT
            hdr = self.recv_hdrs[i].hdr
            hdr.name = self.names_base + i * NAME
            hdr.namelen = NAME
            hdr.iov = ctypes.addressof(self.recv_iov[i])
            hdr.iovlen = 1
            out = self.send_hdrs[i].hdr
            out.name = self.name_of[i]
            out.iov = self.iov_of[i]
            out.iovlen = 2
            self.send_iov[2 * i].base = self.id_of[i]
            self.send_iov[2 * i].len = 2
        # Views to read and write the C structures as numbers, without ctypes attributes.
        self.name_view = memoryview(self.names).cast("B")
        self.recv_u32 = memoryview(self.recv_hdrs).cast("B").cast("I")  # len at i*16+14
        self.send_u32 = memoryview(self.send_hdrs).cast("B").cast("I")  # namelen at k*16+2
        self.send_u64 = memoryview(self.send_hdrs).cast("B").cast("Q")  # name at k*8, iov k*8+2
        # The reply iovecs of datagram i (message i's, unless a gap moved it): the first's base
        # and length at i*4, i*4+1, the second's at i*4+2, i*4+3.
        self.send_iov_u64 = memoryview(self.send_iov).cast("B").cast("Q")
        self.recv_ref = ctypes.byref(self.recv_hdrs)

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
