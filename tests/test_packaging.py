"""Packaging: the built wheel and sdist hold every package and the bundled data, the data opens
through importlib.resources, pyproject lists every package, gflow.envs coexists with the PyPI
`envs`, and data lookup follows explicit path, $GFLOW_DATA_DIR, user cache, bundled copy."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

import gflow.config
from gflow.config import DATA_ENV_VAR, bundled_dir, cache_dir, data_dirs, find_data

ROOT = Path(__file__).resolve().parent.parent
PARAMS = "seh/seh_proxy_params.npz"
FRAGMENTS = "seh/fragments_72.json"
DATA_FILES = [f"gflow/data/{name}" for name in (PARAMS, FRAGMENTS, "seh/README.md", "seh/LICENSE")]
LICENSES = ["LICENSE", "NOTICE", "gflow/data/seh/LICENSE"]
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "NOTICE", "gflow", "envs"]
"""What a build reads from the checkout."""


def _installed_path(source: Path) -> str:
    """Where a source file lands in the wheel: envs/ installs as gflow/envs/."""
    relative = source.relative_to(ROOT).as_posix()
    return "gflow/" + relative if relative.startswith("envs/") else relative


def _package_dirs() -> list[Path]:
    """Every folder with an __init__.py under gflow/ and envs/."""
    return sorted(p.parent for top in ("gflow", "envs") for p in (ROOT / top).rglob("__init__.py"))


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure shows its output."""
    done = subprocess.run(
        args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An sdist and a wheel built with `python -m build` from a copy of the sources (the
    checkout is left untouched), without isolation so that it runs offline."""
    work = tmp_path_factory.mktemp("build")
    for name in SOURCES:
        source, target = ROOT / name, work / "src" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist")]
    _run(command, work / "src")
    (wheel,) = (work / "dist").glob("gflow-*.whl")
    (sdist,) = (work / "dist").glob("gflow-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_holds_every_module_the_data_and_the_licences(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    modules = {
        _installed_path(p)
        for top in ("gflow", "envs")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert {_installed_path(d / "__init__.py") for d in _package_dirs()} <= modules
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert set(DATA_FILES) <= names, f"missing from the wheel: {sorted(set(DATA_FILES) - names)}"
    licences = {n.split(".dist-info/licenses/", 1)[1] for n in names if ".dist-info/licenses/" in n}
    assert set(LICENSES) <= licences
    assert not any(n.startswith(("envs/", "tests/")) for n in names), "stray top-level package"


def test_sdist_holds_the_data(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert set(DATA_FILES) <= names and set(LICENSES) <= names


def test_installed_wheel_finds_its_bundled_data(dists, tmp_path):
    """The wheel unpacked as an installation, imported from a folder outside the checkout with
    an empty cache and no data variable: the data comes from the installed package."""
    site = tmp_path / "site"
    zipfile.ZipFile(dists["wheel"]).extractall(site)
    code = (
        "import gflow, gflow.envs.hypergrid, json, numpy as np\n"
        "from gflow.config import find_data\n"
        "params = np.load(find_data('seh/seh_proxy_params.npz'), allow_pickle=False)\n"
        "frags = json.loads(find_data('seh/fragments_72.json').read_text())\n"
        "print(json.dumps([gflow.__file__, str(find_data('seh/seh_proxy_params.npz')),"
        " len(params.files), len(frags)]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV_VAR}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    module, params, n_arrays, n_fragments = json.loads(done.stdout)
    assert Path(module).is_relative_to(site) and Path(params).is_relative_to(site)
    assert (n_arrays, n_fragments) == (22, 72)


def test_bundled_data_opens_through_importlib_resources():
    from gflow.envs.rewards.seh import PARAM_SHAPES

    package = files("gflow.data")
    with package.joinpath(PARAMS).open("rb") as handle:
        arrays = np.load(handle, allow_pickle=False)
        shapes = [arrays[f"p{i:02d}"].shape for i in range(len(PARAM_SHAPES))]
    assert shapes == list(PARAM_SHAPES)
    fragments = json.loads(package.joinpath(FRAGMENTS).read_text())
    assert len(fragments) == 72 and all({"smiles", "attach"} == set(f) for f in fragments)
    assert bundled_dir() == Path(str(package))


def test_bundled_data_matches_the_checksums_in_its_readme():
    readme = (ROOT / "gflow/data/seh/README.md").read_text()
    listed = dict(re.findall(r"^\| `([\w.]+)` \| `([0-9a-f]{64})` \|", readme, re.MULTILINE))
    assert set(listed) == {Path(PARAMS).name, Path(FRAGMENTS).name}
    for name, digest in listed.items():
        data = files("gflow.data").joinpath("seh", name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_pyproject_lists_every_package():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"gflow.envs": "envs"}
    found = {
        "gflow." + d.relative_to(ROOT).as_posix().replace("/", ".")
        if d.relative_to(ROOT).parts[0] == "envs"
        else d.relative_to(ROOT).as_posix().replace("/", ".")
        for d in _package_dirs()
    }
    assert set(config["packages"]) == found


def test_pypi_envs_and_gflow_envs_import_side_by_side(tmp_path):
    code = (
        "import json, importlib.metadata, envs, gflow.envs.hypergrid\n"
        "dist = importlib.metadata.distribution('envs')\n"
        "print(json.dumps([envs.__file__, str(dist.locate_file('envs/__init__.py')),"
        " gflow.envs.hypergrid.__file__]))\n"
    )
    done = _run([sys.executable, "-c", code], tmp_path)
    envs_file, distributed, ours = (Path(p).resolve() for p in json.loads(done.stdout))
    assert not envs_file.is_relative_to(ROOT / "envs")
    assert envs_file == distributed, "`import envs` is not the PyPI distribution"
    assert ours.name == "hypergrid.py" and ours != envs_file.parent / "hypergrid.py"


@pytest.fixture
def no_user_data(tmp_path, monkeypatch) -> Path:
    """No data variable, an empty user cache under tmp_path; its cache folder."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "gflow"


def _put(folder: Path, relative: str = PARAMS) -> Path:
    """A placeholder data file `relative` under folder."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def test_lookup_falls_back_to_the_bundled_copy(no_user_data):
    assert data_dirs() == [no_user_data, bundled_dir()]
    assert find_data(PARAMS) == bundled_dir() / PARAMS
    assert find_data(FRAGMENTS) == bundled_dir() / FRAGMENTS


def test_lookup_prefers_the_user_cache_to_the_bundled_copy(no_user_data):
    assert find_data(PARAMS) == bundled_dir() / PARAMS
    cached = _put(no_user_data)
    assert find_data(PARAMS) == cached
    assert find_data(FRAGMENTS) == bundled_dir() / FRAGMENTS  # per file, not per folder


def test_user_cache_is_under_home_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for xdg in (None, "", "relative"):  # unset, empty or relative: ignored (XDG spec)
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert cache_dir() == tmp_path / "home" / ".cache" / "gflow"
    _put(tmp_path / "relative" / "gflow")
    assert find_data(PARAMS) == bundled_dir() / PARAMS
    cached = _put(tmp_path / "home" / ".cache" / "gflow")
    assert find_data(PARAMS) == cached


def test_data_variable_comes_before_the_cache(no_user_data, tmp_path, monkeypatch):
    cached = _put(no_user_data)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "mine"))
    assert data_dirs() == [tmp_path / "mine", no_user_data, bundled_dir()]
    assert find_data(PARAMS) == cached  # the variable's folder lacks it: fall through
    mine = _put(tmp_path / "mine")
    assert find_data(PARAMS) == mine


def test_explicit_path_comes_first_and_is_checked(no_user_data, tmp_path, monkeypatch):
    _put(no_user_data)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "mine"))
    _put(tmp_path / "mine")
    explicit = _put(tmp_path / "elsewhere", "weights.npz")
    assert find_data(PARAMS, explicit) == explicit
    with pytest.raises(FileNotFoundError, match=r"^data file \S*nope.npz does not exist$"):
        find_data(PARAMS, tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError, match=r"elsewhere is a directory, not a file$"):
        find_data(PARAMS, tmp_path / "elsewhere")


def test_missing_file_is_one_line_naming_it_and_every_place_searched(
    no_user_data, tmp_path, monkeypatch
):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "mine"))
    with pytest.raises(FileNotFoundError) as caught:
        find_data("seh/absent.json")
    message = str(caught.value)
    assert "\n" not in message and "'seh/absent.json'" in message
    for folder in (tmp_path / "mine", no_user_data, bundled_dir()):
        assert str(folder) in message


def test_no_lookup_beside_the_checkout():
    """The development-only ../shared lookup is gone: no code or test refers to it."""
    for path in [*ROOT.glob("gflow/**/*.py"), *ROOT.glob("envs/**/*.py"), *ROOT.glob("tests/*.py")]:
        if path != Path(__file__).resolve():
            assert "shared/data" not in path.read_text(), path
    assert not hasattr(gflow.config, "SHARED_DIR")
