"""Placement of launches (bia_binder.federation.selection), on Member objects as health checks leave them."""

from __future__ import annotations

from collections import Counter

import pytest

from bia_binder.federation.members import UP, Member, MemberConfigError, members_from_config
from bia_binder.federation.selection import HASHED, HELD, Selector


def pool(*names: str, **weights: float) -> list[Member]:
    return [Member(name=n, url=f"http://{n}.example/", weight=weights.get(n, 1), state=UP) for n in names]


def first_choices(members, repos, selector=None, holders=frozenset()):
    selector = selector or Selector()
    return Counter(selector.place(members, repo, holders).first.name for repo in repos)


REPOS = [f"git:https://git.example/lab/repo-{i}" for i in range(3000)]


def test_the_same_repository_goes_to_the_same_member():
    members = pool("a", "b", "c")
    assert len({Selector().place(members, REPOS[0]).first.name for _ in range(10)}) == 1


def test_repositories_spread_by_weight():
    counts = first_choices(pool("a", "b", "c", a=2, b=1, c=1), REPOS, Selector(choices=1))
    share = counts["a"] / len(REPOS)
    assert 0.45 < share < 0.55, counts  # weight 2 of 4
    assert 0.2 < counts["b"] / len(REPOS) < 0.3


def test_only_healthy_members_that_are_not_draining_get_launches():
    members = pool("a", "b", "c", "d")
    members[0].state = "down"
    members[1].state = "unknown"
    members[2].weight = 0  # draining
    counts = first_choices(members, REPOS[:200])
    assert set(counts) == {"d"}
    placement = Selector().place(members, REPOS[0])
    assert [m.name for m in placement.order] == ["d"], "down, unknown and draining members are not even failover candidates"


def test_nothing_healthy_gives_an_empty_placement():
    members = pool("a")
    members[0].state = "down"
    assert Selector().place(members, REPOS[0]).first is None


def test_a_member_holding_the_environment_goes_first_even_when_busier():
    members = pool("a", "b", "c")
    for repo in REPOS[:50]:
        hashed = Selector().place(members, repo).first
        holder = next(m for m in members if m is not hashed)
        holder.load = {"sessions": 10}
        placement = Selector().place(members, repo, holders={holder.name})
        assert placement.first is holder and placement.reason == HELD
        holder.load = {}


def test_among_holders_the_least_loaded_wins():
    members = pool("a", "b", "c")
    members[0].load = {"sessions": 5}
    members[1].load = {"sessions": 1}
    assert Selector().place(members, REPOS[0], holders={"a", "b"}).first.name == "b"


def test_the_less_loaded_of_the_two_best_ranked_wins_never_a_third():
    members = pool("a", "b", "c")
    for repo in REPOS[:100]:
        ranked = Selector(choices=1).place(members, repo).order
        top, second, third = ranked
        top.load = {"sessions": 3}
        third.load = {}
        second.load = {"sessions": 1}
        placement = Selector().place(members, repo)
        assert placement.first is second and placement.reason == HASHED
        second.load = {"sessions": 5}
        assert Selector().place(members, repo).first is top, "the third-ranked member never wins: caches stay warm"
        for m in members:
            m.load = {}


def test_one_popular_repository_spreads_over_two_members_not_one():
    """Each launch adds to its member's load (as in-flight launches do): a burst of one repository
    alternates between its two best-ranked members."""
    members = pool("a", "b", "c")
    selector = Selector()
    used = Counter()
    for _ in range(10):
        first = selector.place(members, REPOS[7]).first
        first.inflight += 1
        used[first.name] += 1
    assert len(used) == 2 and set(used.values()) == {5}


def test_full_members_come_last_and_only_if_everyone_is_full():
    members = pool("a", "b")
    members[0].load = {"free_slots": 0}
    assert all(Selector().place(members, repo).first.name == "b" for repo in REPOS[:50])
    assert [m.name for m in Selector().place(members, REPOS[0]).order] == ["b", "a"]
    members[1].load = {"free_slots": 0}
    assert Selector().place(members, REPOS[0]).first is not None, "all full: one answers 429 with when to retry"


def test_removing_a_member_moves_only_its_repositories():
    before = {repo: Selector(choices=1).place(pool("a", "b", "c"), repo).first.name for repo in REPOS[:600]}
    after = {repo: Selector(choices=1).place(pool("a", "b"), repo).first.name for repo in REPOS[:600]}
    moved = [repo for repo in before if before[repo] != after[repo]]
    assert moved and all(before[repo] == "c" for repo in moved)


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"weight": 1}], "needs a 'url'"),
        ([{"url": "ftp://x.example/"}], r"http\(s\) URL"),
        ([{"url": "http://x.example/?a=1"}], "without query"),
        ([{"url": "http://x.example/", "weight": -1}], "weight must be a number >= 0"),
        ([{"url": "http://x.example/", "weight": "2"}], "weight must be a number"),
        ([{"url": "http://x.example/", "colour": "red"}], "unknown keys"),
        ([{"url": "http://x.example/"}, {"url": "http://x.example"}], "unique 'name'"),
    ],
)
def test_bad_member_entries_are_refused_with_what_to_fix(entries, message):
    with pytest.raises(MemberConfigError, match=message):
        members_from_config(entries)


def test_member_entries_get_names_and_slashes():
    [member] = members_from_config([{"url": "http://x.example:8000", "token": "t"}])
    assert (member.name, member.url, member.public_url, member.weight) == ("x.example:8000", "http://x.example:8000/", "http://x.example:8000/", 1.0)
