"""An option for every :class:`~nwb_facrnn.FacRNN` argument, made from the model itself.

Each option is the argument's Python name, dashed (``max_epochs`` -> ``--max-epochs``, with
``--epochs`` kept as another name), its default is the signature's (``observation`` is
``"auto"`` here: Poisson for spikes, Gaussian for imaging), its choices are the values the
model accepts (:data:`nwb_facrnn.model.hyperparams.CHOICES`; ``none`` for None) and its help
the first sentence of the model's description.  Only
``progress`` has no option: the command shows the progress bar itself.

The model imports torch, so the options are made the first time a command's parameters are
needed (:class:`ModelCommand`), not when the command line starts: ``nwb-facrnn info`` does
not wait for torch.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import click

from .options import Choice

#: FacRNN arguments without an option.
EXEMPT = ("progress",)
#: The arguments ``sweep`` takes as lists (``seed`` as ``--seeds``).
GRID = ("n_groups", "group_rank", "beta", "seed")
#: More option names an argument answers to.
ALIASES = {"max_epochs": ("--epochs",)}
_AUTO = "auto: poisson for spikes, gaussian for imaging."


def _signature() -> list[inspect.Parameter]:
    from ..model.estimator import FacRNN

    return [p for p in inspect.signature(FacRNN.__init__).parameters.values() if p.name != "self"]


def _documented() -> dict[str, tuple[str, str]]:
    """Argument -> (documented type, description) from FacRNN's ``Parameters`` section."""
    from ..model.estimator import FacRNN

    doc = inspect.getdoc(FacRNN) or ""
    section = doc.partition("Parameters\n----------\n")[2]
    section = re.split(r"\n\S[^\n]*\n-{3,}\n", section)[0]
    out: dict[str, tuple[str, list[str]]] = {}
    lines: list[str] = []
    for line in section.splitlines():
        if line and not line[0].isspace():  # "name : type" or "a, b : type"
            names, _, kind = line.partition(" :")
            lines = []
            out.update((name.strip(), (kind.strip(), lines)) for name in names.split(","))
        else:
            lines.append(line.strip())
    return {k: (kind, " ".join(text).strip()) for k, (kind, text) in out.items()}


def _values(kind: str) -> list | None:
    """A documented set of values: ``{"a", "b", None}`` -> ``["a", "b", None]`` (with
    ``"..."`` for an open set); None for a type."""
    m = re.fullmatch(r"\{(.*)\}", kind)
    if not m:
        return None
    return [None if v == "None" else v.strip().strip("\"'") for v in m.group(1).split(",")]


def _help(name: str, doc: dict[str, tuple[str, str]]) -> str:
    """The first sentence of the argument's description, or where it is described."""
    kind, description = doc.get(name, ("", ""))
    if description:
        values = _values(kind)
        if values and "..." in values:  # an open set: name some values
            return f"{', '.join(values)}: {_first_sentence(description)}"
        return _first_sentence(description)
    for other, (_, text) in doc.items():
        if f"``{name}``" in text:
            return f"See --{other.replace('_', '-')}."
    return ""


def _first_sentence(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")
    return re.split(r"(?<=\.)\s+(?=[A-Z(\"])", text, maxsplit=1)[0].rstrip(".") + "."


def _none(ctx: click.Context, param: click.Parameter, value):
    return None if value == "none" else value


class _IntOrNone(click.ParamType):
    """An integer, or ``none`` for None."""

    name = "integer|none"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer or 'none'", param, ctx)


_INT_OR_NONE = _IntOrNone()


def _option(p: inspect.Parameter, doc: dict[str, tuple[str, str]]) -> click.Option:
    """The option of the FacRNN argument ``p``."""
    flag = "--" + p.name.replace("_", "-")
    decls = [flag, *ALIASES.get(p.name, ()), p.name]
    helptext = _help(p.name, doc)
    annotation = p.annotation
    if not isinstance(annotation, str):
        annotation = inspect.formatannotation(annotation)
    if annotation == "bool":
        return click.Option(
            [f"{flag}/--no-{flag[2:]}", p.name], default=p.default, show_default=True, help=helptext
        )
    from ..model.hyperparams import CHOICES

    choices = CHOICES.get(p.name)
    if choices is not None:
        default = p.default
        if p.name == "observation":
            choices, default, helptext = ("auto", *choices), "auto", _AUTO
        return click.Option(
            decls,
            type=Choice(["none" if c is None else c for c in choices]),
            default=default,
            show_default="none" if default is None else True,
            callback=_none if None in choices else None,
            help=helptext,
        )
    base = annotation.split("|")[0].strip()
    if base == "int" and "None" in annotation:
        return click.Option(  # --max-epochs, --max-steps: an integer, or "none"
            decls,
            type=_INT_OR_NONE,
            default=p.default,
            show_default=p.default is not None,
            help=helptext,
        )
    return click.Option(
        decls,
        type={"int": int, "float": float}.get(base, str),
        default=p.default,
        show_default=p.default is not None,
        help=helptext,
    )


def model_parameters(grid: bool = True) -> list[click.Option]:
    """An option for every FacRNN argument but :data:`EXEMPT`, in the signature's order;
    ``grid=False`` leaves out the :data:`GRID` arguments too (a sweep takes them as lists)."""
    doc = _documented()
    skip = EXEMPT if grid else (*EXEMPT, *GRID)
    return [_option(p, doc) for p in _signature() if p.name not in skip]


class ModelCommand(click.Command):
    """A command with the FacRNN options (:func:`model_parameters`), inserted before the
    parameter named ``before`` the first time the parameters are used."""

    def __init__(self, *args, model_grid: bool = True, before: str, **kwargs):
        self._pending: Callable[[], list[click.Option]] | None = lambda: model_parameters(
            model_grid
        )
        self._before = before
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list[click.Parameter]:
        if self._pending is not None:
            make, self._pending = self._pending, None
            at = [p.name for p in self._params].index(self._before)
            self._params[at:at] = make()
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value
