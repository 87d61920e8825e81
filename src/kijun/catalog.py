"""The control catalog: load it, validate it, and view controls as a profile tailors them.

The format is specified in ``catalog/FORMAT.md``. Each file is checked against its JSON Schema
in ``catalog/schema/`` first; a file that passes is then checked for what a schema cannot say
(ids unique across files, seed keys that exist, seed files in ``catalog/seeds/``, quotes found
verbatim in their seed's text, defaults of the declared type, ...). Every
problem found in the catalog (or in the profiles being loaded) is collected into one
:class:`CatalogError`, each naming the file, the line and what to change.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema is imported only when a file is validated
    from jsonschema import Draft202012Validator

from kijun import paths
from kijun.catalog_source import (
    Loc,
    Problem,
    SchemaCheck,
    SourceFile,
    check_schema,
    describe,
    load_validator,
    location,
    read_yaml,
)

__all__ = [
    "ZONES",
    "Area",
    "Audit",
    "Catalog",
    "CatalogError",
    "Control",
    "Parameter",
    "Problem",
    "Profile",
    "ProfileControl",
    "Reference",
    "Seed",
    "Text",
    "UnknownNameError",
    "control_view",
    "list_profiles",
    "load_catalog",
    "load_catalog_cached",
    "load_profile_cached",
    "load_profile",
    "load_profiles",
]

ZONES = ("mynumber", "lgwan", "internet")


class CatalogError(Exception):
    """The catalog or a profile is invalid; ``problems`` lists everything found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (str(p.file), p.line))
        super().__init__("\n".join(map(str, self.problems)))


class UnknownNameError(LookupError):
    """A profile or area name that the catalog does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Bilingual text."""

    ja: str
    en: str

    @classmethod
    def of(cls, raw: Any) -> Text:
        return cls(ja=raw["ja"], en=raw["en"])

    def as_dict(self) -> dict[str, str]:
        return {"ja": self.ja, "en": self.en}


@dataclass(frozen=True)
class Seed:
    key: str
    organisation: Text
    document: Text
    file: str
    contains: Text


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # int | str | bool | list | dict
    default: object
    rationale: Text
    elements: str | None = None
    choices: tuple[object, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: object, text: str | None = None) -> str | None:
        """What is wrong with ``value`` for this parameter (``text``: its YAML source), if
        anything."""
        wrong = _type_problem(value, self.type, text)
        if wrong:
            return wrong
        items = value if isinstance(value, list) else [value]
        if self.type == "list" and self.elements:
            for index, item in enumerate(items):
                wrong = _type_problem(item, self.elements)
                if wrong:
                    return f"item {index}: {wrong}"
        if self.choices is not None:
            for item in items:
                if item not in self.choices:
                    allowed = ", ".join(map(repr, self.choices))
                    return f"{item!r} is not one of the choices; use one of: {allowed}"
        if isinstance(value, int) and self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum}; use {self.minimum} or more"
        if isinstance(value, int) and self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum}; use {self.maximum} or less"
        return None


@dataclass(frozen=True)
class Reference:
    seed: str
    clause: str
    quote: str
    note: str | None = None


@dataclass(frozen=True)
class Audit:
    module: str  # audits/test_<module>.py
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Control:
    id: str
    area: str
    title: Text
    requirement: Text
    zones: tuple[str, ...]
    functions: tuple[str, ...] | None  # None: all hosts
    role: str
    audit: Audit
    parameters: tuple[Parameter, ...]
    references: tuple[Reference, ...]
    file: Path
    line: int

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True)
class Area:
    name: str
    prefix: str
    title: Text
    controls: tuple[Control, ...]
    file: Path


@dataclass(frozen=True)
class Catalog:
    root: Path
    seeds: dict[str, Seed]
    areas: dict[str, Area]  # in file-name order

    @property
    def controls(self) -> dict[str, Control]:
        """Every control by id, in area order then file order."""
        return {c.id: c for area in self.areas.values() for c in area.controls}


@dataclass(frozen=True)
class ProfileControl:
    id: str
    clauses: tuple[str, ...]
    parameters: dict[str, object]
    zone_parameters: dict[str, dict[str, object]]
    applicable: bool = True
    reason: Text | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    title: Text
    organisation: Text
    based_on: tuple[str, ...]
    description: Text
    controls: dict[str, ProfileControl]
    file: Path


