"""Property tests of routing: sort stability, de-duplication, input-order independence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kuik_testing.objects import cism, container, cris, pod, upstream
from kuikcore.api import ClusterImageSetMirror, ClusterReplicatedImageSet, Mirror, Resource
from kuikcore.routing import ORIGINAL, mirror_destination, route_pod

REGISTRIES = ["a.example", "b.example", "c.example"]
PATHS = ["/m", "/n", ""]
IMAGES = ["docker.io/library/nginx:1.29", "quay.io/org/app:v1", "docker.io/library/redis"]

mirrors = st.lists(
    st.fixed_dictionaries(
        {
            "registry": st.sampled_from(REGISTRIES),
            "path": st.sampled_from(PATHS),
            "priority": st.integers(0, 3),
        }
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def cisms(draw: st.DrawFn) -> list[ClusterImageSetMirror]:
    names = draw(st.lists(st.sampled_from("abcdefgh"), min_size=0, max_size=5, unique=True))
    return [
        ClusterImageSetMirror.model_validate(
            cism(
                name,
                *draw(mirrors),
                priority=draw(st.integers(-3, 3)),
                imageFilter={"include": [".*"]},
            )
        )
        for name in names
    ]


@st.composite
def crises(draw: st.DrawFn) -> list[ClusterReplicatedImageSet]:
    names = draw(st.lists(st.sampled_from("pqrs"), min_size=0, max_size=2, unique=True))
    out = []
    for name in names:
        upstreams = [upstream("docker.io", imageFilter={"include": [".*"]})]
        for registry in draw(st.lists(st.sampled_from(["u.example", "v.example"]), max_size=2)):
            priority: int = draw(st.integers(0, 2))
            upstreams.append(
                upstream(registry, "/u", priority=priority, imageFilter={"include": [".*"]})
            )
        out.append(
            ClusterReplicatedImageSet.model_validate(
                cris(name, *upstreams, priority=draw(st.integers(-2, 2)))
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(
    mirror_sets=cisms(),
    replicated=crises(),
    image=st.sampled_from(IMAGES),
    policy=st.sampled_from(["IfNotPresent", "Always"]),
    data=st.data(),
)
def test_sorted_unique_and_independent_of_input_order(
    mirror_sets: list[ClusterImageSetMirror],
    replicated: list[ClusterReplicatedImageSet],
    image: str,
    policy: str,
    data: st.DataObject,
) -> None:
    resources: list[Resource] = [*mirror_sets, *replicated]
    route = route_pod(pod(container("c", image, policy=policy)), resources)
    alternatives = route.containers[0].alternatives
    found = [a.image for a in alternatives]
    assert len(found) == len(set(found)), "duplicates"
    ranks = [a.rank for a in alternatives]
    assert ranks == sorted(ranks), "not in sort-key order"
    assert image in found
    shuffled = data.draw(st.permutations(resources))
    assert route_pod(pod(container("c", image, policy=policy)), shuffled) == route
    if policy == "Always":
        assert alternatives[0].source == ORIGINAL


@settings(max_examples=200, deadline=None)
@given(mirror_sets=cisms(), image=st.sampled_from(IMAGES))
def test_dedup_keeps_the_best_ranked_producer(
    mirror_sets: list[ClusterImageSetMirror], image: str
) -> None:
    route = route_pod(pod(container("c", image, policy="IfNotPresent")), list(mirror_sets))
    got = {a.image: (a.rank, a.source) for a in route.containers[0].alternatives}
    # oracle: every (CR, mirror) yields one destination; the best (rank, name) wins a collision
    expected: dict[str, tuple[tuple[int, int, int, int], str]] = {image: ((0, 0, 0, 0), ORIGINAL)}
    for cr in sorted(mirror_sets, key=lambda r: r.name):
        for index, m in enumerate(cr.spec.mirrors):
            destination = mirror_destination(Mirror(registry=m.registry, path=m.path), image)
            candidate = ((cr.spec.priority, 1, m.priority, index), cr.key)
            if destination not in expected or candidate[0] < expected[destination][0]:
                expected[destination] = candidate
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(mirror_sets=cisms(), image=st.sampled_from(IMAGES))
def test_negative_priorities_before_original_others_after(
    mirror_sets: list[ClusterImageSetMirror], image: str
) -> None:
    alternatives = (
        route_pod(pod(container("c", image, policy="IfNotPresent")), list(mirror_sets))
        .containers[0]
        .alternatives
    )
    position = [a.source for a in alternatives].index(ORIGINAL)
    assert all(a.rank[0] < 0 for a in alternatives[:position])
    assert all(a.rank[0] >= 0 for a in alternatives[position + 1 :])
