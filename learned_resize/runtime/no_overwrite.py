"""Refusing, before any work, to write where the user's files are.

The command-line tools call `check_outputs` with every path they are about to write
and every file or folder they read. An output that is one of the inputs (the same
file by any spelling: relative or absolute, with `./`, through a symlink or a hard
link), or an existing file inside an input folder (a checkpoint, a folder of
photos), is refused always; any other existing path is refused unless the caller
passes `overwrite=True` (the tools' `--overwrite` flag), and a folder never is
replaced. Every refusal is a `ValueError` of one sentence that says how to fix it.
"""

import os
from collections.abc import Iterable


def _key(path) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def same_file(a, b) -> bool:
    """Whether paths a and b name the same file or folder (links and spellings resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare the resolved names
        return _key(a) == _key(b)


def inside(path, folder) -> bool:
    """Whether path lies strictly inside folder (after resolving links)."""
    path, folder = _key(path), _key(folder)
    if path == folder:
        return False
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def check_outputs(
    outputs: Iterable[tuple[str, ...]],
    inputs: Iterable[tuple[str, str | None]],
    overwrite: bool = False,
    fix: str = "choose another --out",
) -> None:
    """Refuses outputs that would replace an input, a folder, or (unless overwrite) a file.

    Args:
      outputs: (description, path) of every file the command would write, e.g.
        ("output", "small/a.png"), or (description, path, fix) to say another fix.
      inputs: (flag, path) of every file or folder the command reads, e.g.
        ("--image", "photo.jpg"); a None path is skipped.
      overwrite: whether an existing file that is no input may be replaced.
      fix: how to avoid an input, said at the end of that refusal.

    Raises:
      ValueError: one sentence naming the path and what to do instead.
    """
    inputs = [(flag, os.fspath(p)) for flag, p in inputs if p is not None]
    seen: dict[str, str] = {}
    for what, path, *own_fix in outputs:
        path, fix_this = os.fspath(path), own_fix[0] if own_fix else fix
        key = _key(path)
        if key in seen:
            raise ValueError(
                f"{what} {path} and {seen[key]} are the same file, so one would replace the "
                "other; rename one of the inputs."
            )
        seen[key] = f"{what} {path}"
        for flag, source in inputs:
            if same_file(path, source):
                raise ValueError(
                    f"{what} {path} is the input {flag}={source} and would destroy it; {fix_this}."
                )
        for flag, source in inputs:
            if os.path.lexists(path) and os.path.isdir(source) and inside(path, source):
                raise ValueError(
                    f"{what} {path} would replace a file of the input {flag}={source}; {fix_this}."
                )
        if os.path.isdir(path):
            raise ValueError(f"{what} {path} is a folder; give a file name, e.g. out.png.")
        if os.path.lexists(path) and not overwrite:
            raise ValueError(f"{what} {path} exists; pass --overwrite to replace it or {fix_this}.")
