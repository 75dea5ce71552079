"""The Redis backend's pure parts, no server: the codec (URLs, stream IDs, commit
arguments, dead-letter hashes, keys) and the Lua scripts loaded from package data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from afterward.events._records import Done, StoredDeadLetter, StoredEvent
from afterward.events.backends.redis import _codec, _scripts
from tests.events.backends import record

SRC = Path(__file__).resolve().parents[2] / "src"


# -- the codec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redis_url", "prefix"),
    [
        ("redis://h:6379/0", "redis://h:6379/0", "afterward:"),
        ("redis://h:6379/0?prefix=p:", "redis://h:6379/0", "p:"),
        ("redis://h/1?socket_timeout=3&prefix={shop}:", "redis://h/1?socket_timeout=3", "{shop}:"),
        ("rediss://u:pw@h/0?prefix=", "rediss://u:pw@h/0", ""),
    ],
)
def test_split_url_takes_the_prefix_out_and_keeps_the_rest(
    url: str, redis_url: str, prefix: str
) -> None:
    assert _codec.split_url(url) == (redis_url, prefix)


def test_keys_follow_the_documented_layout() -> None:
    keys = _codec.Keys("p:")
    assert keys.stream("t") == "p:stream:t"
    assert keys.pos("t", "g") == "p:pos:t:g"
    assert keys.done("g") == "p:done:g"
    assert keys.ver("t", "g") == "p:ver:t:g"
    assert keys.done_log("t", "g") == "p:done-log:t:g"
    assert keys.state("g", "t") == ["p:pos:t:g", "p:done:g", "p:ver:t:g", "p:done-log:t:g"]
    assert keys.claim("t", "g") == "p:claim:t:g"
    assert (keys.groups, keys.dlq, keys.letter("d1")) == ("p:groups", "p:dlq", "p:dlq:d1")


@pytest.mark.parametrize("offset", [0, 1, 41, 10**12])
def test_stream_ids_are_dense_offsets_plus_one(offset: int) -> None:
    entry_id = _codec.stream_id(offset)
    assert entry_id == f"0-{offset + 1}"
    assert _codec.offset(entry_id.encode()) == offset


def test_an_entry_and_the_event_read_back() -> None:
    appended = record("t", {}, id="e1", key="k", at=1712345678.123456)
    fields = _codec.entry_fields(appended)
    assert [name for name, _ in fields][-2:] == ["key", "data"]
    assert dict(fields)["ce_id"] == b"e1" and dict(fields)["data"] == b"{}"
    flat = [part for name, value in fields for part in (name.encode(), value)]
    stored = _codec.event("t", b"0-3", flat)
    assert (stored.topic, stored.partition, stored.offset, stored.value) == ("t", 0, 2, b"{}")
    assert stored.key == "k" and dict(stored.headers)["ce_id"] == b"e1"
    assert (
        _codec.time_of(dict(flat[i : i + 2] for i in range(0, len(flat), 2))) == appended.timestamp
    )


def test_done_items_become_one_json_argument() -> None:
    done = [
        Done("a"),
        Done("b", key="k", version=3),
        Done("c", key="k", processed=False),  # no version: nothing to raise
        Done("d", version=2),  # no key: likewise
        Done("é", key="ключ", version=10**18),
    ]
    assert json.loads(_codec.done_json(done)) == [
        ["a", 1],
        ["b", 1, "k", "3"],
        ["c", 0],
        ["d", 1],
        ["é", 1, "ключ", str(10**18)],  # versions as strings
    ]
    assert "é".encode() in _codec.done_json(done)  # UTF-8, not \\u escapes
    assert _codec.done_json([]) == b"[]"


def test_positions_registrations_and_id_lists() -> None:
    assert _codec.pairs({0: 5, 2: 7}) == [0, 5, 2, 7]
    assert _codec.pairs({}) == []
    assert _codec.positions({b"0": b"5", b"2": b"7"}) == {0: 5, 2: 7}
    assert _codec.positions({}) is None
    members = [_codec.registration(g, t).encode() for g, t in [("b", "y"), ("a", "z"), ("b", "x")]]
    assert _codec.registered(members) == {"a": ["z"], "b": ["x", "y"]}
    assert json.loads(_codec.json_list(["0-1", "é"])) == ["0-1", "é"]


def test_a_dead_letter_survives_its_hash() -> None:
    letter = StoredDeadLetter(
        id="d1",
        group="g",
        record=StoredEvent("t", 0, 7, b'{"n": 1}', ((("ce_id", b"e1"),)), "k", 12.5),
        error="ValueError: no",
        traceback="Traceback...",
        attempts=3,
        failed_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
    )
    fields = _codec.letter_fields(letter)
    # As Redis hands a hash back: bytes keys and values.
    row = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}
    assert _codec.letter(row) == letter


# -- the scripts --------------------------------------------------------------------


def test_every_lua_file_is_a_loaded_script_or_an_included_library() -> None:
    files = {
        f.name
        for f in resources.files("afterward.events.backends.redis").joinpath("scripts").iterdir()
    }
    scripts = {name.removesuffix(".lua") for name in files if not name.startswith("_")}
    assert scripts == set(_scripts.SCRIPTS)
    libraries = {name for name in files if name.startswith("_")}
    used = {
        line.removeprefix("-- include: ").strip()
        for name in scripts
        for line in resources.files("afterward.events.backends.redis")
        .joinpath(f"scripts/{name}.lua")
        .read_text()
        .splitlines()
        if line.startswith("-- include: ")
    }
    assert used == libraries == {"_record_done.lua", "_queue_lib.lua"}


@pytest.mark.parametrize("script", list(_scripts.SCRIPTS.values()), ids=list(_scripts.SCRIPTS))
def test_a_script_is_its_source_and_that_sources_sha1(script: _scripts.Script) -> None:
    assert script.source.strip() and "-- include: " not in script.source
    assert "return" in script.source
    assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()


def test_both_commits_share_one_record_done() -> None:
    library = (
        resources.files("afterward.events.backends.redis")
        .joinpath("scripts/_record_done.lua")
        .read_text()
    )
    for script in (_scripts.COMMIT, _scripts.MEMBER_COMMIT):
        assert script.source.startswith(library)  # prepended, defined before its use
        assert script.source.count("local function record_done") == 1
        assert script.source.index("record_done(ARGV[1]") > len(library)


def test_includes_are_one_level_deep_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "_inner.lua").write_text("local x = 1\n")
    (tmp_path / "_outer.lua").write_text("-- include: _inner.lua\nlocal y = 2\n")
    (tmp_path / "two.lua").write_text("-- include: _inner.lua\nreturn x\n")
    (tmp_path / "deep.lua").write_text("-- include: _outer.lua\nreturn y\n")
    (tmp_path / "lost.lua").write_text("-- include: _missing.lua\nreturn 1\n")
    monkeypatch.setattr(_scripts, "_FILES", tmp_path)
    assert _scripts.load("two").source == "local x = 1\nreturn x\n"
    with pytest.raises(ValueError, match="includes another"):
        _scripts.load("deep")
    with pytest.raises(FileNotFoundError):
        _scripts.load("lost")


LOAD = """
import afterward.events.backends.redis._scripts as s
files = {f.name[:-4] for f in s._FILES.iterdir() if f.name.endswith(".lua")}
assert set(s.SCRIPTS) == {f for f in files if not f.startswith("_")}, sorted(s.SCRIPTS)
assert all(x.source for x in s.SCRIPTS.values())
print(s.__file__)
"""


@pytest.mark.parametrize("where", ["source tree", "zip archive"])
def test_scripts_load_without_an_installed_wheel(tmp_path: Path, where: str) -> None:
    """importlib.resources, not paths next to ``__file__``: the scripts load from the
    source checkout and from a zip (zipimport), where no ``.lua`` file is on disk."""
    if where == "source tree":
        path = SRC
    else:
        path = tmp_path / "afterward.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for file in (SRC / "afterward").rglob("*"):
                if file.is_file() and "__pycache__" not in file.parts:
                    archive.write(file, file.relative_to(SRC).as_posix())
    # -I: no user site, no PYTHONPATH from outside; the installed (editable) afterward is
    # shadowed by ``path`` first on sys.path, redis still comes from site-packages.
    code = f"import sys; sys.path.insert(0, {str(path)!r}); exec({LOAD!r})"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(path))


def test_packed_fields_come_back_byte_for_byte() -> None:
    # fetch.lua packs an entry's fields into one string: "<len>,<len>...\n" + the fields.
    fields = [b"ce_id", b"e,1\n", b"data", b"\xff\x00\n,", b"empty", b""]
    sizes = ",".join(str(len(f)) for f in fields).encode()
    assert _codec.unpack_fields(sizes + b"\n" + b"".join(fields)) == fields
