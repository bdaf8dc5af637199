"""Notice the JACK server going away while a port is open on it.

Measured here (jackd2 1.9.21, dummy driver; python-rtmidi 1.5.8, which bundles its own libjack):
when the JACK server dies (SIGKILL, or a clean SIGTERM), an rtmidi client notices nothing. Sends
still "work", and get_ports() still lists the synth's ports: it reads the server's port graph from
shared memory that stays mapped after the server is gone. So the port-list probe in ports.py kept
saying "all well" and `play` played on into nothing. libjack itself knows within 10-20 ms: its
client thread sees the server socket close and calls the client's info-shutdown callback. rtmidi
does not expose that callback, so this module opens one small JACK client of its own (never
activated: it costs the server's process cycle nothing) through ctypes, in the same libjack that
rtmidi loaded, only to receive it.

It also routes libjack's own error and info messages ("Cannot read socket fd = 5...", "JackSocket
ClientChannel read fail", printed on stderr by default) to logging, so that a server going away is
told by our one line, not by a screenful of libjack's.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)

SERVER_GONE = "the MIDI system went away (the JACK server stopped)"

_JACK_NO_START_SERVER = 0x01  # never start a server on the user's machine just to watch it
_ShutdownCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_MessageCallback = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def _loaded_libjack_path() -> str | None:
    """The libjack this process has loaded already (python-rtmidi's own copy, on Linux wheels):
    watching through a second, different libjack would mean two copies of its global state."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(" ")[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith("libjack") and ".so" in name and "libjacknet" not in name \
                        and "libjackserver" not in name:
                    return path
    except OSError:
        pass
    return None


@_MessageCallback
def _log_libjack_message(message: bytes) -> None:
    try:
        log.info("libjack: %s", (message or b"").decode(errors="replace"))
    except Exception:  # nothing may escape into C
        pass


_library_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_library_tried = False


def _libjack() -> ctypes.CDLL | None:
    global _library, _library_tried
    with _library_lock:
        if _library_tried:
            return _library
        _library_tried = True
        try:
            import rtmidi  # noqa: F401  (loads its libjack, which _loaded_libjack_path then finds)
        except ImportError:
            pass
        path = _loaded_libjack_path() or ctypes.util.find_library("jack")
        if path is None:
            log.info("no libjack found: a JACK server that stops will not be noticed at once")
            return None
        try:
            library = ctypes.CDLL(path)
            library.jack_client_open.restype = ctypes.c_void_p
            library.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            library.jack_on_info_shutdown.restype = None
            library.jack_on_info_shutdown.argtypes = [ctypes.c_void_p, _ShutdownCallback, ctypes.c_void_p]
            library.jack_client_close.restype = ctypes.c_int
            library.jack_client_close.argtypes = [ctypes.c_void_p]
            for setter in ("jack_set_error_function", "jack_set_info_function"):
                function = getattr(library, setter)
                function.restype = None
                function.argtypes = [_MessageCallback]
        except (OSError, AttributeError) as error:
            log.info("cannot use libjack at %s: %s", path, error)
            return None
        _library = library
        return library


def route_libjack_messages_to_logging() -> bool:
    """libjack's messages go to logging (level INFO) instead of this process's stderr."""
    library = _libjack()
    if library is None:
        return False
    library.jack_set_error_function(_log_libjack_message)
    library.jack_set_info_function(_log_libjack_message)
    return True


class JackServerWatch:
    """A JACK client that only waits to be told the server went away; see gone()."""

    def __init__(self, library: ctypes.CDLL, client: int):
        self._library = library
        self._client = client
        self._gone: str | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # kept on the object: libjack holds only the C pointer, and a collected callback would crash it
        self._callback = _ShutdownCallback(self._on_shutdown)
        library.jack_on_info_shutdown(client, self._callback, None)

    @classmethod
    def open(cls, client_name: str = "RNN-RBM Studio watch") -> "JackServerWatch | None":
        """A watch on the JACK server this process's clients talk to; None where that is not possible
        (no libjack, no server): then nothing is watched, as before."""
        library = _libjack()
        if library is None:
            return None
        status = ctypes.c_int(0)
        client = library.jack_client_open(client_name.encode(), _JACK_NO_START_SERVER, ctypes.byref(status))
        if not client:
            log.info("cannot watch the JACK server (jack_client_open status 0x%x)", status.value)
            return None
        return cls(library, client)

    def _on_shutdown(self, code: int, reason: bytes | None, _argument) -> None:
        # called on libjack's thread once the server's socket closes; nothing may escape into C
        try:
            detail = (reason or b"").decode(errors="replace")
            with self._changed:
                self._gone = SERVER_GONE
                self._changed.notify_all()
            log.info("JACK server went away (code %d: %s)", code, detail)
        except Exception:
            pass

    def gone(self) -> str | None:
        """None while the server is there; else a one-line reason."""
        with self._lock:
            return self._gone

    def wait_gone(self, timeout: float) -> str | None:
        with self._changed:
            self._changed.wait_for(lambda: self._gone is not None, timeout)
            return self._gone

    def close(self) -> None:
        """Close the client; one whose server died is left alone (closing it only talks to a dead
        socket, and the process holding it ends soon)."""
        with self._lock:
            client, self._client = self._client, None
            gone = self._gone is not None
        if client is None or gone:
            return
        try:
            self._library.jack_client_close(client)
        except Exception as error:  # ctypes raises nothing here in practice; never fail a close
            log.info("closing the JACK watch client: %s", error)

    def __del__(self):
        # libjack keeps a pointer to the callback, which dies with this object: a client left open
        # would call into freed memory when its server stops
        try:
            self.close()
        except Exception:
            pass
