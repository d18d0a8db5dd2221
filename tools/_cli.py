"""What every hba-* command shares: turning user errors into one clear line, stderr reporting, and
click options generated from the core's option dataclasses (:func:`options_from`, :func:`media_options`)."""

from __future__ import annotations

import dataclasses
import functools
import io
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

import click

from hba_core.errors import HbaError
from hba_core.media_settings import MediaSettings

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Report :class:`HbaError` (bad input or options) as ``Error: <one line>``, exit code 1.

    A reader that closes stdout early (``hba-descriptors pool ... | head -1``) ends the command quietly with
    status 141, as a Unix tool killed by SIGPIPE, instead of a BrokenPipeError traceback. Anything else is
    a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HbaError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            _quiet_stdout()
            sys.exit(128 + 13)  # SIGPIPE

    return wrapper  # type: ignore[return-value]


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise a second BrokenPipeError."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (e.g. click's test runner): nothing will flush to a pipe


def comma_list(*values: str) -> list[str]:
    """Names from options given as ``a,b`` and/or repeated: ``comma_list("a, b", "c") == ["a", "b", "c"]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def info(message: str) -> None:
    """A line for the person at the terminal (stderr): data goes to stdout only."""
    click.echo(message, err=True)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


# ------------------------------------------------------------------ options from dataclasses


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def _field_option(f: dataclasses.Field[Any], hint: Any, names: tuple[str, ...], unset: bool) -> Callable[[F], F]:
    """One click option for one dataclass field (see :func:`options_from`)."""
    base = _unwrap_optional(hint)
    origin = typing.get_origin(base)
    default = _default_of(f)
    required = default is dataclasses.MISSING
    meta = f.metadata
    text = meta.get("help", "")
    if not required and default is not None and not (isinstance(default, list | dict) and not default):
        text = f"{text}  [default: {_shown(default)}]"  # from the dataclass, never repeated in a help string
    kwargs: dict[str, Any] = {"help": text, "required": required, "show_default": False}
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    if base is bool:
        if len(names) != 1:
            raise TypeError(f"{f.name}: a boolean field takes one flag name, got {names}")
        decls: tuple[str, ...] = (f"{names[0]}/--no-{names[0][2:]}",)
        if not required:
            kwargs["default"] = None if unset else default
    elif origin in (list, tuple):
        decls = names
        # repeatable and comma-separated: --datasets a,b --datasets c -> ["a", "b", "c"]; none given -> the default
        kwargs.update(multiple=True, callback=_list_callback(None if unset else default, origin))
    elif origin is dict:
        decls = names
        kwargs.update(multiple=True, callback=_dict_callback(None if unset else default, typing.get_args(base)))
        kwargs.setdefault("metavar", "KEY=VALUE")
    else:
        decls = names
        choices = meta.get("choices") or (typing.get_args(base) if origin is Literal else None)
        if choices:
            kwargs["type"] = click.Choice([str(c) for c in choices])
        elif base in (int, float, str):
            kwargs["type"] = base
        else:
            raise TypeError(f"{f.name}: no click type for {hint!r}; declare this option by hand and exclude it")
        if not required:  # (an explicit default=None would satisfy click's required check)
            kwargs["default"] = None if unset else default
    return click.option(*decls, f.name, **kwargs)


def _list_callback(default: Any, origin: Any) -> Callable[..., Any]:
    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        if not values:
            return None if default is None else type(default)(default)  # a copy: never shared between runs
        items = comma_list(*values)
        return tuple(items) if origin is tuple else items

    return parse


def _dict_callback(default: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    convert = args[1] if len(args) == 2 and args[1] in (int, float, str) else str

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        if not values:
            return None if default is None else dict(default)
        parsed = {}
        for pair in values:
            key, sep, value = pair.partition("=")
            try:
                if not sep or not key.strip():
                    raise ValueError
                parsed[key.strip()] = convert(value.strip())
            except ValueError:
                kind = getattr(convert, "__name__", "VALUE").upper()
                raise click.BadParameter(f"{pair!r} is not KEY={kind}", param=param) from None
        return parsed

    return parse


def options_from(
    cls: type,
    *,
    exclude: Iterable[str] = (),
    rename: Mapping[str, str | tuple[str, ...]] | None = None,
    unset: bool = False,
) -> Callable[[F], F]:
    """A decorator adding one click option per field of the dataclass ``cls``, in field order.

    The field's name is the option's name (``max_frames`` -> ``--max-frames``, passed as ``max_frames``);
    ``rename`` gives other flag names (``{"data_root": ("--root", "--data-root")}``). The type comes from
    the annotation: ``int``/``float``/``str`` (``X | None`` alike), ``bool`` as ``--x/--no-x``,
    ``list[str]`` repeatable and comma-separated, ``dict[str, float]`` as repeated ``KEY=VALUE``,
    ``Literal[...]`` or metadata ``choices`` as a choice. The help is metadata ``help`` plus the
    dataclass default; a field without a default is a required option.

    With ``unset=True`` an option not given arrives as ``None`` (its default is only shown), so a caller
    can merge flags over a config file (:func:`hba_core.options.merge_options`).

    >>> @dataclasses.dataclass
    ... class Opts:
    ...     lr: float = dataclasses.field(default=1e-4, metadata={"help": "learning rate"})
    >>> @click.command()
    ... @options_from(Opts)
    ... def cmd(lr): ...
    >>> [p.opts for p in cmd.params]
    [['--lr']]
    """
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    names = {**(rename or {})}
    unknown = (skip | set(names)) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")

    def decorate(fn: F) -> F:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            flags = names.get(f.name, _flag(f.name))
            fn = _field_option(f, hints[f.name], (flags,) if isinstance(flags, str) else tuple(flags), unset)(fn)
        return fn

    return decorate


MEDIA_FLAGS = {"data_root": ("--root", "--data-root")}  # --root, as in every tool


def media_options(fn: F) -> F:
    """``--root/--data-root``, ``--fps``, ``--max-frames``, ``--max-pixels``, ... from :class:`MediaSettings`
    (help and defaults from the dataclass); the command receives them as one ``media: MediaSettings``."""
    names = [f.name for f in dataclasses.fields(MediaSettings)]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["media"] = MediaSettings(**{name: kwargs.pop(name) for name in names})
        return fn(*args, **kwargs)

    return options_from(MediaSettings, rename=MEDIA_FLAGS)(wrapper)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class PlanRequest:
    """``--plan``: print the run's per-GPU memory plan (:mod:`hba_core.training.plan`) instead of running it."""

    tokens: int | None  # tokens per sample; None where the tool's options fix it (hba-grpo)
    gpus: int | None  # None: the visible CUDA devices
    gpu_memory: float | None  # GiB per GPU; None: the first CUDA device's free memory

    def show(self, plan: Any) -> None:
        from hba_core.training.plan import format_plan

        click.echo(format_plan(plan, gpu_memory=self.gpu_memory))


