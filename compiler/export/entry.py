"""What an exported entry point is: its C-visible arrays and how they map to native code.

An entry's C function takes the context, then one pointer per input, then one per
output. Native code (one compiled function) may take more inputs than the user passes
(a Jacobian's identity seeds, made once per context) and may return blocks from which
a user output is taken (a Hessian's diagonal): `ExportEntry` records both mappings, so
that the C wrapper, the manifest and the loader are generated from one description.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

C_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float",
           np.dtype(np.int64): "int64_t", np.dtype(np.bool_): "uint8_t"}
"""The C element type of each array dtype an entry can take or return."""

_RESERVED_WORDS = frozenset("""auto break case char const continue default do double else
enum extern float for goto if inline int long register restrict return short signed sizeof
static struct switch typedef union unsigned void volatile while ctx
alignas alignof bool constexpr false nullptr static_assert thread_local true typeof
typeof_unqual
asm catch class const_cast decltype delete dynamic_cast explicit export friend mutable
namespace new noexcept operator private protected public reinterpret_cast static_cast
template this throw try typeid typename using virtual wchar_t char8_t char16_t char32_t
concept consteval constinit co_await co_return co_yield requires
and and_eq bitand bitor compl not not_eq or or_eq xor xor_eq
linux unix i386 errno stdin stdout stderr complex imaginary""".split())
"""Names an array cannot have in the header: C (C23) and C++ keywords, the context
parameter, and macros that compilers predefine or that standard headers define in
lowercase. Names of three or more characters in capitals only are macros by convention
(`NULL`, `EOF`, the library's own `<NAME>_...`) and are refused too (see `c_identifier`);
short ones such as `X` or `W1` are kept."""


@dataclasses.dataclass(frozen=True)
class Array:
    """One array argument of an entry's C function (row-major, fixed shape)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    role: str
    """"argument", "captured" (an array the function closes over), "cotangent",
    "value", "gradient", "jacobian", "hessian" or "diaghessian"."""
    written: bool = False
    """An input the entry writes in place (its pointer is not const)."""
    of: str | None = None
    """For a derivative: the name of the input it is the derivative with respect to."""
    description: str = ""
    integers: bool = False
    """An input whose values are integers (an index array) that the compiled code takes
    as floating point: callers pass integers, converted on the way in."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def c_type(self) -> str:
        return C_TYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class Seed:
    """A native input that the context fills once: the rows `offset .. offset + n` of
    the identity over `total` directions, shaped `(total, *shape)`."""

    dtype: np.dtype
    shape: tuple[int, ...]
    total: int
    offset: int

    @property
    def n(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.total * self.n * self.dtype.itemsize


@dataclasses.dataclass(frozen=True, eq=False)
class Constant:
    """A native input that is data of the library: an array the function made while it
    was traced (not one a caller could change), stored read-only in the library."""

    data: np.ndarray


@dataclasses.dataclass(frozen=True)
class FromNative:
    """A user output: native output `index` itself (written straight into the caller's
    array), or with `diagonal`, the entries `[offset + i, i]` of that `(total, n)` block
    (the block then lives in the context)."""

    index: int
    diagonal: bool = False
    offset: int = 0


@dataclasses.dataclass(frozen=True)
class Zeros:
    """A user output with no derivative path: filled with zeros."""


@dataclasses.dataclass
class ExportEntry:
    """One entry of a kernel library."""

    name: str
    mode: str
    inputs: list[Array]
    outputs: list[Array]
    native_inputs: list[int | Seed | Constant]
    """Per native input: the index of the user input passed, a seed or a constant."""
    native_outputs: list[tuple[np.dtype, tuple[int, ...]]]
    sources: list[FromNative | Zeros]
    """Per user output: where its values come from."""
    module: Any
    """The array-level module after AD and cleanup (CPU), or the OpenCL executable."""
    function: str
    """The function of `module` to compile."""
    device: str
    memory: dict[str, int]
    """The bytes of one call (the entry's memory report)."""
    captured: list[np.ndarray] = dataclasses.field(default_factory=list)
    """The values of the captured inputs when exported, in input order."""
    lowering: str = ""
    """The CPU lowering pipeline text (with any passes the entry's `pb.compile` inserted);
    empty: the default."""

    def native_output_in_context(self, k: int) -> bool:
        """Whether native output `k` is a block in the context (not a user array)."""
        return any(isinstance(s, FromNative) and s.index == k and s.diagonal
                   for s in self.sources) or not any(
            isinstance(s, FromNative) and s.index == k for s in self.sources)


def c_identifier(text: str, taken: Iterable[str] = ()) -> str:
    """`text` (a Python path like `model['w'][0]`) as a C identifier not in `taken`."""
    # a letter outside ASCII keeps its identity as its code point: `p['α']` -> p_u03b1
    text = "".join(c if c.isascii() else f" u{ord(c):04x} " for c in text)
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or "arg"
    if name[0].isdigit():
        name = "a_" + name
    if (name in _RESERVED_WORDS or keyword.iskeyword(name)
            or len(name) > 2 and name == name.upper() and not name.isdigit()):
        name += "_"
    # case-insensitively distinct: the header's macros spell every name in capitals
    taken = {t.upper() for t in taken}
    base, k = name, 1
    while name.upper() in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def check_library_name(name: str, what: str = "library name") -> str:
    """`name` if it can prefix C symbols and name files, else a ValueError."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"the {what} {name!r} must be a C identifier: a letter, then "
                         "letters, digits or underscores")
    return name
