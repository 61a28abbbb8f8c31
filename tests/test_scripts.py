"""The seed's workflow: projects and outlines, scripts and image prompts, versions, exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.engine.values import GenerationRequest, Reply
from scriptgen_nb.projects.prompts import bundled_template, template_hash
from scriptgen_nb.store import Database
from tests.script_writer import LADDER, Writer, fake

EMULATED = sg.ModelSpec("emulated", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)
# The words an outline's titles are built around (the emulator's arc: "Where X Began", ...).
ARC_WORDS = {"where", "began", "the", "first", "how", "worked", "people", "behind", "under",
             "pressure", "turn", "of", "today", "what", "leaves"}  # fmt: skip
OUTLINE = [
    {"number": 1, "title": "Tides", "summary": "Why the sea rises and falls."},
    {"number": 2, "title": "Moss", "summary": "The first plants on land."},
    {"number": 3, "title": "Lighthouses", "summary": "Fire, lenses and keepers."},
]


def project(db: Database, chapters: list[dict[str, Any]] | int = 3, **fields: Any) -> str:
    outline = OUTLINE if chapters == 3 else chapters
    if isinstance(outline, int):
        outline = [{"number": i, "title": f"Chapter {i}"} for i in range(1, outline + 1)]
    return sg.create_project("Small things", "How small things shape the world", outline,
                             style="calm", db=db, **fields)  # fmt: skip


def options(backend: FakeBackend, db: Database, **more: Any) -> dict[str, Any]:
    return {"backend": backend, "models": LADDER, "db": db, **more}


def batch_row(db: Database, batch_id: str | None) -> tuple[Any, ...]:
    return db.rows(
        "SELECT concurrency_strategy, concurrency_value, operation, project_id FROM batch_log "
        "WHERE batch_id = ?",
        [batch_id],
    )[0]


@pytest.fixture
def db() -> Database:
    """An in-memory log: the workflow's functions all take a `Database` as `db=`."""
    return Database(":memory:")


# --- projects and outlines ---------------------------------------------------------------------


def test_projects_and_chapters_round_trip(db: Database) -> None:
    pid = project(db, audience="children", language="Welsh", target_length_s=90)
    assert pid == "small-things"
    assert project(db) == "small-things-2"  # same title, a new id
    assert sg.chapters_frame(pid, db=db).to_dict("records") == [
        {"id": f"ch-{c['number']}", **c} for c in OUTLINE
    ]
    stored = db.rows(
        "SELECT title, premise, audience, style, language, target_length_s FROM project "
        "WHERE project_id = ?",
        [pid],
    )
    assert stored == [
        ("Small things", "How small things shape the world", "children", "calm", "Welsh", 90)
    ]
    status = sg.project_status(pid, db=db)
    assert status["chapter"].tolist() == [1, 2, 3]
    assert status["version"].isna().all() and (status["versions"] == 0).all()
    with pytest.raises(ConfigurationError, match="exists already"):
        project(db, project_id=pid)
    with pytest.raises(ConfigurationError, match="known: small-things, small-things-2"):
        sg.chapters_frame("nowhere", db=db)


def outline_sources(tmp_path: Path) -> dict[str, Any]:
    frame = pd.DataFrame(OUTLINE)
    csv = tmp_path / "outline.csv"
    frame.to_csv(csv, index=False)
    listed = tmp_path / "outline.json"
    listed.write_text(json.dumps(OUTLINE))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"chapters": OUTLINE[::-1]}))  # any order; sorted by number
    return {"dataframe": frame, "csv": csv, "json": listed, "wrapped": str(wrapped)}


@pytest.mark.parametrize("kind", ["dataframe", "csv", "json", "wrapped"])
def test_an_outline_imports_from_each_format(db: Database, tmp_path: Path, kind: str) -> None:
    pid = sg.create_project("Imported", db=db)
    chapters = sg.import_outline(pid, outline_sources(tmp_path)[kind], db=db)
    assert [(c.number, c.title, c.summary) for c in chapters] == [
        (c["number"], c["title"], c["summary"]) for c in OUTLINE
    ]
    assert sg.chapters_frame(pid, db=db)["title"].tolist() == ["Tides", "Moss", "Lighthouses"]
    with pytest.raises(ConfigurationError, match="has an outline already"):
        sg.import_outline(pid, OUTLINE, db=db)


