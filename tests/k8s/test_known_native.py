"""The C twin of ``context.put`` (podtrail/enrich/_known.c, used by the container and k8s
stages' short paths) attaches exactly what the Python reference attaches: on hypothesis
sequences of entities of every kind, attached again, to events with and without entities, to
plain dicts; and its stage functions touch nothing when they answer False."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.enrich import container as container_mod
from podtrail.model import context
from podtrail.model.context import CONTAINER_CTX, KINDS, POD_CTX, PROCESS_CTX, Entity, EventDict

NATIVE = container_mod._known
pytestmark = pytest.mark.skipif(NATIVE is None, reason="podtrail.enrich._known not built (test_native_build fails then)")


def _entity(kind_i: int, n: int, seed: int) -> Entity:
    kind = KINDS[kind_i]
    return Entity(kind, {name: f"v{seed}" for name in kind.names[:n]})


ENT = st.builds(_entity, st.integers(0, 2), st.integers(0, 4), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(ENT, max_size=6), st.booleans(), st.booleans())
def test_put_attaches_what_the_python_put_attaches(ents: list[Entity], plain: bool, clear: bool) -> None:
    assert NATIVE is not None
    a: dict[str, Any] = {} if plain else EventDict()
    b: dict[str, Any] = {} if plain else EventDict()
    if clear:
        context._UNIONS.clear()  # the unions not known yet: the C twin hands over to Python
    for e in ents:
        context.put(a, e)
        NATIVE.put(b, e)
        assert getattr(a, "_ctx", None) == getattr(b, "_ctx", None)
        if not plain and ents:
            assert [id(x) for x in context.covered(a)[0]] == [id(x) for x in context.covered(b)[0]]


def test_put_of_the_stages_order_stays_in_c() -> None:
    """The agent's order (process, container, pod), once its unions are known: no hand-over."""
    assert NATIVE is not None
    ents = [Entity(PROCESS_CTX, {"process_key": "1:2"}), Entity(CONTAINER_CTX, {"cgroup_id": 1}),
            Entity(POD_CTX, {"node_name": "n"})]
    ref = EventDict()
    for e in ents:
        context.put(ref, e)
    calls: list[str] = []
    ev = EventDict()
    sys.setprofile(lambda frame, what, arg: calls.append(frame.f_code.co_name) if what == "call" else None)
    try:
        for e in ents:
            NATIVE.put(ev, e)
    finally:
        sys.setprofile(None)
    assert ev._ctx == ref._ctx and "put" not in calls  # no Python frame of put ran


@pytest.mark.parametrize("ev", [{"cgroup_id": "7"}, {"cgroup_id": 7}, {"cgroup_id": True}, {}])
def test_container_touches_nothing_when_it_cannot_answer(ev: dict[str, Any]) -> None:
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import _FILLED_T, ContainerStage

    assert NATIVE is not None
    stage = ContainerStage(CgroupIndex(root="/nonexistent-podtrail"))
    before = dict(ev)
    assert NATIVE.container(stage, ev, _FILLED_T) is False and ev == before
