"""AWX / Automation Platform packaging without a registry: the execution environment's build
context (``ansible-builder create``) and the roles built as a collection. Running them (a role
by its fully qualified name, playbooks/audit.yml through ansible-runner) is in
tests/test_apply_schedule_live.py."""

from __future__ import annotations

import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

import kijun

from .conftest import ROOT, VENV_BIN


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ee") / "context"
    run("ansible-builder", "create", "-f", "execution-environment.yml", "--context", str(directory))
    return directory


def pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==", 1) for d in deps if "==" in d)


def test_the_execution_environment_is_ansible_builder_schema_3_with_the_pinned_engine() -> None:
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins()['ansible-core']}"
    assert deps["ansible_runner"]["package_pip"] == f"ansible-runner=={pins()['ansible-runner']}"


def test_ansible_builder_creates_a_context_that_installs_kijun_with_its_pinned_dependencies(
    context: Path,
) -> None:
    containerfile = (context / "Containerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in containerfile
    assert 'PYCMD="/usr/bin/python3.11"' in containerfile
    final = containerfile.split("FROM base AS final", 1)[1]
    assert "COPY _build/kijun /tmp/kijun-src" in final
    install = re.search(r"RUN \$PYCMD -m pip install .*kijun-src.*", final)
    assert install and "-c /tmp/kijun-src/requirements.lock" in install.group(0)
    assert "kijun --version" in install.group(0)  # the image build fails without the command
    built = context / "_build" / "kijun"
    assert (built / "requirements.lock").read_text() == (ROOT / "requirements.lock").read_text()
    assert (built / "pyproject.toml").read_text() == (ROOT / "pyproject.toml").read_text()
    # the whole package: every module and data file of kijun, where pyproject.toml finds them
    source = ROOT / "src" / "kijun"
    wanted = {
        p.relative_to(source) for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }  # fmt: skip
    copied = {p.relative_to(built / "src" / "kijun") for p in (built / "src" / "kijun").rglob("*")}
    assert wanted <= copied
    assert (built / "src" / "kijun" / "data" / "bootstrap.sh").is_file()
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert "openssh-clients" in bindep  # kijun audit reaches hosts with ssh


def test_galaxy_yml_builds_the_roles_as_a_collection(tmp_path: Path) -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert galaxy["version"] == kijun.__version__
    built = run("kijun", "collection", "build", "--output-path", str(tmp_path))
    tarball = tmp_path / f"kijun-baseline-{kijun.__version__}.tar.gz"
    assert f"collection built: {tarball}" in built.stdout
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    assert {"password_policy", "time_sync", "log_retention", "audit_schedule"} <= set(roles)
    for role in roles:
        assert f"roles/{role}/tasks/main.yml" in names
        assert f"roles/{role}/meta/argument_specs.yml" in names
    # every role's module where a collection's roles find them: its plugins/modules/
    role_modules = sorted(p.name for p in ROOT.glob("roles/*/library/*.py"))
    assert {"kijun_effective.py", "kijun_pam_auth_update.py"} <= set(role_modules)
    for name in role_modules:
        assert f"plugins/modules/{name}" in names
    assert not [n for n in names if "/library/" in n]  # each module once
    # only the roles: no checkout state, engine, tests or machine-local files
    assert not {n for n in names if n.split("/")[0] in {".venv", ".kijun", "src", "tests"}}
    assert "MANIFEST.json" in names and "FILES.json" in names


def test_the_built_collection_installs_into_an_empty_path_and_resolves_roles_by_fqcn(
    tmp_path: Path,
) -> None:
    """Every role site.yml applies, by its fully qualified name from the installed collection,
    with its modules (kijun_effective, shared by all, and each role's own) resolved."""
    run("kijun", "collection", "build", "--output-path", str(tmp_path))
    tarball = tmp_path / f"kijun-baseline-{kijun.__version__}.tar.gz"
    collections = tmp_path / "collections"
    run("ansible-galaxy", "collection", "install", "--force", "-p", str(collections), str(tarball))
    assert (collections / "ansible_collections/kijun/baseline/roles/time_sync").is_dir()
    play = tmp_path / "play.yml"
    from kijun import apply

    roles = sorted(apply.site_roles())
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  roles:\n"
        + "".join(f"    - role: kijun.baseline.{role}\n" for role in roles)
    )
    (tmp_path / "hosts").write_text("lg-app01 ansible_host=198.18.0.21\n")
    env = {
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),  # not the checkout's roles/
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
        "PATH": str(VENV_BIN) + ":/usr/bin:/bin",
    }
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "hosts", "play.yml", "--list-tasks"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kijun.baseline.time_sync : Ensure the time zone is the organisation's (TS-04)" in (
        proc.stdout
    )
    for role in roles:
        assert f"kijun.baseline.{role} : " in proc.stdout, role


def test_two_roles_with_a_module_of_the_same_name_are_refused(tmp_path: Path) -> None:
    from kijun import collection

    for role in ("a", "b"):
        (tmp_path / "roles" / role / "library").mkdir(parents=True)
        (tmp_path / "roles" / role / "library" / "kijun_x.py").write_text("")
    with pytest.raises(collection.CollectionError, match="kijun_x is in roles/a/library"):
        collection.modules(tmp_path)