def test_chapters_without_numbers_are_numbered_in_order(db: Database) -> None:
    pid = sg.create_project("Unnumbered", chapters=[{"title": "One"}, {"title": "Two"}], db=db)
    assert sg.chapters_frame(pid, db=db)["number"].tolist() == [1, 2]


BAD_OUTLINES = {
    "missing title": (
        [{"number": 1, "title": "Tides"}, {"number": 2, "title": "  "}, {"number": 3}],
        r"2 problem\(s\); nothing was written:\n- row 2: missing title\n- row 3: missing title",
    ),
    "duplicate numbers": (
        [{"number": 1, "title": "a"}, {"number": 2, "title": "b"}, {"number": 1, "title": "c"}],
        "chapter number 1 appears 2 times",
    ),
    "empty outline": ([], "The outline is empty"),
    "bad number": (
        [
            {"number": "one", "title": "a"},
            {"number": 0, "title": "b"},
            {"number": 2.5, "title": "c"},
        ],
        r"(?s)row 1: chapter number 'one'.*row 2: chapter number '?0'? "
        r".*row 3: chapter number '?2.5'? ",
    ),
}


@pytest.mark.parametrize("case", list(BAD_OUTLINES))
@pytest.mark.parametrize("kind", ["list", "dataframe", "csv"])
def test_bad_outlines_raise_and_write_nothing(
    db: Database, tmp_path: Path, case: str, kind: str
) -> None:
    rows, message = BAD_OUTLINES[case]
    source: Any = rows
    if kind != "list":
        frame = pd.DataFrame(rows, columns=["number", "title", "summary"])
        source = frame
        if kind == "csv":
            source = tmp_path / "bad.csv"
            frame.to_csv(source, index=False)
    pid = sg.create_project("Target", db=db)
    with pytest.raises(ConfigurationError, match=message):
        sg.import_outline(pid, source, db=db)
    with pytest.raises(ConfigurationError, match=message):
        sg.create_project("Never made", chapters=source, db=db)
    counted = db.rows("SELECT (SELECT count(*) FROM chapter), (SELECT count(*) FROM project)")
    assert counted == [(0, 1)]  # neither a chapter nor the second project was written


