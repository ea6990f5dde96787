"""The ``modelform state`` operations: list, show, rm and mv on a state."""

from __future__ import annotations

import pytest

from modelform.state import AddressError, ResourceState, State
from modelform.state.ops import list_addresses, mv, rm, show


def rs(address: str, deps: tuple[str, ...] = (), name: str | None = None) -> ResourceState:
    type_, _, rest = address.partition(".")
    return ResourceState(address, type_, name or rest, "local", {"a": address}, {}, list(deps))


@pytest.fixture
def state() -> State:
    return State.new(
        resources={
            r.address: r
            for r in (
                rs("model.ridge"),
                rs("environment.sk"),
                rs("service.api", ("model.ridge", "environment.sk")),
                rs("service.api/image", ("environment.sk",), name="api/image"),
                rs("service.apix", ("service.api",)),
                rs("service.batch", ("model.ridge", "service.api")),
            )
        }
    )


def test_list_selects_by_address_type_or_glob(state: State) -> None:
    assert list_addresses(state) == sorted(state.resources)
    assert list_addresses(state, ["service.api"]) == ["service.api", "service.api/image"]
    assert list_addresses(state, ["model", "environment"]) == ["environment.sk", "model.ridge"]
    assert list_addresses(state, ["service.api*"]) == [
        "service.api", "service.api/image", "service.apix",
    ]  # fmt: skip
    assert list_addresses(state, ["nothing"]) == []
    assert list_addresses(None) == []


def test_show_gives_a_copy_and_suggests_a_close_address(state: State) -> None:
    got = show(state, "service.api")
    assert got == state.get("service.api") and got is not state.get("service.api")
    with pytest.raises(AddressError, match="no resource service.ap in the state; did you mean"):
        show(state, "service.ap")
    with pytest.raises(AddressError, match="there is no state yet"):
        show(None, "service.api")


def test_rm_forgets_the_resource_its_children_and_references_to_them(state: State) -> None:
    before = state.dumps()
    new, gone = rm(state, ["service.api"])
    assert gone == ["service.api", "service.api/image"]
    assert new.addresses() == ["environment.sk", "model.ridge", "service.apix", "service.batch"]
    assert new.get("service.apix").dependencies == []  # type: ignore[union-attr]
    assert new.get("service.batch").dependencies == ["model.ridge"]  # type: ignore[union-attr]
    assert state.dumps() == before and new.lineage == state.lineage


def test_rm_of_an_unknown_address_removes_nothing(state: State) -> None:
    with pytest.raises(AddressError, match="service.nope"):
        rm(state, ["model.ridge", "service.nope"])
    assert "model.ridge" in state.resources


def test_mv_renames_children_and_references(state: State) -> None:
    before = state.dumps()
    new, moves = mv(state, "service.api", "service.web")
    assert moves == [("service.api", "service.web"), ("service.api/image", "service.web/image")]
    web, image = new.get("service.web"), new.get("service.web/image")
    assert web is not None and web.name == "web" and web.attributes == {"a": "service.api"}
    assert image is not None and image.name == "web/image"
    assert new.get("service.apix").dependencies == ["service.web"]  # type: ignore[union-attr]
    assert new.get("service.batch").dependencies == ["model.ridge", "service.web"]  # type: ignore[union-attr]
    assert "service.api" not in new.resources and "service.apix" in new.resources
    assert state.dumps() == before


@pytest.mark.parametrize(
    "src,dst,fragment",
    [
        ("service.api", "model.api", "the type differs"),
        ("service.api", "service.batch", "service.batch already exists"),
        ("service.api", "service.api", "onto itself"),
        ("service.nope", "service.x", "no resource service.nope"),
        ("service.api", "service x", "invalid resource address"),
    ],
)
def test_mv_refuses(state: State, src: str, dst: str, fragment: str) -> None:
    with pytest.raises(AddressError, match=fragment):
        mv(state, src, dst)
