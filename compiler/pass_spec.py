"""Pass pipeline text (`a,b{opt=1},c`) checked against the registry, with errors that
name the pass and list what is accepted: the registered passes, or a pass's options."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable

from xdsl.passes import ModulePass, PassPipeline, PassPipelineCallbackType
from xdsl.utils.arg_spec import ArgSpec, parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError

from pullback.compiler.passes import get_pass, pass_names


class PipelineTextError(ValueError):
    """Pipeline text that names an unknown pass, an unknown or ill-typed option, or
    does not parse."""


@dataclasses.dataclass(frozen=True)
class PassOption:
    """One option of a pass: its name, type and default (`required` if none)."""

    name: str
    type: str
    default: object
    required: bool

    def __str__(self) -> str:
        if self.required:
            return f"{self.name}: {self.type} (required)"
        return f"{self.name}: {self.type} = {self.default!r}"


def _type_text(t: object) -> str:
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return " | ".join(_type_text(a) for a in typing.get_args(t))
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{_type_text(origin)}[{inner}]"
    return str(t).replace("typing.", "")


def pass_options(cls: type[ModulePass]) -> list[PassOption]:
    """The options a pass takes in pipeline text (`pass{name=value}`), in field order."""
    hints = typing.get_type_hints(cls)
    required = cls.required_fields()
    options = []
    for field in dataclasses.fields(cls):
        if field.name == "name" or not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            default: object = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        options.append(PassOption(field.name, _type_text(hints[field.name]), default,
                                  field.name in required))
    return options


def describe_options(cls: type[ModulePass]) -> str:
    """`its options: a: int = 1, b: str = ''` (or `it takes no options`)."""
    options = pass_options(cls)
    if not options:
        return "it takes no options"
    return "its options: " + ", ".join(str(o) for o in options)


def unknown_pass_message(name: str, registered: Iterable[str]) -> str:
    """`unknown pass 'x' (did you mean 'y'?); registered passes: ...`."""
    names = sorted(registered)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown pass '{name}'{hint}; registered passes: {', '.join(names)}"


def _pass_class(name: str) -> type[ModulePass]:
    try:
        return get_pass(name)
    except KeyError:
        raise PipelineTextError(unknown_pass_message(name, pass_names())) from None


def _instance(spec: ArgSpec) -> ModulePass:
    cls = _pass_class(spec.name)
    given = spec.normalize_parameter_names().parameters
    known = {o.name for o in pass_options(cls)}
    for option in given:
        if option not in known:
            raise PipelineTextError(
                f"pass '{spec.name}' has no option '{option}'; "
                f"{describe_options(cls)}")
    missing = sorted(cls.required_fields() - set(given))
    if missing:
        raise PipelineTextError(
            f"pass '{spec.name}' needs option '{missing[0]}'; {describe_options(cls)}")
    try:
        return cls.from_pass_spec(spec)
    except (ValueError, TypeError) as e:
        raise PipelineTextError(
            f"pass '{spec.name}': {e} (in {spec}); {describe_options(cls)}") from None


def parse_checked_pipeline(text: str,
                           callback: PassPipelineCallbackType | None = None) -> PassPipeline:
    """The pipeline `text` describes, each pass looked up in the registry and its
    options checked; raises `PipelineTextError` saying what is wrong and what is
    accepted."""
    try:
        specs = list(parse_pipeline(text))
    except ArgSpecParseError as e:
        detail = str(e).removeprefix("Error parsing pass pipeline specification:\n")
        raise PipelineTextError(f"pass pipeline {text!r} does not parse:\n{detail}") from None
    return PassPipeline(tuple(_instance(spec) for spec in specs), callback)
