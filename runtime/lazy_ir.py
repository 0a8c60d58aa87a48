"""The IR texts of a compiled program, made when first asked for.

A compile keeps no stage text (printing each module after each pass would cost more
than most passes), and a program loaded from disk ran no pass and no LLVM, so it has
no stage texts and no LLVM IR either. `RebuiltIR` makes them on first access by
running the program's pipeline again with its texts kept (once, whichever thread
asks first); `LazyStages` is the stage mapping that does so when read. Until then it
holds the traced module (not the arrays a function closes over); once made, it holds
only the texts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping


class RebuiltIR:
    """(stage texts, LLVM IR) from `rebuild`, run at most once."""

    def __init__(self, rebuild: Callable[[], tuple[dict[str, str], str]]):
        self._rebuild: Callable[[], tuple[dict[str, str], str]] | None = rebuild
        self._texts: tuple[dict[str, str], str] | None = None
        self._lock = threading.Lock()

    def texts(self) -> tuple[dict[str, str], str]:
        with self._lock:
            if self._texts is None:
                assert self._rebuild is not None
                self._texts = self._rebuild()
                self._rebuild = None  # drop the traced module
            return self._texts

    def stages(self) -> dict[str, str]:
        return self.texts()[0]

    def llvm_ir(self) -> str:
        return self.texts()[1]


class LazyStages(Mapping[str, str]):
    """MLIR text after each stage, in pipeline order, made on first read. It counts as
    present (true) before it is made."""

    def __init__(self, ir: RebuiltIR):
        self._ir = ir

    def __getitem__(self, stage: str) -> str:
        return self._ir.stages()[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ir.stages())

    def __len__(self) -> int:
        return len(self._ir.stages())

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"LazyStages({list(self)!r})"
