"""The hysteresis rule of registry health, as a table shared with the board's Lua script
(tests/integration/test_coord_board.py runs the same table against a real Redis)."""

from __future__ import annotations

import pytest

from kuikcore.health import HostHealth, Knowledge, Observation, fold, knowledge

# (observations in order: "+" an answer, "x" a definite failure, "." silence (a timeout);
#  expected (up, transition) after each), up_after = 2
HYSTERESIS: list[tuple[str, str, list[tuple[bool, bool]]]] = [
    ("discovered up: no transition", "++", [(True, False), (True, False)]),
    ("discovered down: a transition", "x", [(False, True)]),
    ("down at the first failure", "+x", [(True, False), (False, True)]),
    (
        "up only after two answers in a row",
        "+x++",
        [(True, False), (False, True), (False, False), (True, True)],
    ),
    (
        "a failure between answers starts the count again",
        "+x+x++",
        [
            (True, False),
            (False, True),
            (False, False),
            (False, False),
            (False, False),
            (True, True),
        ],
    ),
    (
        "failures while down are not transitions",
        "xxx",
        [(False, True), (False, False), (False, False)],
    ),
    ("one silence is not enough", "+.+.+", [(True, False)] * 5),
    ("two silences in a row are", "+..", [(True, False), (True, False), (False, True)]),
    ("a silence then a failure", "+.x", [(True, False), (True, False), (False, True)]),
    (
        "silence while down keeps it down",
        "+x..",
        [(True, False), (False, True), (False, False), (False, False)],
    ),
]


def observe(mark: str, at: float, by: str = "probe") -> Observation:
    return Observation(mark == "+", at, by, None if mark == "+" else "no", silent=mark == ".")


@pytest.mark.parametrize(("name", "seen", "expected"), HYSTERESIS, ids=[c[0] for c in HYSTERESIS])
def test_hysteresis(name: str, seen: str, expected: list[tuple[bool, bool]]) -> None:
    state: HostHealth | None = None
    got = []
    for i, mark in enumerate(seen):
        state, transition = fold(state, observe(mark, 100.0 + i), up_after=2)
        got.append((state.up, transition))
    assert got == expected


def test_since_moves_only_on_transitions_and_confirmation_on_every_observation() -> None:
    state, _ = fold(None, Observation(True, 10.0, "probe a"), up_after=2)
    state, _ = fold(state, Observation(True, 11.0, "probe b"), up_after=2)
    assert (state.since, state.confirmed_at, state.by) == (10.0, 11.0, "probe a")
    state, _ = fold(state, Observation(False, 12.0, "webhook (passive)", "refused"), up_after=2)
    assert (state.up, state.since, state.by, state.error) == (
        False, 12.0, "webhook (passive)", "refused",
    )  # fmt: skip
    state, _ = fold(state, Observation(False, 13.0, "probe", "reset"), up_after=2)
    assert (state.since, state.confirmed_at, state.error) == (12.0, 13.0, "reset")


def test_an_observation_older_than_the_state_is_ignored() -> None:
    state, _ = fold(None, Observation(False, 20.0, "probe", "refused"), up_after=1)
    late, transition = fold(state, Observation(True, 19.0, "probe"), up_after=1)
    assert late == state
    assert not transition


def test_knowledge_lapses_into_unknown() -> None:
    state = HostHealth(up=False, confirmed_at=100.0, since=90.0, by="probe")
    assert knowledge(state, 101.0, fresh_for=2.5) is Knowledge.DOWN
    assert knowledge(state, 102.5, fresh_for=2.5) is Knowledge.DOWN
    assert knowledge(state, 102.6, fresh_for=2.5) is Knowledge.UNKNOWN
    assert knowledge(None, 100.0, fresh_for=2.5) is Knowledge.UNKNOWN
    up = HostHealth(up=True, confirmed_at=100.0, since=90.0, by="probe")
    assert up.knowledge(100.0, 2.5) is Knowledge.UP


def test_up_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fold(None, Observation(True, 1.0, "probe"), up_after=0)


# --- which hosts to probe, which objects a transition's Event regards (pure) ------------------


def test_hosts_in_use_are_the_images_origins_and_every_host_a_routing_cr_names() -> None:
    from kuik_testing.objects import cism, mirror
    from kuikcore.api import parse_resource
    from kuikcore.health.events import hosts_in_use

    crs = [parse_resource(cism("to-b", mirror("mirror.example:5000")))]
    images = ["nginx:1.27", "quay.io/app/x:1", "127.0.0.1:5000/a@sha256:" + "a" * 64, "Not Valid"]
    assert hosts_in_use(images, crs) == {
        "docker.io", "quay.io", "127.0.0.1:5000", "mirror.example:5000",
    }  # fmt: skip


def test_a_transition_is_recorded_on_the_crs_naming_the_host_else_on_the_mirrors() -> None:
    from kuik_testing.objects import cisa, cism, ism, mirror
    from kuikcore.api import parse_resource
    from kuikcore.cluster.interface import ObjectKey
    from kuikcore.health.events import regarded

    crs = [
        parse_resource(doc)
        for doc in (
            cism("b-mirror", mirror("b.example")),
            ism("team", "c-mirror", mirror("c.example")),
            cism("a-mirror", mirror("b.example")),
            cisa("everything"),
        )
    ]
    assert regarded(crs, "b.example") == [
        ObjectKey("ClusterImageSetMirror", "", "a-mirror"),
        ObjectKey("ClusterImageSetMirror", "", "b-mirror"),
    ]
    # an origin no CR names: the mirrors, which route Pods away from it
    assert regarded(crs, "origin.example") == [
        ObjectKey("ClusterImageSetMirror", "", "a-mirror"),
        ObjectKey("ClusterImageSetMirror", "", "b-mirror"),
        ObjectKey("ImageSetMirror", "team", "c-mirror"),
    ]
    assert regarded(crs, "origin.example", limit=1) == [
        ObjectKey("ClusterImageSetMirror", "", "a-mirror")
    ]
    # a service that sees no routing CR (the monitor): its availability watches
    assert regarded(crs[3:], "origin.example") == [
        ObjectKey("ClusterImageSetAvailability", "", "everything")
    ]
    assert regarded([], "origin.example") == []
