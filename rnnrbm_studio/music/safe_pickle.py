"""Unpickling data that came from someone else, without running their code or exhausting memory.

`pickle.load` calls whatever a pickle names (`os.system`, say): loading a pickle is running a program.
`restricted_loads` builds only plain data (dict, list, tuple, int, float, str, bytes, None, bool), in
two independent layers: a walk over the opcodes first refuses every opcode that can name or call
anything (GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, extension codes, persistent ids, out-of-band
buffers) and bounds the opcodes and the memory the objects will take; then the unpickler that builds
the objects refuses any global it is asked for anyway.

Memory is bounded from the opcodes because a pickle's objects can be far larger than its bytes: one
byte (`}`) makes an empty dict of 64 bytes, a 5-byte PUT with a large index makes the unpickler's memo
table gigabytes long. The estimate charges each opcode the most it can cost in CPython; real pickles
take about a third of it (the Nottingham benchmark: 25 MB used, 66 MB charged).
"""
from __future__ import annotations

import io
import pickle
import pickletools

from ..errors import StudioError

# The walk costs 0.2-0.4 us per binary opcode and twice that for a text one (protocols 0 and 1 write
# numbers as lines), which therefore counts twice. The Nottingham pickle has 1.8 million opcodes.
MAX_OPCODES = 8_000_000
MAX_MEMORY = 320 * 2 ** 20  # bytes of objects, as estimated from the opcodes

_STACK_SLOT = 32  # a pushed value: its stack slot, then its slot in a container (a dict entry: more)
_MARK = 16  # the unpickler's stack of marks doubles as it grows
# What the new object of each opcode costs beyond its slot (the argument's length is added for bytes,
# four times it for a str, which takes 4 bytes a character if one is outside the BMP). Small ints,
# None, booleans and the empty tuple are shared, not new.
_OBJECT_COST = {
    "INT": 32, "BININT": 32, "BININT2": 32, "LONG": 32, "LONG1": 32, "LONG4": 32,
    "FLOAT": 24, "BINFLOAT": 24,
    "STRING": 80, "BINSTRING": 80, "SHORT_BINSTRING": 80, "UNICODE": 80, "BINUNICODE": 80,
    "SHORT_BINUNICODE": 80, "BINUNICODE8": 80,
    "BINBYTES": 40, "SHORT_BINBYTES": 40, "BINBYTES8": 40,
    "EMPTY_LIST": 64, "EMPTY_DICT": 64,
    "TUPLE1": 64, "TUPLE2": 64, "TUPLE3": 64, "TUPLE": 64, "LIST": 64, "DICT": 64,
}
_SHARED = {"BININT1", "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_TUPLE", "GET", "BINGET", "LONG_BINGET", "DUP"}
# Opcodes that only move what is already there: no new object.
_STRUCTURE = {"PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "APPEND", "APPENDS",
              "SETITEM", "SETITEMS", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
ALLOWED_OPCODES = frozenset(_OBJECT_COST) | _SHARED | _STRUCTURE
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_SIZED = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
          "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "LONG", "LONG1", "LONG4", "INT"}


def _walk_units(op: pickletools.OpcodeInfo) -> int:
    return 2 if op.arg is not None and op.arg.n == pickletools.UP_TO_NEWLINE else 1


# Keyed by the opcode objects genops yields, so the walk's hot loop does one lookup per opcode:
# (name, bytes charged, units of the opcode budget).
_BY_OPCODE = {op: (name, _STACK_SLOT + _OBJECT_COST[name] if name in _OBJECT_COST else
                   _STACK_SLOT if name in _SHARED else _MARK if name == "MARK" else 0, _walk_units(op))
              for op in pickletools.opcodes if (name := op.name) in ALLOWED_OPCODES}


class PickleRefused(StudioError):
    """A pickle that is not plain data, is damaged, or would take too much; str() is one line."""


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise PickleRefused(f"refused: the pickle asks for {module}.{name}, which could run code")


def restricted_loads(data: bytes, *, encoding: str = "ASCII", max_opcodes: int = MAX_OPCODES,
                     max_memory: int = MAX_MEMORY) -> object:
    """The plain data pickled in data (any protocol), or PickleRefused.

    encoding: how Python 2 str (8-bit) objects are decoded; "latin1" for the ICML-2012 pickles.
    """
    check_opcodes(data, max_opcodes=max_opcodes, max_memory=max_memory)
    try:
        return _NoGlobalsUnpickler(io.BytesIO(data), encoding=encoding).load()
    except PickleRefused:
        raise
    except RecursionError:
        raise PickleRefused("not a readable pickle (nested too deeply)") from None
    except MemoryError:
        raise PickleRefused("not a readable pickle (out of memory)") from None
    except Exception as error:  # UnpicklingError, EOFError, ValueError, UnicodeDecodeError...
        raise PickleRefused(f"not a readable pickle ({_describe(error)})") from None


def restricted_load(stream, *, max_bytes: int = 64 * 2 ** 20, **limits) -> object:
    """restricted_loads of what is left in a binary stream, at most max_bytes of it (the opcode walk
    needs the whole pickle before anything is built)."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PickleRefused(f"refused: more than {max_bytes:,} bytes")
    return restricted_loads(data, **limits)


def check_opcodes(data: bytes, *, max_opcodes: int = MAX_OPCODES, max_memory: int = MAX_MEMORY) -> None:
    """Refuse (PickleRefused) a pickle with a disallowed opcode or over the opcode or memory bounds."""
    opcodes = 0
    memory = 0
    memo_size = 0  # the unpickler's memo table grows to twice the largest index put
    by_opcode, sized, memo_puts = _BY_OPCODE, _SIZED, _MEMO_PUTS
    try:
        for opcode, argument, _ in pickletools.genops(data):
            known = by_opcode.get(opcode)
            if known is None:
                raise PickleRefused(f"refused: the pickle uses {opcode.name}, which is not plain data "
                                    f"and could run code")
            name, cost, units = known
            opcodes += units
            memory += cost
            if name in sized:
                if isinstance(argument, int):
                    memory += argument.bit_length() // 8
                else:
                    memory += len(argument) * (4 if isinstance(argument, str) else 1)
            elif name in memo_puts:
                if argument >= memo_size:
                    memory += 16 * (argument + 1 - memo_size)
                    memo_size = argument + 1
            elif name == "MEMOIZE":  # puts at the next index
                memory += 16
                memo_size += 1
            if memory > max_memory:
                raise PickleRefused(f"refused: its objects would take more than {max_memory / 2**20:.0f} MiB")
            if opcodes > max_opcodes:
                raise PickleRefused(f"refused: more than {max_opcodes:,} pickle opcodes (a text one counts twice)")
    except PickleRefused:
        raise
    except Exception as error:  # genops: ValueError for an unknown opcode or a cut argument, ...
        raise PickleRefused(f"not a readable pickle ({_describe(error)})") from None


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