def plan_options(*, tokens: bool = True) -> Callable[[F], F]:
    """``--plan`` (+ ``--plan-tokens``, ``--plan-gpus``, ``--gpu-memory``): the command receives
    ``plan: PlanRequest | None`` and, given one, prints the plan and loads nothing."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wanted = kwargs.pop("plan")
            request = PlanRequest(kwargs.pop("plan_tokens", None), kwargs.pop("plan_gpus"), kwargs.pop("gpu_memory"))
            return fn(*args, plan=request if wanted else None, **kwargs)

        out: Any = wrapper
        out = click.option(
            "--gpu-memory",
            type=float,
            default=None,
            help="with --plan: GiB per GPU to check the plan against [the first CUDA device's free memory]",
        )(out)
        out = click.option(
            "--plan-gpus", type=int, default=None, help="with --plan: GPUs of the run [the visible CUDA devices]"
        )(out)
        if tokens:
            out = click.option(
                "--plan-tokens",
                type=int,
                default=4096,
                show_default=True,
                help="with --plan: tokens per sample (text + audio + video tokens)",
            )(out)
        out = click.option(
            "--plan",
            is_flag=True,
            help="print the per-GPU memory (model states from DeepSpeed's estimators + activations) "
            "and whether it fits, then exit; loads no weights and reads no samples",
        )(out)
        return out  # type: ignore[no-any-return]

    return decorate
