"""The district registry: one YAML file listing every district and where its data comes from.

Adding a district is one entry in the file. Secrets never live in it: a district database's password
(or its whole URL) is read from an environment variable that the entry names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import yaml
from psycopg.conninfo import make_conninfo

from orchestration.settings import registry_path

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,30}$")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class DistrictSource:
    """Exactly one of: a database on the state's own server, a URL, or an extract directory."""

    kind: str  # "database" | "url" | "extract_dir"
    database: str | None = None
    url: str | None = None
    url_env: str | None = None
    password_env: str | None = None
    extract_dir: Path | None = None

    def describe(self) -> str:
        if self.kind == "database":
            return f"database {self.database} on the state server"
        if self.kind == "extract_dir":
            return f"extract directory {self.extract_dir}"
        return f"database URL from ${self.url_env}" if self.url_env else f"database {self.url}"


@dataclass(frozen=True)
class District:
    code: str
    name: str
    source: DistrictSource
    # The mass-delete guard (orchestration/landing/guard.py) for this district: always allow, or its own limit.
    allow_mass_delete: bool = False
    max_delete_share: float | None = None


def validate_code(code: object, where: str = "district code") -> str:
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise RegistryError(
            f"{where}: {code!r} is not a valid district code (1-30 letters, digits or underscores)"
        )
    return code


def canonical_code(code: object, where: str = "district code") -> str:
    """The one form a district code is compared, stored and named in: upper case (`d01` is district D01).

    Every code entering the project (registry, command line, dbt vars) passes through here, so two
    spellings of one code can never become two districts side by side.
    """
    return validate_code(code, where).upper()


def _parse_source(raw: object, code: str, base: Path) -> DistrictSource:
    where = f"district {code}: source"
    if not isinstance(raw, dict) or len(raw.keys() & {"database", "url", "url_env", "extract_dir"}) != 1:
        raise RegistryError(f"{where} must have exactly one of database, url, url_env, extract_dir")
    unknown = raw.keys() - {"database", "url", "url_env", "extract_dir", "password_env"}
    if unknown:
        raise RegistryError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    if "database" in raw:
        return DistrictSource("database", database=str(raw["database"]))
    if "extract_dir" in raw:
        folder = Path(str(raw["extract_dir"]))
        return DistrictSource("extract_dir", extract_dir=folder if folder.is_absolute() else base / folder)
    if "url" in raw:
        url = str(raw["url"])
        if urlparse(url).password:
            raise RegistryError(f"{where}: the URL holds a password; put it in an environment variable "
                                "and name that variable with password_env")
        return DistrictSource("url", url=url, password_env=raw.get("password_env"))
    return DistrictSource("url", url_env=str(raw["url_env"]))


def parse_registry(text: str, base: Path, origin: str = "registry") -> list[District]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RegistryError(f"{origin}: not valid YAML: {error}") from error
    entries = document.get("districts") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise RegistryError(f"{origin}: expected a top-level 'districts:' list")
    districts: list[District] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "code" not in entry:
            raise RegistryError(f"{origin}: entry {index} has no code")
        code = canonical_code(entry["code"], f"{origin}: entry {index}")
        if code in seen:
            raise RegistryError(f"{origin}: district code {code} is listed twice")
        seen.add(code)
        source = _parse_source(entry.get("source"), code, base)
        allow, share = _parse_delete_guard(entry, f"{origin}: district {code}")
        districts.append(District(code=code, name=str(entry.get("name") or code), source=source,
                                  allow_mass_delete=allow, max_delete_share=share))
    return districts


def _parse_delete_guard(entry: dict[str, object], where: str) -> tuple[bool, float | None]:
    allow = entry.get("allow_mass_delete", False)
    if not isinstance(allow, bool):
        raise RegistryError(f"{where}: allow_mass_delete must be true or false, not {allow!r}")
    share = entry.get("max_delete_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1):
        raise RegistryError(f"{where}: max_delete_share must be a share between 0 and 1 (e.g. 0.9), not {share!r}")
    return allow, None if share is None else float(share)


def load_registry(path: Path | None = None) -> list[District]:
    path = path or registry_path()
    if not path.exists():
        raise RegistryError(f"district registry {path} does not exist (set ATTENDANCE_REGISTRY to another file)")
    return parse_registry(path.read_text(), path.parent, str(path))


def select_districts(codes: list[str] | None, path: Path | None = None) -> list[District]:
    """The registry entries for `codes` (all when None), refusing codes the registry does not list."""
    districts = load_registry(path)
    if not codes:
        return districts
    by_code = {district.code: district for district in districts}
    codes = [canonical_code(code) for code in codes]
    unknown = [code for code in codes if code not in by_code]
    if unknown:
        raise RegistryError(
            f"district(s) {', '.join(unknown)} not in the registry; known: {', '.join(by_code)}"
        )
    return [by_code[code] for code in dict.fromkeys(codes)]


def resolve_url(source: DistrictSource, code: str) -> str:
    """The libpq connection string for a `url` source, with its secret from the environment.

    The password is added as a quoted conninfo parameter, never pasted into the URL: pasted, `&port=1` in
    a password would redirect the connection and a space would break the URL (and the error would show it).
    """
    if source.url_env:
        url = os.environ.get(source.url_env)
        if not url:
            raise RegistryError(f"district {code}: environment variable {source.url_env} is not set")
        return url
    assert source.url is not None
    if source.password_env:
        password = os.environ.get(source.password_env)
        if password is None:
            raise RegistryError(f"district {code}: environment variable {source.password_env} is not set")
        try:
            return make_conninfo(source.url, password=password)
        except psycopg.ProgrammingError as error:
            # The URL itself holds no password (see _parse_source), so libpq's complaint may be shown.
            raise RegistryError(f"district {code}: {source.url} is not a valid connection URL: "
                                f"{str(error).strip()}") from None
    return source.url


def write_registry(path: Path, districts: list[District]) -> None:
    """Write a registry file (used by the demo generator for its own districts)."""
    entries = []
    for district in districts:
        source: dict[str, str] = {}
        if district.source.kind == "database":
            source["database"] = str(district.source.database)
        elif district.source.kind == "extract_dir":
            source["extract_dir"] = str(district.source.extract_dir)
        elif district.source.url_env:
            source["url_env"] = district.source.url_env
        else:
            source["url"] = str(district.source.url)
        entry: dict[str, object] = {"code": district.code, "name": district.name, "source": source}
        if district.allow_mass_delete:
            entry["allow_mass_delete"] = True
        if district.max_delete_share is not None:
            entry["max_delete_share"] = district.max_delete_share
        entries.append(entry)
    path.write_text(yaml.safe_dump({"districts": entries}, sort_keys=False))
