r"""The wheels a machine without network lacks to run the project, and the `pip download` of them.

On the target (no network): `pip freeze > have.txt`; carry it here. Here, in the project's
environment (where everything is installed and works):

    python launch/offline_wheels.py --have=have.txt --dest=wheels \
        --platform=manylinux2014_x86_64 --python_version=3.11 [--extras=cuda12] [--run]

Carry `wheels/` to the target and install from it alone:

    pip install --no-index --find-links=wheels -e ".[cuda12]"

What is needed is the closure of pyproject.toml's `[project] dependencies` (plus the
`--extras` named and `[build-system] requires`, which an editable install builds with),
walked through the requirements of the distributions installed in this environment, with
environment markers evaluated for the target's Python version and machine. A package is
lacking when `--have` (a `pip freeze` file; without it, this environment) does not list
it, or lists a version outside what some requirement allows. Each lacking package is
downloaded at the version installed here (the one known to work), `--no-deps` since the
list already is the closure. A requirement that is not installed here (an accelerator
extra, say) cannot be walked: it is downloaded by its specifier with its dependencies, in
a second command, and the table says so. Prints the table and the commands; `--run` runs
them. Exit 1 with one `error:` line for bad flags or an unreadable file.
"""

import dataclasses
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib

from absl import app, flags

from learned_resize.runtime import cli

try:
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # pip vendors it
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HAVE = flags.DEFINE_string(
    "have", None, "The target's `pip freeze` output; default: this environment."
)
_DEST = flags.DEFINE_string("dest", "wheels", "Where `pip download` puts the files.")
_PLATFORM = flags.DEFINE_string(
    "platform", None, "The target's wheel platform tag, e.g. manylinux2014_x86_64 (default: this)."
)
_PYTHON_VERSION = flags.DEFINE_string(
    "python_version", None, "The target's Python, e.g. 3.11 (default: this interpreter's)."
)
_EXTRAS = flags.DEFINE_list("extras", [], "Extras of the project to include, e.g. cuda12,gcp.")
_PYPROJECT = flags.DEFINE_string(
    "pyproject", os.path.join(REPO, "pyproject.toml"), "The project's pyproject.toml."
)
_RUN = flags.DEFINE_bool("run", False, "Run the pip downloads (default: print them).")


@dataclasses.dataclass
class Needed:
    """One distribution of the closure."""

    name: str  # canonical
    specifier: SpecifierSet  # every requirer's specifiers, intersected
    here: str | None  # the version installed in this environment
    requirers: list[str]
    extras: set[str] = dataclasses.field(default_factory=set)


def read_freeze(text: str) -> dict[str, str | None]:
    """`pip freeze` lines -> {canonical name: version, or None for `name @ url` lines}."""
    have = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.startswith("-e") else line.strip()
        if not line or line.startswith(("-", "--")) and "#egg=" not in line:
            continue
        if line.startswith("-e"):
            match = re.search(r"#egg=([A-Za-z0-9._-]+)", line)
            have[canonicalize_name(match.group(1))] = None
            continue
        if " @ " in line:
            have[canonicalize_name(line.split(" @ ", 1)[0].strip())] = None
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"cannot read the freeze line {line!r} (expected NAME==VERSION).")
        have[canonicalize_name(name.strip())] = version.strip()
    return have


def installed() -> dict[str, str]:
    """{canonical name: version} of this environment."""
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def target_environment(python_version: str | None, platform: str | None) -> dict:
    """Marker variables of the target: this interpreter's, with its Python and machine."""
    env = dict(default_environment())
    if python_version:
        env["python_version"] = ".".join(python_version.split(".")[:2])
        env["python_full_version"] = (
            python_version if python_version.count(".") == 2 else (python_version + ".0")
        )
    if platform:
        for machine in ("x86_64", "aarch64", "arm64", "amd64"):
            if platform.lower().endswith(machine):
                env["platform_machine"] = machine
        if platform.startswith(("manylinux", "musllinux", "linux")):
            env.update(sys_platform="linux", platform_system="Linux", os_name="posix")
        elif platform.startswith("macosx"):
            env.update(sys_platform="darwin", platform_system="Darwin", os_name="posix")
        elif platform.startswith("win"):
            env.update(sys_platform="win32", platform_system="Windows", os_name="nt")
    return env


def _applies(requirement: Requirement, env: dict, extra: str) -> bool:
    """Whether `requirement` holds on the target when its requirer's `extra` ('' for the
    requirer's base requirements) is asked for."""
    return requirement.marker is None or requirement.marker.evaluate({**env, "extra": extra})


