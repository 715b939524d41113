"""The README says what the code does: every environment variable the code reads is
in its configuration table with the default the code has, every variable the table
names is read somewhere, and its map of the code names every module there is, and
nothing that is gone. The pages table of docs/publication.md resolves to views."""

import ast
import re
from pathlib import Path

import pytest
from django.urls import Resolver404, resolve

REPOSITORY = Path(__file__).resolve().parent.parent
README = (REPOSITORY / "README.md").read_text()

# Read by the code but not the site's configuration.
NOT_CONFIGURATION = {
    "PATH": "the shell's, handed on to subprocesses",
    "DJANGO_SETTINGS_MODULE": "Django's own, set by manage.py and the entry points",
    "DJANGO_ALLOW_ASYNC_UNSAFE": "set and removed by tests/test_browser.py",
}
# The README's words for a default the code writes as a number.
SPELLED_OUT = {"31536000": "a year"}

_NAME = r"([A-Z][A-Z0-9_]*)"
_PYTHON_READS = [
    rf'\benv(?:int|bool|float)?\(\s*"{_NAME}"',
    rf'os\.environ\.(?:get|setdefault)\(\s*["\']{_NAME}["\']',
    rf'os\.getenv\(\s*["\']{_NAME}["\']',
    rf'os\.environ\[\s*["\']{_NAME}["\']\s*\](?!\s*=[^=])',
]
# A literal default, as settings.py and gunicorn_conf.py give them.
_PYTHON_DEFAULT = (
    rf'(?:\benv(?:int|bool|float)|os\.environ\.get)\(\s*"{_NAME}",\s*"([^"]+)"'
)


def _code_files() -> list[Path]:
    files = [REPOSITORY / "Makefile", REPOSITORY / "manage.py", REPOSITORY / ".ci/run"]
    files += [REPOSITORY / "docker/compose.yaml", REPOSITORY / "docker/Dockerfile"]
    for folder in ("newsletter", "posts", "benchmarks", "tests"):
        files += [
            path
            for path in (REPOSITORY / folder).rglob("*.py")
            if "node_modules" not in path.parts
        ]
    return files


def variables_read() -> dict[str, str]:
    """Each variable the code reads, with a file that reads it."""
    found = {}
    for path in _code_files():
        text = path.read_text()
        patterns = list(_PYTHON_READS)
        if path.name in ("compose.yaml", "Dockerfile", "run"):
            patterns.append(rf"\$\{{{_NAME}")
        if path.name == "Makefile":
            # `PORT ?= 8000`, `run: export SITE_URL ?= …`: taken from the environment.
            patterns.append(rf"(?m)^(?:[\w-]+:\s*)?(?:export\s+)?{_NAME}\s*\?=")
        for pattern in patterns:
            for name in re.findall(pattern, text):
                found.setdefault(name, str(path.relative_to(REPOSITORY)))
    return found


def configuration_table() -> dict[str, str]:
    """The README's table: each variable named in a row's first cell, with the
    row's default cell."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("variable", "---"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]*\*?)`", cells[0]):
            rows[name] = cells[-1]
    return rows


def test_every_variable_the_code_reads_is_in_the_readme():
    table = configuration_table()
    prefixes = tuple(name[:-1] for name in table if name.endswith("*"))
    missing = {
        name: where
        for name, where in variables_read().items()
        if name not in table
        and not name.startswith(prefixes)
        and name not in NOT_CONFIGURATION
    }
    assert not missing, f"read by the code, not in README's table: {missing}"


def test_every_variable_in_the_readme_is_read_by_the_code():
    code = "\n".join(path.read_text() for path in _code_files())
    unread = [
        name
        for name in configuration_table()
        if not name.endswith("*") and not re.search(rf"\b{name}\b", code)
    ]
    assert not unread, f"in README's table, read nowhere: {unread}"


def test_the_readme_gives_the_codes_defaults():
    table = configuration_table()
    wrong = {}
    for folder in ("newsletter", "posts"):
        for path in (REPOSITORY / folder).rglob("*.py"):
            for name, default in re.findall(_PYTHON_DEFAULT, path.read_text()):
                said = SPELLED_OUT.get(default, f"`{default}`")
                if name in table and said not in table[name]:
                    wrong[name] = (default, table[name])
    assert not wrong, f"README's default differs from the code's: {wrong}"


def _is_code(path: Path) -> bool:
    """A module with more in it than a docstring (an empty __init__.py is not)."""
    body = ast.parse(path.read_text()).body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    ):
        body = body[1:]
    return bool(body) or path.name != "__init__.py"


def map_of(folder: str) -> set[str]:
    """What README's map lists under `folder/`: files, and folders ending in /."""
    section = README.split(f"### `{folder}/`", 1)[1].split("\n#", 1)[0]
    listed = set()
    for line in section.splitlines():
        if line.startswith("- "):
            named = line.split(": ", 1)[0]
            listed.update(re.findall(r"`([\w./]+)`", named))
    return listed


@pytest.mark.parametrize("folder", ["newsletter", "posts", "benchmarks"])
def test_the_readmes_map_names_every_module(folder):
    listed = map_of(folder)
    root = REPOSITORY / folder
    missing = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".md") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(root).as_posix()
        in_listed_folder = any(
            name.endswith("/") and relative.startswith(name) for name in listed
        )
        if relative not in listed and not in_listed_folder and _is_code(path):
            missing.append(relative)
    assert not missing, f"in {folder}/, not in README's map: {missing}"


@pytest.mark.parametrize("folder", ["newsletter", "posts", "benchmarks"])
def test_everything_in_the_readmes_map_exists(folder):
    gone = [
        name for name in map_of(folder) if not (REPOSITORY / folder / name).exists()
    ]
    assert not gone, f"README's map of {folder}/ names what is not there: {gone}"


# Stand-ins for the pages table's placeholders.
_EXAMPLES = {
    "slug": "a-post",
    "token": "a-token",
    "id": "1",
    "yyyy": "2024",
    "mm": "05",
    "esp": "postmark",
    "name": "a-message.eml",
}


def test_every_page_in_the_publication_docs_resolves():
    text = (REPOSITORY / "docs/publication.md").read_text()
    table = text.split("## Pages", 1)[1].split("\n\n", 2)[1]
    paths = [
        path
        for line in table.splitlines()
        for path in re.findall(r"`(/[^`]*)`", line.split("|")[1])
    ]
    assert "/healthz" in paths
    unresolved = []
    for path in paths:
        concrete = re.sub(r"<(\w+)>", lambda m: _EXAMPLES[m[1]], path).split("?")[0]
        if path == "/media/":
            continue  # added only with DEBUG on, when the URLconf is loaded
        try:
            resolve(concrete)
        except Resolver404:
            unresolved.append(path)
    assert not unresolved, (
        f"docs/publication.md names pages that do not resolve: {unresolved}"
    )