def test_outline_sources_that_cannot_be_read(db: Database, tmp_path: Path) -> None:
    pid = sg.create_project("Target", db=db)
    text = tmp_path / "outline.txt"
    text.write_text("one\ntwo")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for source, message in [
        (tmp_path / "missing.csv", "does not exist"),
        (text, "must be .csv or .json"),
        (broken, "not valid JSON"),
        (42, "not int"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            sg.import_outline(pid, source, db=db)


def test_generate_outline_stores_the_chapters_it_got(db: Database) -> None:
    pid = sg.create_project("Outlined", "Premise", db=db)
    backend = fake()
    run = sg.generate_outline(pid, 4, **options(backend, db))
    assert run.success and [c.title for c in run.chapters] == [f"Part {i}" for i in range(4)]
    assert sg.chapters_frame(pid, db=db)["number"].tolist() == [1, 2, 3, 4]
    assert batch_row(db, run.batch_id)[2:] == ("GENERATE_OUTLINE", pid)
    with pytest.raises(ConfigurationError, match="has an outline already"):
        sg.generate_outline(pid, 4, **options(backend, db))
    failing = sg.create_project("Failing", db=db)
    failed = sg.generate_outline(failing, 3, **options(fake(fail={"outline"}), db))
    assert not failed.success and failed.error is not None
    assert failed.error.kind == "invalid_request" and failed.chapters == ()
    assert sg.chapters_frame(failing, db=db).empty


def test_a_project_without_audience_or_style_asks_for_a_general_one(db: Database) -> None:
    prompts: list[str] = []

    def write(request: GenerationRequest, model: str) -> Reply:
        prompts.append(str(request.prompt))
        return Writer()(request, model)

    pid = sg.create_project("Plain", "How plain things work", db=db)
    sg.generate_outline(pid, 2, **options(FakeBackend(default=write), db))
    sg.generate_scripts(pid, **options(FakeBackend(default=write), db))
    assert len(prompts) == 3  # the outline, then a script per chapter
    for prompt in prompts:
        assert "Audience: a general audience. Style: clear and simple." in prompt
        assert ": ." not in prompt


# --- generating scripts ------------------------------------------------------------------------


def test_the_sequential_path_never_has_more_than_five_in_flight(db: Database) -> None:
    pid = project(db, chapters=12)
    backend = fake(latency_s=0.02)
    progress: list[tuple[int, int | None]] = []
    run = sg.generate_scripts(
        pid, **options(backend, db), on_progress=lambda done, total: progress.append((done, total))
    )
    assert run.success and run.mode == "sequential" and sorted(run.scripts) == list(range(1, 13))
    assert backend.max_in_flight == 5
    assert batch_row(db, run.batch_id) == ("fixed", 5, "GENERATE_SCRIPT", pid)
    assert progress == [(i, 12) for i in range(1, 13)]  # one step per chapter
    batch = fake(latency_s=0.02)
    again = sg.generate_scripts_batch(pid, **options(batch, db, cache="off"))
    assert again.mode == "batch" and batch.max_in_flight == 12  # the batch path: all at once
    with pytest.raises(ConfigurationError, match="applies to mode='batch'"):
        sg.generate_scripts(pid, **options(batch, db), max_concurrency=8)


@pytest.mark.parametrize(
    ("chapters", "mode", "strategy"), [(5, "sequential", "fixed"), (6, "batch", "auto")]
)
def test_auto_mode_batches_above_five_chapters(
    db: Database, chapters: int, mode: str, strategy: str
) -> None:  # fmt: skip
    pid = project(db, chapters=chapters)
    run = sg.generate_scripts(pid, mode="auto", **options(fake(), db))
    assert run.mode == mode and len(run.scripts) == chapters
    assert batch_row(db, run.batch_id)[0] == strategy


def test_partial_failure_keeps_the_successes_and_reports_each_failed_chapter(db: Database) -> None:
    pid = project(db, chapters=5)
    run = sg.generate_scripts(pid, **options(fake(fail={"ch-2", "ch-4"}), db))
    assert not run.success
    assert sorted(run.scripts) == [1, 3, 5] and run.versions == {1: 1, 3: 1, 5: 1}
    assert {n: (e.kind, e.message) for n, e in run.errors.items()} == {
        2: ("invalid_request", "cannot write ch-2"),
        4: ("invalid_request", "cannot write ch-4"),
    }
    status = sg.project_status(pid, db=db).set_index("chapter")
    assert status["version"].fillna(0).tolist() == [1, 0, 1, 0, 1]
    assert status.loc[2, "last_failure"] == "invalid_request: cannot write ch-2"
    assert status["last_failure"].notna().tolist() == [False, True, False, True, False]
    stored = db.rows("SELECT chapter, batch_id, request_id FROM script_version ORDER BY chapter")
    assert stored == [(n, run.batch_id, f"ch-{n}") for n in (1, 3, 5)]

    healthy = fake()
    assert sg.generate_scripts(pid, only="missing", **options(healthy, db, cache="off")).success
    assert sorted(rid for _, rid in healthy.calls) == ["ch-2", "ch-4"]
    nothing = fake()
    rerun = sg.generate_scripts(pid, only="failed", **options(nothing, db))
    assert rerun.success and rerun.scripts == {} and nothing.calls == []
    assert sg.project_status(pid, db=db)["last_failure"].isna().all()


def test_only_failed_reruns_the_chapters_whose_last_request_failed(db: Database) -> None:
    pid = project(db, chapters=4)
    sg.generate_scripts(pid, **options(fake(fail={"ch-3"}), db))
    retry = fake()
    run = sg.generate_scripts(pid, only="failed", **options(retry, db))
    assert [rid for _, rid in retry.calls] == ["ch-3"] and run.versions == {3: 1}


def test_regeneration_adds_a_version_with_new_text_on_the_emulator(db: Database) -> None:
    config = EmulatorConfig(
        seed=2, api_keys=("k",), latency_scale=0.0, models={"emulated": ModelConfig()}
    )
    with Emulator(config) as emulator:
        opts = {"models": [EMULATED], "base_url": emulator.base_url, "api_key": "k", "db": db}
        pid = project(db, chapters=2)
        first = sg.generate_scripts(pid, **opts)
        again = sg.generate_scripts(pid, **opts)  # served from the cache: no new version
        assert (
            again.versions == {1: 1, 2: 1}
            and emulator.counters()["models"]["emulated"]["requests"] == 2
        )
        second = sg.regenerate(pid, [1], **opts)
        assert emulator.counters()["models"]["emulated"]["requests"] == 3  # asked again
    assert second.versions == {1: 2} and second.mode == "sequential"
    assert second.scripts[1] != first.scripts[1]
    status = sg.project_status(pid, db=db)
    assert status["version"].tolist() == [2, 1] and status["versions"].tolist() == [2, 1]
    rows = db.rows(
        "SELECT version, batch_id FROM script_version WHERE chapter = 1 ORDER BY version"
    )
    assert rows == [(1, first.batch_id), (2, second.batch_id)]
    assert sg.scripts_frame(pid, db=db)["title"].iloc[0] == second.scripts[1].title
    with pytest.raises(ConfigurationError, match="always asks again"):
        sg.regenerate(pid, [1], cache="use", db=db)


def test_outline_scripts_and_image_prompts_end_to_end_on_the_emulator(tmp_path: Path) -> None:
    db = Database(tmp_path / "projects.duckdb")  # a file, as users have it
    config = EmulatorConfig(
        seed=4, api_keys=("k",), latency_scale=0.0, models={"emulated": ModelConfig()}
    )
    with Emulator(config) as emulator:
        opts = {"models": [EMULATED], "base_url": emulator.base_url, "api_key": "k", "db": db}
        pid = sg.create_project("Lighthouses", "A history of lighthouses", db=db)
        outline = sg.generate_outline(pid, 3, **opts)
        scripts = sg.generate_scripts(pid, **opts)
        images = sg.generate_image_prompts(pid, **opts)
    assert outline.success and len(outline.chapters) == 3
    assert scripts.success and sorted(scripts.scripts) == [1, 2, 3]
    assert images.success and images.mode == "sequential"
    for number, script in scripts.scripts.items():
        assert isinstance(script, sg.Script) and script.scenes
        assert len(images.prompts[number]) == len(script.scenes)  # one per scene
    usage = sg.CallStore(db.path).usage_report()
    assert sorted(usage["operation"]) == [
        "GENERATE_IMAGE_PROMPTS",
        "GENERATE_OUTLINE",
        "GENERATE_SCRIPT",
    ]
    hashes = dict(db.rows("SELECT DISTINCT operation, template_hash FROM request"))
    assert hashes == {
        op: bundled_template(op).hash
        for op in ("GENERATE_OUTLINE", "GENERATE_SCRIPT", "GENERATE_IMAGE_PROMPTS")
    }
    frame = sg.scripts_frame(pid, db=db)
    assert frame["image_prompts"].tolist() == frame["scenes"].tolist()


@pytest.mark.parametrize(
    ("title", "premise", "subject"),
    [
        (
            "The Keepers of the Light",
            "How lighthouses were built, lit and kept, from the Pharos of Alexandria to automation",
            {"keepers", "light", "lighthouses", "pharos", "alexandria", "automation"},
        ),
        # A short premise leaves room for the template's own words ("a two-sentence summary").
        ("Tides", "How the moon moves the sea", {"tides", "moon", "moves"}),
    ],
    ids=["long premise", "short premise"],
)
def test_an_outline_from_the_emulator_has_sensible_chapter_titles(
    tmp_path: Path, title: str, premise: str, subject: set[str]
) -> None:
    """Each title is about the project (a noun of its title or premise), none is made of the
    prompt's instructions ("chapters", "series", "built", "two-sentence"), and no two are
    alike."""
    db = Database(tmp_path / "projects.duckdb")
    config = EmulatorConfig(api_keys=("k",), latency_scale=0.0, models={"emulated": ModelConfig()})
    with Emulator(config) as emulator:
        opts = {"models": [EMULATED], "base_url": emulator.base_url, "api_key": "k", "db": db}
        pid = sg.create_project(title, premise, db=db)
        outline = sg.generate_outline(pid, 6, **opts)
    titles = [chapter.title for chapter in outline.chapters]
    assert len(set(titles)) == 6
    instructions = {"chapters", "chapter", "series", "outline", "premise", "built", "kept"}
    for title in titles:
        words = {word.lower() for word in title.split()}
        assert words <= subject | ARC_WORDS and words & subject, title
        assert not words & instructions, title


# --- image prompts and exports -----------------------------------------------------------------


def test_image_prompts_follow_the_current_script_version(db: Database) -> None:
    pid = project(db)
    sg.generate_scripts(pid, **options(fake(fail={"ch-3"}), db))
    run = sg.generate_image_prompts(pid, **options(fake(), db))
    assert sorted(run.prompts) == [1, 2]  # chapter 3 has no script: skipped
    assert [p.prompt for p in run.prompts[1]] == ["Frame 1 of ch-1", "Frame 2 of ch-1"]
    with pytest.raises(ConfigurationError, match=r"Chapters \[3\] have no script yet"):
        sg.generate_image_prompts(pid, chapters=[3], **options(fake(), db))
    missing = fake()
    sg.generate_image_prompts(pid, only="missing", **options(missing, db))
    assert missing.calls == []
    stored = db.rows(
        "SELECT chapter, script_version, scene, prompt FROM image_prompt ORDER BY chapter, scene"
    )
    assert stored[:2] == [(1, 1, 1, "Frame 1 of ch-1"), (1, 1, 2, "Frame 2 of ch-1")]


def test_exports_write_the_current_scripts_and_their_image_prompts(
    db: Database, tmp_path: Path
) -> None:
    pid = project(db)
    sg.generate_scripts(pid, **options(fake(fail={"ch-2"}), db))
    sg.generate_image_prompts(pid, chapters=[1], **options(fake(), db))
    written = sg.export_markdown(pid, tmp_path / "md", db=db)
    assert [p.name for p in written] == ["01-tides.md", "03-lighthouses.md"]
    assert written[0].read_text() == (
        "# 1. Script of ch-1\n\n"
        "Small things, chapter 1: Tides. Script version 1, about 3 seconds of narration, 8 "
        "words.\n\n"
        "## Scene 1: Opening of ch-1\n\nNarration one of ch-1.\n\n"
        "*On screen:* Picture one of ch-1.\n\n"
        "**Image prompt** (16:9, watercolour): Frame 1 of ch-1\n*Negative prompt:* text\n\n"
        "## Scene 2: Ending of ch-1\n\nNarration two of ch-1.\n\n"
        "*On screen:* Picture two of ch-1.\n\n"
        "**Image prompt** (16:9, watercolour): Frame 2 of ch-1\n*Negative prompt:* text\n"
    )
    assert "Image prompt" not in written[1].read_text()  # none made for chapter 3
    document = json.loads(sg.export_json(pid, tmp_path / "project.json", db=db).read_text())
    assert document["project"]["project_id"] == pid
    chapters = document["chapters"]
    assert [(c["number"], c["version"]) for c in chapters] == [(1, 1), (2, None), (3, 1)]
    assert chapters[0]["script"]["title"] == "Script of ch-1"
    assert len(chapters[0]["image_prompts"]) == 2 and chapters[2]["image_prompts"] == []
    frame = sg.scripts_frame(pid, db=db)
    assert frame[["chapter", "version", "scenes", "image_prompts"]].values.tolist() == [
        [1, 1, 2, 2],
        [3, 1, 2, 0],
    ]
    # Counted from the narration at 150 words a minute, not the model's 120 words and 60 s.
    assert frame[["word_count", "estimated_duration_s"]].values.tolist() == [[8, 3], [8, 3]]


# --- templates and bad arguments ---------------------------------------------------------------


def test_a_template_of_your_own_is_rendered_logged_and_hashed(db: Database, tmp_path: Path) -> None:
    pid = project(db)
    text = "Chapter {number} of {project_title}: {title} ({style})"
    sg.generate_scripts(pid, chapters=[2], template=text, **options(fake(), db))
    path = tmp_path / "mine.txt"
    path.write_text("Only {title}")
    sg.generate_scripts(pid, chapters=[3], template=path, **options(fake(), db))
    rows = db.rows("SELECT prompt, template_hash FROM request ORDER BY request_id")
    assert rows == [
        ("Chapter 2 of Small things: Moss (calm)", template_hash(text)),
        ("Only Lighthouses", template_hash("Only {title}")),
    ]
    untouched = fake()
    with pytest.raises(ConfigurationError, match=r"\{colour\}.*available: .*summary"):
        sg.generate_scripts(pid, template="In {colour}", **options(untouched, db))
    with pytest.raises(ConfigurationError, match="no such file"):
        sg.generate_scripts(pid, template="mine.txt", **options(untouched, db))
    assert untouched.calls == []


def test_text_utf8_cannot_encode_is_refused_naming_it_before_anything_is_written_or_sent(
    tmp_path: Path,
) -> None:
    """A lone surrogate (bytes that were not UTF-8, decoded leniently) in a project's text, an
    outline or a template raised UnicodeEncodeError, or "Writing the call log ... failed:
    Python Conversion Failure"; a template file that is not UTF-8, UnicodeDecodeError."""
    path = tmp_path / "log.duckdb"
    for field in ("title", "premise", "style", "project_id"):
        texts = {"title": "Tides", field: "T\udc80"}
        with pytest.raises(ConfigurationError, match=rf"create_project: {field} holds a lone"):
            sg.create_project(db=path, **texts)  # type: ignore[arg-type]
    assert not path.exists()  # refused before the log was opened
    db = Database(path)
    pid = project(db)
    with pytest.raises(ConfigurationError, match="row 2: summary holds a lone surrogate"):
        sg.create_project(
            "X", chapters=[{"title": "a"}, {"title": "b", "summary": "\udc80"}], db=db
        )
    not_utf8 = tmp_path / "mine.txt"
    not_utf8.write_bytes(b"Write about {title} \xff\n")
    backend = fake()
    for template, message in [
        ("Write about {title} \udc80", r"Prompt template: your template holds a lone surrogate"),
        (not_utf8, r"mine.txt' is not UTF-8 text \(byte 20 is b'\\xff'\): save it as UTF-8"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            sg.generate_scripts(pid, template=template, **options(backend, db))
    assert backend.calls == []
    assert db.rows("SELECT count(*) FROM project") == [(1,)]
    assert db.rows("SELECT count(*) FROM request") == [(0,)]


def test_misuse_is_refused_before_anything_is_sent(db: Database) -> None:
    pid = project(db)
    empty = sg.create_project("No chapters yet", db=db)
    backend = fake()
    for call, message in [
        (lambda: sg.generate_scripts(pid, mode="fast", **options(backend, db)), "mode='fast'"),
        (lambda: sg.generate_scripts(pid, only="some", **options(backend, db)), "only='some'"),
        (lambda: sg.generate_scripts(pid, chapters=[9], **options(backend, db)), "No chapter"),
        (lambda: sg.generate_scripts(empty, **options(backend, db)), "no chapters yet"),
        (lambda: sg.generate_image_prompts(pid, **options(backend, db)), "no scripts yet"),
        (lambda: sg.generate_outline(pid, 0, **options(backend, db)), "n_chapters"),
        (lambda: sg.create_project(" ", db=db), "needs a title"),
        (lambda: sg.create_project("x", target_length_s=0, db=db), "must be positive"),
        (lambda: sg.generate_scripts(pid, db=False), "db=False"),
    ]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=message):
            call()
    assert backend.calls == []