# --- values of a declared type ----------------------------------------------------------------

_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off"}


def _type_problem(value: object, type_name: str, text: str | None = None) -> str | None:
    """Why ``value`` is not of the Ansible argument_spec type ``type_name``, with a hint."""
    fits = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
    }
    if fits.get(type_name, True):
        return None
    if type_name == "int":
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            hint = "write a number without quotes"
        elif isinstance(value, bool):
            hint = "write a number; true/false is a bool, not an int"
        else:
            hint = "write a whole number, e.g. 12"
    elif type_name == "str":
        hint = f'quote it: "{text}"' if text is not None else "write text, quoted if in doubt"
    elif type_name == "bool":
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            hint = "write true or false without quotes"
        else:
            hint = "write true or false"
    elif type_name == "list":
        hint = "write a YAML list, e.g. [a, b]"
    else:
        hint = "write a mapping, e.g. {key: value}"
    return f"expected {type_name}, got {describe(value)}; {hint}"


# --- loading --------------------------------------------------------------------------------
#
# Loaders append every problem they find to a ``problems`` list. A part of a file that breaks
# the schema is reported by the schema and skipped by the semantic checks, which look only at
# the parts (a control, a profile entry) that passed; so one run reports everything it can.


@dataclass(frozen=True)
class _Validators:
    seeds: Draft202012Validator
    area: Draft202012Validator
    profile: Draft202012Validator


def _validators(root: Path) -> _Validators:
    found: dict[str, Draft202012Validator] = {}
    problems: list[Problem] = []
    for kind in ("seeds", "area", "profile"):
        validator, trouble = load_validator(root / "schema" / f"{kind}.schema.json")
        problems += trouble
        if validator is not None:
            found[kind] = validator
    if problems:
        raise CatalogError(problems)
    return _Validators(found["seeds"], found["area"], found["profile"])


def _read(
    path: Path, validator: Draft202012Validator, problems: list[Problem]
) -> tuple[SourceFile, SchemaCheck] | None:
    """Parse and schema-check one file; ``None`` if it is not YAML at all."""
    source, trouble = read_yaml(path)
    problems += trouble
    if source is None:
        return None
    check = check_schema(source, validator)
    problems += check.problems
    return source, check


def _has(raw: Any, check: SchemaCheck, *keys: str) -> bool:
    """Whether the mapping ``raw`` has all of ``keys``, each passing the schema."""
    return isinstance(raw, dict) and all(k in raw and check.valid((k,)) for k in keys)


def _root(root: Path | None) -> Path:
    return (root if root is not None else paths.catalog_dir()).resolve()


def load_catalog_cached(root: Path | None = None) -> Catalog:
    """:func:`load_catalog`, from kijun's cache while no catalog file has changed."""
    from kijun import cache

    root = _root(root)
    key = cache.fingerprint([root, *cache.kijun_sources()], extra=[str(root)])
    return cache.cached("catalog", key, lambda: load_catalog(root))


def load_catalog(root: Path | None = None) -> Catalog:
    """Load and validate the catalog in ``root`` (default: the checkout's ``catalog/``)."""
    root = _root(root)
    validators = _validators(root)
    problems: list[Problem] = []
    sources = _load_seeds(root / "seeds.yml", root / "seeds", validators.seeds, problems)
    files = sorted((root / "controls").glob("*.yml"))
    if not files:
        problems.append(Problem(root / "controls", 0, "no control areas; add <area>.yml files"))
    areas: dict[str, Area] = {}
    seen = _Seen()
    for path in files:
        area = _load_area(path, validators.area, sources, problems, seen)
        if area is not None:
            areas[area.name] = area
    if problems:
        raise CatalogError(problems)
    return Catalog(root=root, seeds=sources.seeds or {}, areas=areas)


@dataclass(frozen=True)
class _SeedText:
    """The text of a seed policy, read from ``catalog/seeds/<file>``."""

    path: Path
    text: str


@dataclass(frozen=True)
class _Sources:
    """What references are checked against: the seeds (``None`` if seeds.yml has problems;
    then references are not checked) and the texts of those whose file could be read."""

    seeds: dict[str, Seed] | None
    texts: dict[str, _SeedText] = field(default_factory=dict)


