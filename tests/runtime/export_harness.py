"""A C program calling an exported kernel library, generated from its manifest.

`c_program(manifest, calls)` writes a `main` that, for each (entry, repeat) in
`calls`, reads the entry's inputs from `<dir>/<entry>.<input>.bin`, calls the entry
`repeat` times and writes every output (and every input written in place) to
`<dir>/<entry>.<array>.out`; the test compares those files with pullback's own
results. Several libraries can be called from one program.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pullback.compiler.export.toolchain import build_executable

C_TYPES = {"float64": "double", "float32": "float", "int64": "int64_t", "bool": "uint8_t"}


def _size(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def c_program(libraries: Sequence[tuple[dict, list[tuple[str, int]]]]) -> str:
    """`main(argc, argv)`: argv[1] is the data folder."""
    heads = "".join(f'#include "{m["header"]}"\n' for m, _ in libraries)
    body = []
    for manifest, calls in libraries:
        lib = manifest["library"]
        body.append(f"""    {{
        {lib}_context *ctx = {lib}_context_new();
        if (ctx == NULL) {{ fprintf(stderr, "%s\\n", {lib}_context_error(NULL)); return 3; }}""")
        for entry, repeat in calls:
            spec = manifest["entries"][entry]
            arrays = spec["inputs"] + spec["outputs"]
            for k, a in enumerate(arrays):
                c_type = C_TYPES[a["dtype"]]
                n = max(_size(a["shape"]), 1)
                body.append(f"        {c_type} *{entry}_{k} = malloc({n} * sizeof({c_type}));")
            for k, a in enumerate(spec["inputs"]):
                body.append(f'        load(argv[1], "{lib}.{entry}.{a["name"]}", {entry}_{k}, '
                            f'{_size(a["shape"])} * sizeof(*{entry}_{k}));')
            args = ", ".join(f"{entry}_{k}" for k in range(len(arrays)))
            body.append(f"""        for (int r = 0; r < {repeat}; r++) {{
            int status = {spec["symbol"]}(ctx, {args});
            if (status != 0) {{
                fprintf(stderr, "%s: %s\\n", {lib}_status_string(status),
                        {lib}_context_error(ctx));
                return 4;
            }}
        }}""")
            for k, a in enumerate(arrays):
                if k >= len(spec["inputs"]) or a.get("written"):
                    body.append(f'        save(argv[1], "{lib}.{entry}.{a["name"]}", '
                                f'{entry}_{k}, {_size(a["shape"])} * sizeof(*{entry}_{k}));')
            for k in range(len(arrays)):
                body.append(f"        free({entry}_{k});")
        body.append(f"        {lib}_context_free(ctx);\n    }}")
    return f"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
{heads}
static void path(char *out, const char *dir, const char *name, const char *suffix) {{
    snprintf(out, 4096, "%s/%s%s", dir, name, suffix);
}}

static void load(const char *dir, const char *name, void *data, size_t bytes) {{
    char p[4096];
    path(p, dir, name, ".bin");
    FILE *f = fopen(p, "rb");
    if (f == NULL || fread(data, 1, bytes, f) != bytes) {{ fprintf(stderr, "read %s\\n", p);
        exit(2); }}
    fclose(f);
}}

static void save(const char *dir, const char *name, const void *data, size_t bytes) {{
    char p[4096];
    path(p, dir, name, ".out");
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(data, 1, bytes, f) != bytes) {{ fprintf(stderr, "write %s\\n", p);
        exit(2); }}
    fclose(f);
}}

int main(int argc, char **argv) {{
    if (argc < 2) return 1;
{chr(10).join(body)}
    return 0;
}}
"""


def run_c(folder: Path, libraries: Sequence[tuple[Path, list[tuple[str, int]]]],
          inputs: dict[tuple[str, str], list[np.ndarray]],
          env: dict[str, str] | None = None) -> dict[tuple[str, str], dict]:
    """Build and run a program calling `(manifest path, [(entry, repeat)])` libraries
    with `inputs[(library, entry)]` (arrays in the entry's input order); returns, per
    (library, entry), {array name: the array the program wrote}."""
    manifests = [(json.loads(p.read_text()), calls) for p, calls in libraries]
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for (manifest, calls), (_path, _) in zip(manifests, libraries):
        for entry, _ in calls:
            spec = manifest["entries"][entry]
            for a, value in zip(spec["inputs"], inputs[(manifest["library"], entry)]):
                arr = np.ascontiguousarray(value, dtype=a["dtype"])
                (data / f"{manifest['library']}.{entry}.{a['name']}.bin").write_bytes(
                    arr.tobytes())
    source = folder / "main.c"
    source.write_text(c_program(manifests))
    program = folder / "main"
    dirs = sorted({p.parent for p, _ in libraries})
    build_executable(program, [source], include_dirs=dirs, library_dirs=dirs,
                     libraries=[m["library"] for m, _ in manifests])
    done = subprocess.run([str(program), str(data)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    out: dict[tuple[str, str], dict] = {}
    for manifest, calls in manifests:
        for entry, _ in calls:
            spec = manifest["entries"][entry]
            got = {}
            for a in spec["inputs"] + spec["outputs"]:
                f = data / f"{manifest['library']}.{entry}.{a['name']}.out"
                if f.exists():
                    got[a["name"]] = np.frombuffer(f.read_bytes(), a["dtype"]).reshape(
                        a["shape"])
            out[(manifest["library"], entry)] = got
    return out