def project_requirements(pyproject: dict, extras: list[str]) -> list[Requirement]:
    """The project's own requirements: dependencies, the extras named, the build system."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"--extras {','.join(unknown)}: pyproject has {', '.join(optional)}.")
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += optional[extra]
    texts += pyproject.get("build-system", {}).get("requires", [])
    own = canonicalize_name(project["name"])
    out = []
    for text in texts:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == own:  # `learned_resize[gcp]`: its extras
            out += project_requirements(pyproject, sorted(requirement.extras))
        else:
            out.append(requirement)
    return out


def closure(roots: list[Requirement], env: dict, here: dict[str, str], requires) -> dict:
    """{canonical name: Needed}: the roots and, through `requires(name)` (the requirement
    strings of an installed distribution, or None), all that they pull in on the target."""
    needed: dict[str, Needed] = {}
    walked = set()  # (name, extra): the requirements of that part of the name read once
    todo = [(r, "pyproject.toml") for r in roots if _applies(r, env, "")]
    while todo:
        requirement, requirer = todo.pop()
        name = canonicalize_name(requirement.name)
        entry = needed.setdefault(name, Needed(name, SpecifierSet(), here.get(name), []))
        entry.specifier &= requirement.specifier
        entry.requirers.append(requirer)
        entry.extras |= set(requirement.extras)
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in walked or entry.here is None:
                continue
            walked.add((name, extra))
            for text in requires(name) or []:
                sub = Requirement(text)
                if _applies(sub, env, extra):
                    todo.append((sub, name))
    return needed


def lacking(needed: dict, have: dict[str, str | None]) -> list[tuple[Needed, str]]:
    """(package, why) for each needed package that `have` does not satisfy, by name."""
    out = []
    for name in sorted(needed):
        entry = needed[name]
        if name not in have:
            out.append((entry, "missing"))
            continue
        version = have[name]
        if version is None or not str(entry.specifier):
            continue
        try:
            ok = entry.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = True
        if not ok:
            out.append((entry, f"has {version}, needs {entry.specifier}"))
    return out


def pinnable(entry: Needed) -> bool:
    """Whether the version installed here is one the requirements allow."""
    return entry.here is not None and entry.specifier.contains(entry.here, prereleases=True)


def _loose(entry: Needed) -> str:
    extras = f"[{','.join(sorted(entry.extras))}]" if entry.extras else ""
    return f"{entry.name}{extras}{entry.specifier}"


def download_commands(rows, dest: str, platform: str | None, python_version: str | None):
    """The `pip download` commands: pinned --no-deps for what is installed here, the rest by
    specifier with dependencies."""
    target = []
    if platform:
        target += ["--platform", platform]
    if python_version:
        target += ["--python-version", python_version]
    base = [sys.executable, "-m", "pip", "download", "--dest", dest, *target]
    pinned = [f"{e.name}=={e.here}" for e, _ in rows if pinnable(e)]
    loose = [_loose(e) for e, _ in rows if not pinnable(e)]
    commands = []
    if pinned:
        commands.append([*base, "--no-deps", *pinned])
    if loose:
        # pip needs binaries only when it resolves dependencies for another platform.
        only_binary = ["--only-binary=:all:"] if target else []
        commands.append([*base, *only_binary, *loose])
    return commands


def requires_here(name: str) -> list[str] | None:
    try:
        return importlib.metadata.requires(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def fail(message: str) -> None:
    """A user's mistake: one line on stderr, exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    if _PYTHON_VERSION.value and not re.fullmatch(r"3\.\d+(\.\d+)?", _PYTHON_VERSION.value):
        fail(f"--python_version={_PYTHON_VERSION.value}: give the target's Python, e.g. 3.11.")
    try:
        with open(_PYPROJECT.value, "rb") as f:
            pyproject = tomllib.load(f)
        roots = project_requirements(pyproject, _EXTRAS.value)
        if _HAVE.value:
            with open(_HAVE.value) as f:
                have = read_freeze(f.read())
        else:
            have = installed()
    except (OSError, ValueError, InvalidRequirement, tomllib.TOMLDecodeError) as e:
        fail(" ".join(str(e).split()))
    env = target_environment(_PYTHON_VERSION.value, _PLATFORM.value)
    needed = closure(roots, env, installed(), requires_here)
    rows = lacking(needed, have)
    source = _HAVE.value or "this environment"
    print(
        f"{len(needed)} distributions needed (Python {env['python_version']}, "
        f"{env['platform_machine']}); {len(rows)} lacking in {source}"
    )
    if rows:
        print("| package | lacking | download | needed by |")
        print("|---|---|---|---|")
        for entry, why in rows:
            what = f"=={entry.here}" if pinnable(entry) else f"{entry.specifier or 'any'} (+ deps)"
            requirers = ", ".join(sorted(set(entry.requirers)))
            print(f"| {entry.name} | {why} | {what} | {requirers} |")
    commands = download_commands(rows, _DEST.value, _PLATFORM.value, _PYTHON_VERSION.value)
    for command in commands:
        print(shlex.join(command), flush=True)
        if _RUN.value:
            subprocess.run(command, check=True)
    if commands:
        extras = f"[{','.join(_EXTRAS.value)}]" if _EXTRAS.value else ""
        print(
            f'then on the target: pip install --no-index --find-links={_DEST.value} -e ".{extras}"'
        )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