def _load_seeds(
    path: Path, folder: Path, validator: Draft202012Validator, problems: list[Problem]
) -> _Sources:
    """The seeds of seeds.yml (``path``) and their texts, read from ``folder``."""
    found = _read(path, validator, problems)
    if found is None or not found[1].valid():
        return _Sources(None)
    source = found[0]
    seeds: dict[str, Seed] = {}
    for index, raw in enumerate(source.data["seeds"]):
        if raw["key"] in seeds:
            loc: Loc = ("seeds", index, "key")
            problems.append(source.problem(loc, f"seed key {raw['key']} is used twice"))
            return _Sources(None)
        seeds[raw["key"]] = Seed(
            key=raw["key"],
            organisation=Text.of(raw["organisation"]),
            document=Text.of(raw["document"]),
            file=raw["file"],
            contains=Text.of(raw["contains"]),
        )
    texts: dict[str, _SeedText] = {}
    for index, seed in enumerate(seeds.values()):
        text, trouble = _seed_text(folder, seed.file)
        if text is not None:
            texts[seed.key] = text
        else:
            problems.append(source.problem(("seeds", index, "file"), trouble))
    return _Sources(seeds, texts)


def _seed_text(folder: Path, name: str) -> tuple[_SeedText | None, str]:
    """The text of the seed file ``name`` in ``folder``, or why it cannot be read."""
    if Path(name).name != name or name in (".", ".."):
        return None, f"'{name}' is not a file name; write the name of a file in {folder.name}/"
    path = folder / name
    try:
        return _SeedText(path, path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, (
            f"{location(path)} does not exist; put the seed's text there or correct the name"
        )
    except UnicodeDecodeError as err:
        return None, f"{location(path)} is not UTF-8 text ({err.reason}); save it as UTF-8"
    except OSError as err:
        return None, f"cannot read {location(path)}: {err.strerror or err}"


def _quote_problem(quote: str, seed: str, found: _SeedText) -> str | None:
    """Why ``quote`` is not a verbatim excerpt of the seed text ``found``, with a hint."""
    if quote in found.text:
        return None
    message = (
        f"not found verbatim in {seed} ({location(found.path)}); "
        "copy the words exactly as the seed shows them"
    )
    if "".join(quote.split()) in "".join(found.text.split()):
        return message + " (it differs only in spaces or line breaks)"
    # The longest beginning of the quote that the seed has (a shorter one it has as well).
    low, high = 0, len(quote)
    while low < high:
        middle = (low + high + 1) // 2
        if quote[:middle] in found.text:
            low = middle
        else:
            high = middle - 1
    if low >= 4:
        return message + f" (the seed has '{quote[:low]}' but not what follows it)"
    return message


@dataclass
class _Seen:
    """What must be unique across area files: prefixes and control ids, where first seen."""

    prefixes: dict[str, str] = field(default_factory=dict)  # prefix -> "file:line"
    controls: dict[str, Control] = field(default_factory=dict)


def _load_area(
    path: Path,
    validator: Draft202012Validator,
    sources: _Sources,
    problems: list[Problem],
    seen: _Seen,
) -> Area | None:
    """One area file, or ``None`` unless all of it is sound (its sound controls are checked
    all the same)."""
    found = _read(path, validator, problems)
    if found is None:
        return None
    source, check = found
    raw = source.data
    if not _has(raw, check, "area", "prefix") or not isinstance(raw.get("controls"), list):
        return None
    if raw["area"] != path.stem:
        problems.append(
            source.problem(
                ("area",),
                f"'{raw['area']}' differs from the file name; write area: {path.stem} "
                f"or rename the file to {raw['area']}.yml",
            )
        )
    prefix_at = location(path, source.line(("prefix",)))
    first = seen.prefixes.setdefault(raw["prefix"], prefix_at)
    if first != prefix_at:
        problems.append(
            source.problem(
                ("prefix",), f"{raw['prefix']} is already the prefix at {first}; choose another"
            )
        )
    own: list[Control] = []
    for index, raw_control in enumerate(raw["controls"]):
        loc: Loc = ("controls", index)
        if check.valid(loc):
            control = _control(raw_control, raw["area"], path, source.line((*loc, "id")))
            problems += _control_problems(source, loc, control, raw["prefix"], sources)
            other = seen.controls.setdefault(control.id, control)
            if other is not control:
                problems.append(
                    source.problem(
                        (*loc, "id"),
                        f"duplicate control id {control.id}, also at "
                        f"{location(other.file, other.line)}; give one of them a new number",
                    )
                )
            own.append(control)
    if not check.valid():
        return None
    return Area(raw["area"], raw["prefix"], Text.of(raw["title"]), tuple(own), path)


def _parameter(raw: Any) -> Parameter:
    choices = raw.get("choices")
    return Parameter(
        name=raw["name"],
        type=raw["type"],
        default=raw["default"],
        rationale=Text.of(raw["rationale"]),
        elements=raw.get("elements"),
        choices=tuple(choices) if choices is not None else None,
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
    )


def _control(raw: Any, area: str, path: Path, line: int) -> Control:
    functions = raw.get("functions")
    return Control(
        id=raw["id"],
        area=area,
        title=Text.of(raw["title"]),
        requirement=Text.of(raw["requirement"]),
        zones=tuple(raw["zones"]),
        functions=tuple(functions) if functions is not None else None,
        role=raw["role"],
        audit=Audit(raw["audit"]["module"], tuple(raw["audit"]["checks"])),
        parameters=tuple(_parameter(p) for p in raw["parameters"]),
        references=tuple(
            Reference(r["seed"], r["clause"], r["quote"], r.get("note")) for r in raw["references"]
        ),
        file=path,
        line=line,
    )


def _control_problems(
    source: SourceFile, loc: Loc, control: Control, prefix: str, sources: _Sources
) -> list[Problem]:
    problems = []
    own_prefix = control.id.split("-")[0]
    if own_prefix != prefix:
        problems.append(
            source.problem(
                (*loc, "id"),
                f"id does not start with this file's prefix {prefix}; number it {prefix}-NN "
                f"or move it to the area whose prefix is {own_prefix}",
            )
        )
    seeds = sources.seeds if sources.seeds is not None else {}
    for index, reference in enumerate(control.references if sources.seeds is not None else ()):
        rloc: Loc = (*loc, "references", index)
        if reference.seed not in seeds:
            problems.append(
                source.problem(
                    (*rloc, "seed"),
                    f"unknown seed '{reference.seed}'; use a key from seeds.yml: "
                    + ", ".join(seeds),
                )
            )
        elif reference.seed in sources.texts:
            wrong = _quote_problem(reference.quote, reference.seed, sources.texts[reference.seed])
            if wrong:
                problems.append(source.problem((*rloc, "quote"), wrong))
    first_line: dict[str, int] = {}
    for index, param in enumerate(control.parameters):
        ploc: Loc = (*loc, "parameters", index)
        if not param.name.startswith(f"{control.role}_"):
            problems.append(
                source.problem(
                    (*ploc, "name"),
                    f"'{param.name}' does not start with the role name '{control.role}_'; "
                    f"rename it, e.g. {control.role}_{param.name}",
                )
            )
        if param.name in first_line:
            problems.append(
                source.problem(
                    (*ploc, "name"),
                    f"parameter '{param.name}' is declared twice in {control.id} "
                    f"(first at line {first_line[param.name]}); rename or remove one",
                )
            )
        first_line.setdefault(param.name, source.line((*ploc, "name")))
        problems += _parameter_problems(source, ploc, param)
    return problems


def _parameter_problems(source: SourceFile, loc: Loc, param: Parameter) -> list[Problem]:
    """A parameter's constraints fit its type, and its default fits all of them."""
    if param.elements is not None and param.type != "list":
        return [source.problem((*loc, "elements"), "elements is only for type list; remove it")]
    for bound in ("minimum", "maximum"):
        if getattr(param, bound) is not None and param.type != "int":
            return [source.problem((*loc, bound), f"{bound} is only for type int; remove it")]
    if param.minimum is not None and param.maximum is not None and param.minimum > param.maximum:
        return [source.problem((*loc, "minimum"), "minimum is above maximum; swap them")]
    choice_type = param.elements if param.type == "list" else param.type
    for index, choice in enumerate(param.choices or ()):
        wrong = _type_problem(choice, choice_type) if choice_type else None
        if wrong:
            return [source.problem((*loc, "choices", index), wrong)]
    wrong = param.check(param.default, source.texts.get((*loc, "default")))
    return [source.problem((*loc, "default"), wrong)] if wrong else []


# --- profiles -------------------------------------------------------------------------------


def list_profiles(root: Path | None = None) -> list[str]:
    """The names of the profiles in ``root/profiles`` (default: the checkout's catalog)."""
    return sorted(path.stem for path in (_root(root) / "profiles").glob("*.yml"))


def load_profile_cached(name: str, catalog: Catalog) -> Profile:
    """:func:`load_profile`, from kijun's cache while no catalog file has changed."""
    from kijun import cache

    key = cache.fingerprint([catalog.root, *cache.kijun_sources()], extra=[str(catalog.root), name])
    return cache.cached("profile", key, lambda: load_profile(name, catalog))


def load_profile(name: str, catalog: Catalog, root: Path | None = None) -> Profile:
    """Load and validate profile ``name`` against ``catalog`` (profiles are read from
    ``root``, default: the catalog's own root)."""
    return load_profiles(catalog, [name], root)[0]


def load_profiles(
    catalog: Catalog, names: list[str] | None = None, root: Path | None = None
) -> list[Profile]:
    """Load the named profiles (default: all), reporting the problems of all of them at once."""
    root = root.resolve() if root is not None else catalog.root
    available = list_profiles(root)
    for name in names or []:
        if name not in available:
            raise UnknownNameError(
                f"unknown profile '{name}'; "
                + (f"profiles: {', '.join(available)}" if available else "there are no profiles")
            )
    validator = _validators(root).profile
    profiles: list[Profile] = []
    problems: list[Problem] = []
    for name in available if names is None else names:
        profile = _load_profile(root / "profiles" / f"{name}.yml", catalog, validator, problems)
        if profile is not None:
            profiles.append(profile)
    if problems:
        raise CatalogError(problems)
    return profiles


def _load_profile(
    path: Path, catalog: Catalog, validator: Draft202012Validator, problems: list[Problem]
) -> Profile | None:
    found = _read(path, validator, problems)
    if found is None:
        return None
    source, check = found
    raw = source.data
    if _has(raw, check, "profile") and raw["profile"] != path.stem:
        problems.append(
            source.problem(
                ("profile",),
                f"'{raw['profile']}' differs from the file name; write profile: {path.stem} "
                f"or rename the file to {raw['profile']}.yml",
            )
        )
    if _has(raw, check, "based_on"):
        for index, key in enumerate(raw["based_on"]):
            if key not in catalog.seeds:
                problems.append(
                    source.problem(
                        ("based_on", index),
                        f"unknown seed '{key}'; use a key from seeds.yml: "
                        + ", ".join(catalog.seeds),
                    )
                )
    controls = {}
    raw_controls = raw.get("controls") if isinstance(raw, dict) else None
    entries = raw_controls.items() if isinstance(raw_controls, dict) else []
    for control_id, raw_control in entries:
        if not check.valid(("controls", control_id)):
            continue
        tailoring = ProfileControl(
            id=control_id,
            clauses=tuple(raw_control["clauses"]),
            parameters=raw_control.get("parameters", {}),
            zone_parameters=raw_control.get("zone_parameters", {}),
            applicable=raw_control.get("applicable", True),
            reason=Text.of(raw_control["reason"]) if "reason" in raw_control else None,
        )
        problems += _tailoring_problems(source, catalog, tailoring)
        controls[control_id] = tailoring
    if not check.valid():
        return None
    return Profile(
        name=raw["profile"],
        title=Text.of(raw["title"]),
        organisation=Text.of(raw["organisation"]),
        based_on=tuple(raw["based_on"]),
        description=Text.of(raw["description"]),
        controls=controls,
        file=path,
    )


def _tailoring_problems(
    source: SourceFile, catalog: Catalog, tailoring: ProfileControl
) -> list[Problem]:
    loc: Loc = ("controls", tailoring.id)
    control = catalog.controls.get(tailoring.id)
    if control is None:
        return [source.problem(loc, _unknown_control(catalog, tailoring.id))]
    problems = []
    values: list[tuple[Loc, str, object]] = [
        ((*loc, "parameters", name), name, value) for name, value in tailoring.parameters.items()
    ]
    for zone, overrides in tailoring.zone_parameters.items():
        if zone not in control.zones:
            problems.append(
                source.problem(
                    (*loc, "zone_parameters", zone),
                    f"{control.id} does not apply to zone {zone} (its zones: "
                    f"{', '.join(control.zones)}); remove this override",
                )
            )
        values += [((*loc, "zone_parameters", zone, n), n, v) for n, v in overrides.items()]
    for value_loc, name, value in values:
        param = control.parameter(name)
        if param is None:
            declared = [p.name for p in control.parameters]
            close = difflib.get_close_matches(name, declared, n=1)
            fix = (
                f"did you mean '{close[0]}'?"
                if close
                else f"its parameters: {', '.join(declared)}"
                if declared
                else "it has none; remove this"
            )
            message = f"{control.id} has no parameter '{name}'; {fix}"
        else:
            message = param.check(value, source.texts.get(value_loc)) or ""
        if message:
            problems.append(source.problem(value_loc, message))
    if not tailoring.applicable and tailoring.reason is None:
        problems.append(
            source.problem(
                (*loc, "applicable"),
                "applicable: false needs a reason; add reason: {ja: ..., en: ...}",
            )
        )
    if tailoring.applicable and tailoring.reason is not None:
        problems.append(
            source.problem(
                (*loc, "reason"),
                "a reason is only for applicable: false; remove it or add applicable: false",
            )
        )
    return problems


def _unknown_control(catalog: Catalog, control_id: str) -> str:
    prefix = control_id.split("-")[0]
    same_area = [cid for cid in catalog.controls if cid.split("-")[0] == prefix]
    if same_area:
        return f"unknown control '{control_id}'; the {prefix} controls are {', '.join(same_area)}"
    prefixes = ", ".join(f"{a.prefix} ({a.name})" for a in catalog.areas.values())
    return f"unknown control '{control_id}'; no area has prefix {prefix} (prefixes: {prefixes})"


# --- the view the CLI shows -----------------------------------------------------------------


def control_view(
    catalog: Catalog, profile: Profile | str | None = None, area: str | None = None
) -> list[dict[str, Any]]:
    """Every control (of ``area``, if given) as plain data, with parameter values and clauses
    as ``profile`` (a :class:`Profile` or a profile name) tailors them."""
    if area is not None and area not in catalog.areas:
        raise UnknownNameError(f"unknown area '{area}'; areas: {', '.join(catalog.areas)}")
    if isinstance(profile, str):
        profile = load_profile(profile, catalog)
    return [
        _view(control, profile)
        for control in catalog.controls.values()
        if area is None or control.area == area
    ]


def _view(control: Control, profile: Profile | None) -> dict[str, Any]:
    tailoring = profile.controls.get(control.id) if profile else None
    parameters = []
    for param in control.parameters:
        value = param.default
        zone_values: dict[str, object] = {}
        if tailoring is not None:
            value = tailoring.parameters.get(param.name, value)
            zone_values = {
                zone: overrides[param.name]
                for zone, overrides in tailoring.zone_parameters.items()
                if param.name in overrides
            }
        parameters.append(
            {
                "name": param.name,
                "type": param.type,
                "default": param.default,
                "value": value,
                "zone_values": zone_values,
                "rationale": param.rationale.as_dict(),
                "elements": param.elements,
                "choices": list(param.choices) if param.choices is not None else None,
                "minimum": param.minimum,
                "maximum": param.maximum,
            }
        )
    view: dict[str, Any] = {
        "id": control.id,
        "area": control.area,
        "title": control.title.as_dict(),
        "requirement": control.requirement.as_dict(),
        "zones": list(control.zones),
        "functions": list(control.functions) if control.functions is not None else None,
        "role": control.role,
        "audit": {"module": control.audit.module, "checks": list(control.audit.checks)},
        "parameters": parameters,
        "references": [
            {"seed": r.seed, "clause": r.clause, "quote": r.quote, "note": r.note}
            for r in control.references
        ],
    }
    if profile is not None:
        view["profile"] = {
            "name": profile.name,
            "tailored": tailoring is not None,
            "clauses": list(tailoring.clauses) if tailoring else [],
            "applicable": tailoring.applicable if tailoring else True,
            "reason": tailoring.reason.as_dict() if tailoring and tailoring.reason else None,
        }
    return view
