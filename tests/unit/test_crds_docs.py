"""docs/crds.md: committed page fresh, every field of every kind in it, described, with its example."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from kuikcore.api import KINDS
from kuikcore.api.docs import example_name, field_rows, main, render_files

REPO = Path(__file__).parents[2]
PAGE = REPO / "docs" / "crds.md"
EXAMPLES = REPO / "examples" / "resources"


def _rows(kind: str) -> dict[str, str]:
    """Path -> table line of the committed page's tables of one kind."""
    text = PAGE.read_text()
    section = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            rows[line.split("`", 2)[1]] = line
    return rows


def _models(annotation: object) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models inside a field's annotation, and whether they sit in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _models(args[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _models(arg)
    elif origin is not None and args and origin is not dict:
        for model, _ in _models(args[0]):
            yield model, True


def _model_paths(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every field path below `model`, walked from the pydantic fields (not the JSON schema)."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        yield path
        for sub, in_list in _models(info.annotation):
            yield from _model_paths(sub, f"{path}[]" if in_list else path)


def test_committed_page_is_up_to_date() -> None:
    assert main(["--check", "--examples", str(EXAMPLES), str(PAGE)]) == 0, (
        "docs/crds.md is stale: run `make docs`"
    )
    assert PAGE.read_text() == render_files(PAGE, EXAMPLES)


def test_check_mode_detects_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "crds.md"
    assert main(["--check", "--examples", str(EXAMPLES), str(page)]) == 1  # missing
    assert main(["--examples", str(EXAMPLES), str(page)]) == 0
    assert main(["--check", "--examples", str(EXAMPLES), str(page)]) == 0
    page.write_text(page.read_text().replace("Order among this", "Rank among this"))
    assert main(["--check", "--examples", str(EXAMPLES), str(page)]) == 1
    examples = tmp_path / "examples"
    examples.mkdir()
    for kind in KINDS:
        text = (EXAMPLES / example_name(kind)).read_text()
        (examples / example_name(kind)).write_text(text.replace("name:", "name: x", 1))
    assert main(["--examples", str(EXAMPLES), str(page)]) == 0
    assert main(["--check", "--examples", str(examples), str(page)]) == 1


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_field_is_listed_and_described(kind: str) -> None:
    model = KINDS[kind].model
    rows = _rows(kind)
    for part in ("spec", "status"):
        annotation = model.model_fields[part].annotation
        assert isinstance(annotation, type)
        assert issubclass(annotation, BaseModel)
        paths = list(_model_paths(annotation, part))
        assert [p for p in paths if p not in rows] == [], f"{kind}: fields missing from the page"
        schema = model.model_json_schema(by_alias=True)
        defs = schema["$defs"]
        top = defs[schema["properties"][part]["$ref"].rsplit("/", 1)[-1]]
        generated = [row.path for row in field_rows(top, defs, part)]
        assert generated == paths  # the same fields in declaration order, nothing invented
        for row in field_rows(top, defs, part):
            assert row.description, f"{kind} {row.path} has no description in the models"


def test_rows_carry_types_requirements_defaults_and_rules() -> None:
    mirror = _rows("ClusterImageSetMirror")
    assert mirror["spec.mirrors[].priority"].startswith(
        "| `spec.mirrors[].priority` | integer |  | `0` | Order among this resource's mirrors"
    )
    assert "At least 0." in mirror["spec.mirrors[].priority"]
    assert "| []object |" in mirror["spec.filter.include"]
    assert "At most 16 items." in mirror["spec.filter.include"]
    assert "exactly one of image, label, annotation or namespace" in mirror["spec.filter.include"]
    assert "| time |" in mirror["status.matchingImages[].mirrors[].mirroredAt"]
    assert "| string | yes |" in mirror["status.matchingImages[].image"]
    namespaced = _rows("ImageSetMirror")
    assert "spec.filter.include[].namespace" not in namespaced
    availability = _rows("ClusterImageSetAvailability")
    status = availability["status.images[].status"]
    assert "| `Scheduled` |" in status
    assert "`Available`" in status
    assert "`QuotaExceeded`" in status
    replicated = _rows("ClusterReplicatedImageSet")
    assert "| string | yes | — |" in replicated["spec.upstreams[].registry"]
    assert "At most 32 items." in replicated["spec.upstreams"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_embeds_and_links_its_example(kind: str) -> None:
    text = PAGE.read_text()
    section = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    example = (EXAMPLES / example_name(kind)).read_text()
    assert f"```yaml\n{example.rstrip()}\n```" in section
    link = f"(../examples/resources/{example_name(kind)})"
    assert link in section
    assert (PAGE.parent / link.strip("()")).resolve() == (EXAMPLES / example_name(kind)).resolve()
